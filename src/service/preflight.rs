//! Preflight's checks (SPEC §13): each gathers its facts from the machine — the data
//! directory, the key files, the volume, the listen address, the database file, the agent
//! nodes — and leaves the verdict to `domain::preflight`.
//!
//! Nothing here writes: the listen address is bound and released, agent nodes get a TCP
//! connection and no request, and the database is read through a `store::inspect::Inspection`,
//! which never changes the file.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::domain::api_key;
use crate::domain::audit::Verification;
use crate::domain::preflight::{self as verdicts, Check, DirFacts, KeyFile, NodeReach, Status};
use crate::service::health::{self, disk_space_of, disk_verdict};
use crate::store::SCHEMA_VERSION;
use crate::store::inspect::{InspectError, Inspection};

pub const DISK: &str = "disk";
pub const ADMIN_CREDENTIAL: &str = "admin-credential";
pub const LISTEN: &str = "listen";
pub const DATABASE: &str = "database";

/// How long an agent node has to accept a connection.
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub fn data_dir(config: &Config) -> Check {
    let dir = &config.data_dir;
    let shown = dir.display().to_string();
    let metadata = match std::fs::metadata(dir) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return verdicts::data_dir_verdict(&shown, None);
        }
        Err(e) => return Check::fail(verdicts::DATA_DIR, format!("{shown} cannot be read: {e}")),
    };
    let read_only_fs = rustix::fs::statvfs(dir)
        .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
    let facts = DirFacts {
        is_dir: metadata.is_dir(),
        mode: metadata.mode() & 0o7777,
        owner: metadata.uid(),
        runner: rustix::process::geteuid().as_raw(),
        read_only_fs,
    };
    verdicts::data_dir_verdict(&shown, Some(facts))
}

/// The thresholds of `/api/health`'s disk check, on the volume that holds (or will hold) the
/// data directory.
pub fn disk(config: &Config) -> Check {
    let existing = config.data_dir.ancestors().find(|p| p.exists());
    let verdict = disk_verdict(existing.and_then(disk_space_of));
    let status = match verdict.status {
        health::Status::Ok => Status::Pass,
        health::Status::Degraded => Status::Warn,
        health::Status::Error => Status::Fail,
    };
    Check::new(DISK, status, verdict.detail)
}

