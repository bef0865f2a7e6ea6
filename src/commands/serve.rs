//! `sofiia-console serve`.

use crate::app::{Application, StartError};
use crate::cli::ServeArgs;
use crate::config::{Config, Flags};
use crate::telemetry;

pub async fn run(args: ServeArgs) -> Result<(), StartError> {
    let config = Config::load(&Flags {
        config: args.config.config,
        listen: args.listen,
        data_dir: args.config.data_dir,
    })?;
    let _log_writers = telemetry::init(&config.log).map_err(StartError::Log)?;
    let app = Application::build(config).await?;
    app.run_until_stopped().await
}
