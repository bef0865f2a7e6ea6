//! `sofiia-console backup create|list|verify|restore`. `create` and `list` go through the running
//! service or work directly on the file of a stopped one (see `client`); `verify` reads only the
//! backup file; `restore` needs the service stopped.

use std::path::Path;

use serde_json::{Value, json};

use super::client::{self, Route};
use crate::cli::{BackupCommand, ClientArgs, ConfigArgs};
use crate::clock::Clock;
use crate::service::backup::{restore_backup, verify_backup};

pub async fn run(command: BackupCommand) -> Result<(), String> {
    match command {
        BackupCommand::Create { client } => through_either(&client, true).await,
        BackupCommand::List { client } => through_either(&client, false).await,
        BackupCommand::Verify { file } => verify(&file),
        BackupCommand::Restore { file, config } => restore(&file, &config).await,
    }
}

/// `create` (or `list`) through the service or on the file.
async fn through_either(client: &ClientArgs, create: bool) -> Result<(), String> {
    let route = client::connect(client)?;
    let result: Result<Value, String> = match (create, &route) {
        (true, Route::Direct(offline)) => offline
            .console
            .create_backup(&client::cli_context())
            .await
            .map(|created| json!(created))
            .map_err(|e| e.to_string()),
        (true, Route::Api(api)) => {
            api.json(api.post("/api/admin/backup").json(&json!({})))
                .await
        }
        (false, Route::Direct(offline)) => Ok(json!({ "items": offline.console.backups() })),
        (false, Route::Api(api)) => api.json(api.get("/api/admin/backups")).await,
    };
    if let Route::Direct(offline) = route {
        offline.close();
    }
    println!("{}", result?);
    Ok(())
}

fn verify(file: &Path) -> Result<(), String> {
    let checked = verify_backup(file).map_err(|e| e.to_string())?;
    println!("{}", json!(checked));
    if checked.audit.valid {
        Ok(())
    } else {
        Err(format!(
            "{}: the audit chain does not verify from event {}",
            file.display(),
            checked.audit.first_invalid_seq.unwrap_or_default()
        ))
    }
}

/// Swaps the backup in, then opens the restored file the way the service will (bringing an
/// older schema forward) and records the restore in its audit trail.
async fn restore(file: &Path, args: &ConfigArgs) -> Result<(), String> {
    let config = client::load_config(args)?;
    let now_ms = Clock::from_env().now_ms();
    let restored =
        restore_backup(&config.database_path(), file, now_ms).map_err(|e| e.to_string())?;
    let offline = client::open_stopped(args).map_err(|e| {
        format!(
            "restored {} over {}, but could not open it to record the restore: {e}",
            file.display(),
            restored.database.display()
        )
    })?;
    let recorded = offline
        .console
        .record_restore(&client::cli_context(), &restored)
        .await;
    offline.close();
    recorded.map_err(|e| format!("restored, but the restore could not be audited: {e}"))?;
    println!("{}", json!(restored));
    Ok(())
}
