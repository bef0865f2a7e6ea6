//! `sofiia-console db stats|compact`: the database file of a stopped service.

use serde_json::json;

use super::client;
use crate::cli::DbCommand;

pub async fn run(command: DbCommand) -> Result<(), String> {
    let config = match &command {
        DbCommand::Stats { config } | DbCommand::Compact { config } => config,
    };
    let offline = client::open_stopped(config)?;
    let store = &offline.console.store;
    let result = match command {
        DbCommand::Stats { .. } => store
            .file_stats()
            .await
            .map(|stats| json!(stats))
            .map_err(|e| e.to_string()),
        DbCommand::Compact { .. } => {
            let before = store.file_bytes();
            match store.compact().await {
                Ok(done) => Ok(json!({
                    "compacted": done.compacted,
                    "file_bytes_before": before,
                    "file_bytes_after": store.file_bytes(),
                    "pause_ms": done.pause.as_millis() as u64,
                })),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    offline.close();
    println!("{}", result?);
    Ok(())
}