/// A configured token must satisfy the configuration and not be weak; without one, the
/// bootstrap key file must hold a key (a fresh install has none until its first start).
pub fn admin_credential(config: &Config) -> Check {
    let token = match config.admin_token() {
        Ok(token) => token,
        Err(error) => return Check::fail(ADMIN_CREDENTIAL, error.to_string()),
    };
    let source = match &config.admin_token_file {
        _ if config.admin_token.is_some() => "admin_token".to_owned(),
        Some(path) => format!("admin_token_file {}", path.display()),
        None => String::new(),
    };
    if let Some(token) = token {
        return match verdicts::token_weakness(token.expose()) {
            Some(why) => Check::fail(
                ADMIN_CREDENTIAL,
                format!("{source} {why}: generate one, e.g. `head -c 32 /dev/urandom | base64`"),
            ),
            None => Check::pass(ADMIN_CREDENTIAL, format!("{source} is set")),
        };
    }
    let path = config.admin_key_path();
    match std::fs::read_to_string(&path) {
        Ok(text) if api_key::parse(text.trim()).is_some() => Check::pass(
            ADMIN_CREDENTIAL,
            format!("bootstrap admin key in {}", path.display()),
        ),
        Ok(_) => Check::fail(
            ADMIN_CREDENTIAL,
            format!("{} does not hold an API key (sk_…)", path.display()),
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => Check::warn(
            ADMIN_CREDENTIAL,
            format!(
                "no admin_token and no {}: the first start creates a bootstrap key there unless the database holds an admin key",
                path.display()
            ),
        ),
        Err(e) => Check::fail(
            ADMIN_CREDENTIAL,
            format!("cannot read {}: {e}", path.display()),
        ),
    }
}

/// The bootstrap key (when it exists) and every configured file holding a secret.
pub fn key_files(config: &Config) -> Check {
    let bootstrap = config.admin_key_path();
    let configured = [
        config.admin_token_file.as_ref(),
        config.metrics.token_file.as_ref(),
    ]
    .into_iter()
    .chain(config.agents.nodes.iter().map(|n| n.api_key_file.as_ref()))
    .flatten();
    let files: Vec<KeyFile> = bootstrap
        .exists()
        .then_some(&bootstrap)
        .into_iter()
        .chain(configured)
        .map(|path| key_file(path))
        .collect();
    verdicts::key_files_verdict(&files)
}

fn key_file(path: &Path) -> KeyFile {
    KeyFile {
        path: path.display().to_string(),
        mode: std::fs::metadata(path)
            .map(|m| m.mode() & 0o7777)
            .map_err(|e| format!("cannot be read: {e}")),
    }
}

/// Binds the listen address and lets it go at once. In use is only a WARN: the service itself
/// holds it while it runs.
pub fn listen(config: &Config) -> Check {
    let addr = config.listen;
    match TcpListener::bind(addr) {
        Ok(_) => Check::pass(LISTEN, format!("{addr} is free")),
        Err(e) if e.kind() == ErrorKind::AddrInUse => Check::warn(
            LISTEN,
            format!("{addr} is in use (is the service running?)"),
        ),
        Err(e) => Check::fail(LISTEN, format!("{addr} cannot be bound: {e}")),
    }
}

/// Opens the database file for inspection (see `store::inspect`).
pub fn inspect(config: &Config) -> Result<Inspection, InspectError> {
    Inspection::open(&config.database_path())
}

/// The database, schema and audit chain checks on an inspection, and the chain's state when it
/// was walked. A file in use is not handled here: only the running service can answer for it.
pub fn database_checks(
    inspected: &Result<Inspection, InspectError>,
) -> (Vec<Check>, Option<Verification>) {
    let inspection = match inspected {
        Ok(inspection) => inspection,
        Err(InspectError::Missing(path)) => {
            return (
                vec![
                    Check::warn(
                        DATABASE,
                        format!("{path} does not exist: the first start creates it"),
                    ),
                    Check::pass(
                        verdicts::SCHEMA,
                        format!("no file yet: the first start writes version {SCHEMA_VERSION}"),
                    ),
                    Check::pass(verdicts::AUDIT_CHAIN, "no file yet: nothing to verify"),
                ],
                None,
            );
        }
        Err(error) => {
            let not_checked = "not checked: the database did not open";
            return (
                vec![
                    Check::fail(DATABASE, error.to_string()),
                    Check::warn(verdicts::SCHEMA, not_checked),
                    Check::warn(verdicts::AUDIT_CHAIN, not_checked),
                ],
                None,
            );
        }
    };
    let opened = if inspection.needed_recovery() {
        Check::warn(
            DATABASE,
            "opens and verifies once recovered, but was not shut down cleanly: the next start recovers it",
        )
    } else {
        Check::pass(DATABASE, "opens; every page's checksum verifies")
    };
    let schema = match inspection.schema_version() {
        Ok(found) => verdicts::schema_verdict(found, SCHEMA_VERSION),
        Err(e) => Check::fail(verdicts::SCHEMA, format!("cannot be read: {e}")),
    };
    let (audit, chain) = match inspection.verify_audit() {
        Ok(verification) => (verdicts::audit_verdict(&verification), Some(verification)),
        Err(e) => (
            Check::fail(verdicts::AUDIT_CHAIN, format!("cannot be walked: {e}")),
            None,
        ),
    };
    (vec![opened, schema, audit], chain)
}

pub fn retention(config: &Config) -> Check {
    let r = &config.retention;
    verdicts::retention_verdict(&r.schedule, r.audit_days, r.messages_days)
}

pub fn cors(config: &Config) -> Check {
    verdicts::cors_verdict(&config.cors_origins)
}

pub fn metrics(config: &Config) -> Check {
    let token_file = config
        .metrics
        .token_file
        .as_ref()
        .map(|p| p.display().to_string());
    verdicts::metrics_verdict(config.listen, token_file.as_deref())
}

/// Opens (and drops) a TCP connection to each node's host and port; nothing is sent.
pub async fn agent_nodes(config: &Config) -> Check {
    let mut reaches = Vec::with_capacity(config.agents.nodes.len());
    for node in &config.agents.nodes {
        let address = node_address(&node.url);
        let reached = match &address {
            Ok(address) => connect(address).await,
            Err(why) => Err(why.clone()),
        };
        reaches.push(NodeReach {
            name: node.name.clone(),
            address: address.unwrap_or_else(|_| node.url.clone()),
            reached,
        });
    }
    verdicts::agents_verdict(&reaches)
}

/// `host:port` of a node's URL, the scheme's port when none is given.
fn node_address(url: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = url.host_str().ok_or("the URL has no host")?;
    let port = url.port_or_known_default().ok_or("the URL has no port")?;
    Ok(format!("{host}:{port}"))
}

async fn connect(address: &str) -> Result<(), String> {
    match tokio::time::timeout(
        NODE_CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(address),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {NODE_CONNECT_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_address_defaults_to_its_schemes_port() {
        assert_eq!(
            node_address("http://10.0.0.5:8000/v1").unwrap(),
            "10.0.0.5:8000"
        );
        assert_eq!(
            node_address("https://node.example/v1").unwrap(),
            "node.example:443"
        );
        assert!(node_address("not a url").is_err());
    }
}
