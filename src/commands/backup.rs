//! `sofiia-console backup create|list`, through the running service or directly on the file of
//! a stopped one (see `client`).

use serde_json::{Value, json};

use super::client::{self, Route};
use crate::cli::BackupCommand;

pub async fn run(command: BackupCommand) -> Result<(), String> {
    let client = match &command {
        BackupCommand::Create { client } | BackupCommand::List { client } => client.clone(),
    };
    let route = client::connect(&client)?;
    let result: Result<Value, String> = match (command, &route) {
        (BackupCommand::Create { .. }, Route::Direct(offline)) => offline
            .console
            .create_backup(&client::cli_context())
            .await
            .map(|created| json!(created))
            .map_err(|e| e.to_string()),
        (BackupCommand::Create { .. }, Route::Api(api)) => {
            api.json(api.post("/api/admin/backup").json(&json!({})))
                .await
        }
        (BackupCommand::List { .. }, Route::Direct(offline)) => {
            Ok(json!({ "items": offline.console.backups() }))
        }
        (BackupCommand::List { .. }, Route::Api(api)) => {
            api.json(api.get("/api/admin/backups")).await
        }
    };
    if let Route::Direct(offline) = route {
        offline.close();
    }
    println!("{}", result?);
    Ok(())
}
