//! `sofiia-console keys create|list|revoke`, directly or through the service (see `client`).

use serde::Deserialize;
use serde_json::json;

use super::client::{self, Api, Offline, Route};
use crate::cli::KeysCommand;
use crate::domain::role::Role;

/// A key as both routes of this command report it.
#[derive(Debug, Deserialize)]
struct KeyRow {
    id: String,
    name: String,
    role: Role,
    created_ms: u64,
    expires_ms: Option<u64>,
    revoked_ms: Option<u64>,
    last_used_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct KeyList {
    items: Vec<KeyRow>,
}

#[derive(Debug, Deserialize)]
struct Created {
    #[serde(flatten)]
    row: KeyRow,
    key: String,
}

pub async fn run(command: KeysCommand) -> Result<(), String> {
    let client = match &command {
        KeysCommand::Create { client, .. }
        | KeysCommand::List { client }
        | KeysCommand::Revoke { client, .. } => client.clone(),
    };
    match client::connect(&client)? {
        Route::Direct(offline) => {
            let result = direct(command, &offline).await;
            offline.close();
            result
        }
        Route::Api(api) => through_api(command, &api).await,
    }
}

async fn direct(command: KeysCommand, offline: &Offline) -> Result<(), String> {
    let keys = &offline.console.keys;
    let ctx = client::cli_context();
    match command {
        KeysCommand::Create {
            name,
            role,
            expires,
            ..
        } => {
            let created = keys
                .create(&ctx, name, role, expires)
                .await
                .map_err(|e| e.to_string())?;
            print_created(&created.key.id, &created.secret);
        }
        KeysCommand::List { .. } => {
            let rows = keys.list().into_iter().map(|k| KeyRow {
                id: k.id,
                name: k.name,
                role: k.role,
                created_ms: k.created_ms,
                expires_ms: k.expires_ms,
                revoked_ms: k.revoked_ms,
                last_used_ms: k.last_used_ms,
            });
            print_rows(rows);
        }
        KeysCommand::Revoke { id, .. } => {
            let key = keys.revoke(&ctx, &id).await.map_err(|e| e.to_string())?;
            println!("revoked {}", key.id);
        }
    }
    Ok(())
}

async fn through_api(command: KeysCommand, api: &Api) -> Result<(), String> {
    match command {
        KeysCommand::Create {
            name,
            role,
            expires,
            ..
        } => {
            let body = json!({"name": name, "role": role, "expires_in_days": expires});
            let created: Created = api.json(api.post("/api/admin/keys").json(&body)).await?;
            print_created(&created.row.id, &created.key);
        }
        KeysCommand::List { .. } => {
            let list: KeyList = api.json(api.get("/api/admin/keys")).await?;
            print_rows(list.items.into_iter());
        }
        KeysCommand::Revoke { id, .. } => {
            let row: KeyRow = api
                .json(api.delete(&format!("/api/admin/keys/{id}")))
                .await?;
            println!("revoked {}", row.id);
        }
    }
    Ok(())
}

fn print_created(id: &str, secret: &str) {
    eprintln!("created key {id}; its secret is shown only now:");
    println!("{secret}");
}

fn print_rows(rows: impl Iterator<Item = KeyRow>) {
    println!("ID            ROLE      STATE    CREATED_MS     LAST_USED_MS   NAME");
    for row in rows {
        let state = if row.revoked_ms.is_some() {
            "revoked"
        } else if row.expires_ms.is_some() {
            "expiring"
        } else {
            "active"
        };
        let last_used = row.last_used_ms.map_or("-".to_owned(), |t| t.to_string());
        println!(
            "{:<13} {:<9} {:<8} {:<14} {:<14} {}",
            row.id, row.role, state, row.created_ms, last_used, row.name
        );
    }
}
