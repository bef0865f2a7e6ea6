//! How a CLI data command reaches the data (SPEC §3): directly on the database file when the
//! service is stopped, through the running service's admin API when the file is in use. The
//! direct route runs the same service code the API does, so both record the same audit events.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::cli::{ClientArgs, ConfigArgs};
use crate::clock::Clock;
use crate::config::{Config, Flags};
use crate::domain::audit::{Actor, Context};
use crate::service::Console;
use crate::store::{OpenError, Store, WriterThread};

pub enum Route {
    Direct(Box<Offline>),
    Api(Api),
}

/// The service's state opened in this process, on a stopped service's file.
pub struct Offline {
    pub console: Console,
    writer: WriterThread,
}

impl Offline {
    /// Waits until everything written has been committed.
    pub fn close(self) {
        let Offline { console, writer } = self;
        drop(console);
        writer.join();
    }
}

/// The admin API of a running service.
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// Chooses the route and says on stderr which it took.
pub fn connect(client: &ClientArgs) -> Result<Route, String> {
    let config = load_config(&client.config)?;
    if client.url.is_none() {
        match open_file(&config) {
            Ok(offline) => return Ok(Route::Direct(Box::new(offline))),
            Err(OpenError::Locked { .. }) => {}
            Err(other) => return Err(other.to_string()),
        }
    }
    let base = client
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    eprintln!("(through the running service at {base})");
    let key_file = client
        .key_file
        .clone()
        .unwrap_or_else(|| config.admin_key_path());
    Ok(Route::Api(Api::new(base, &key_file)?))
}

/// Opens the database of a stopped service, for commands that only work on the file itself.
pub fn open_stopped(args: &ConfigArgs) -> Result<Offline, String> {
    let config = load_config(args)?;
    open_file(&config).map_err(|e| match e {
        OpenError::Locked { path } => format!(
            "{path} is in use by the running service; this command works on the file of a stopped service (stop it first)"
        ),
        other => other.to_string(),
    })
}

pub fn load_config(args: &ConfigArgs) -> Result<Config, String> {
    Config::load(&Flags {
        config: args.config.clone(),
        listen: None,
        data_dir: args.data_dir.clone(),
    })
    .map_err(|e| e.to_string())
}

fn open_file(config: &Config) -> Result<Offline, OpenError> {
    let (store, writer) = Store::open(&config.database_path())?;
    eprintln!("(directly on {})", config.database_path().display());
    let console =
        Console::open(store, Clock::from_env(), config, None).map_err(|e| OpenError::Other {
            path: config.database_path().display().to_string(),
            reason: e.to_string(),
        })?;
    Ok(Offline { console, writer })
}

/// The audit context of a command run directly on the file: the operating-system user, by
/// name when the environment says it, else by uid (a root shell without a login has no `USER`).
pub fn cli_context() -> Context {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid-{}", rustix::process::getuid().as_raw()));
    Context {
        actor: Actor::cli(&user),
        request_id: None,
        client_ip: None,
    }
}

impl Api {
    fn new(base: String, key_file: &PathBuf) -> Result<Self, String> {
        let key = std::fs::read_to_string(key_file)
            .map_err(|e| format!("cannot read the admin key from {}: {e}", key_file.display()))?;
        Self::with_key(base, key.trim())
    }

    pub fn with_key(base: String, key: &str) -> Result<Self, String> {
        Ok(Self {
            http: http_client(&base)?,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(format!("{}{path}", self.base))
    }

    /// Sends with the admin key; a non-2xx answer is an error carrying the service's message.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| format!("cannot reach the service at {}: {e}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(format!("the service answered {status}: {text}"))
    }

    pub async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, String> {
        let text = self
            .send(request)
            .await?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("unexpected answer from the service: {e}"))
    }
}

/// A client that verifies `https://` against the platform's CA store. A host without one can
/// still reach an `http://` service, so only an `https://` URL makes its absence an error.
fn http_client(base: &str) -> Result<reqwest::Client, String> {
    match reqwest::Client::builder().build() {
        Ok(client) => Ok(client),
        Err(_) if base.starts_with("http://") => reqwest::Client::builder()
            .tls_certs_only([])
            .build()
            .map_err(|e| format!("cannot set up an HTTP client: {e}")),
        Err(e) => Err(format!(
            "cannot verify {base} without the platform's CA store: {}",
            std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
        )),
    }
}
