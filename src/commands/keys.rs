//! `sofiia-console keys create|list|revoke`.
//!
//! Like every CLI data command (SPEC §3), it works directly on the database file when the
//! service is stopped, and through the service's admin API when the file is in use — and says
//! which it did. A locked file never makes it hang.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::json;

use crate::cli::KeysCommand;
use crate::clock::Clock;
use crate::config::{Config, Flags};
use crate::domain::role::Role;
use crate::service::keys::Keys;
use crate::store::{OpenError, Store};

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
    let config = Config::load(&Flags {
        config: client.config.config.clone(),
        listen: None,
        data_dir: client.config.data_dir.clone(),
    })
    .map_err(|e| e.to_string())?;

    if client.url.is_none() {
        match Store::open(&config.database_path()) {
            Ok((store, writer)) => {
                eprintln!("(directly on {})", config.database_path().display());
                let result = direct(command, store).await;
                writer.join();
                return result;
            }
            Err(OpenError::Locked { .. }) => {}
            Err(other) => return Err(other.to_string()),
        }
    }
    let url = client
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    eprintln!("(through the running service at {url})");
    let key_file = client
        .key_file
        .clone()
        .unwrap_or_else(|| config.admin_key_path());
    through_api(command, &url, &key_file).await
}

async fn direct(command: KeysCommand, store: Store) -> Result<(), String> {
    let keys = Keys::load(store, Clock::from_env(), None)
        .await
        .map_err(|e| e.to_string())?;
    match command {
        KeysCommand::Create {
            name,
            role,
            expires,
            ..
        } => {
            let created = keys
                .create(name, role, expires)
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
            let key = keys.revoke(&id).await.map_err(|e| e.to_string())?;
            println!("revoked {}", key.id);
        }
    }
    Ok(())
}

async fn through_api(command: KeysCommand, url: &str, key_file: &PathBuf) -> Result<(), String> {
    let admin_key = std::fs::read_to_string(key_file)
        .map_err(|e| format!("cannot read the admin key from {}: {e}", key_file.display()))?;
    let api = Api {
        http: reqwest::Client::new(),
        base: url.trim_end_matches('/').to_owned(),
        key: admin_key.trim().to_owned(),
    };
    match command {
        KeysCommand::Create {
            name,
            role,
            expires,
            ..
        } => {
            let body = json!({"name": name, "role": role, "expires_in_days": expires});
            let created: Created = api
                .call(
                    api.http
                        .post(format!("{}/api/admin/keys", api.base))
                        .json(&body),
                )
                .await?;
            print_created(&created.row.id, &created.key);
        }
        KeysCommand::List { .. } => {
            let list: KeyList = api
                .call(api.http.get(format!("{}/api/admin/keys", api.base)))
                .await?;
            print_rows(list.items.into_iter());
        }
        KeysCommand::Revoke { id, .. } => {
            let row: KeyRow = api
                .call(api.http.delete(format!("{}/api/admin/keys/{id}", api.base)))
                .await?;
            println!("revoked {}", row.id);
        }
    }
    Ok(())
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, String> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| format!("cannot reach the service at {}: {e}", self.base))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("the service answered {status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer from the service: {e}"))
    }
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
