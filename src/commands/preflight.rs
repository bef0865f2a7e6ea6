//! `sofiia-console preflight [--strict] [--json]` (SPEC §13), and the gathering `evidence`
//! reuses.
//!
//! The checks themselves are `service::preflight`'s. This layer loads the configuration —
//! without its rules first, so a broken rule is one FAIL line among all the others rather than
//! the only thing said — and asks the running service about a database file it holds, which no
//! other process may open.

use serde_json::Value;

use super::client::Api;
use crate::build_info;
use crate::cli::{ConfigArgs, PreflightArgs};
use crate::config::{Config, Flags};
use crate::domain::audit::Verification;
use crate::domain::preflight::{AUDIT_CHAIN, Check, Report, SCHEMA, Status, audit_verdict};
use crate::service::preflight::{self, DATABASE};
use crate::store::inspect::{InspectError, Inspection};

pub const CONFIG: &str = "config";

/// A preflight run and what it opened on the way, for a report to describe further.
pub struct Preflight {
    pub report: Report,
    pub config: Option<Config>,
    pub database: Reach,
    /// The audit chain as it was verified, when it could be.
    pub chain: Option<Verification>,
}

/// Where the database's figures can be had from.
pub enum Reach {
    Direct(Box<Inspection>),
    Service(Api),
    Nowhere,
}

pub async fn run(args: PreflightArgs) -> Result<(), String> {
    let report = gather(&args.config, None).await.report;
    if args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{json}");
    } else {
        for line in report.lines() {
            println!("{line}");
        }
    }
    if report.passes(args.strict) {
        return Ok(());
    }
    let count = |status| report.checks.iter().filter(|c| c.status == status).count();
    Err(format!(
        "preflight failed: {} FAIL, {} WARN{}",
        count(Status::Fail),
        count(Status::Warn),
        if args.strict {
            " (--strict fails on WARN)"
        } else {
            ""
        }
    ))
}

/// Runs every check; the service, when the database is in use, is asked at `service_url` or
/// else at the configured listen address.
pub async fn gather(args: &ConfigArgs, service_url: Option<&str>) -> Preflight {
    let flags = Flags {
        config: args.config.clone(),
        listen: None,
        data_dir: args.data_dir.clone(),
    };
    let config = match Config::load_unvalidated(&flags) {
        Ok(config) => config,
        Err(error) => {
            let detail = format!("{error} (nothing else can be checked)");
            return Preflight {
                report: Report::new(vec![Check::fail(CONFIG, detail)]),
                config: None,
                database: Reach::Nowhere,
                chain: None,
            };
        }
    };
    let mut checks = vec![
        config_check(&config, &flags),
        preflight::data_dir(&config),
        preflight::disk(&config),
        preflight::admin_credential(&config),
        preflight::key_files(&config),
        preflight::listen(&config),
    ];
    let (database_checks, database, chain) = database(&config, service_url).await;
    checks.extend(database_checks);
    checks.extend([
        preflight::retention(&config),
        preflight::agent_nodes(&config).await,
        preflight::cors(&config),
        preflight::metrics(&config),
    ]);
    Preflight {
        report: Report::new(checks),
        config: Some(config),
        database,
        chain,
    }
}

fn config_check(config: &Config, flags: &Flags) -> Check {
    let from = Config::file_for(flags).map_or_else(
        || "built-in defaults and the environment".to_owned(),
        |f| f.display().to_string(),
    );
    match config.validate() {
        Ok(()) => Check::pass(CONFIG, format!("valid ({from})")),
        Err(error) => Check::fail(CONFIG, error.to_string()),
    }
}

async fn database(
    config: &Config,
    service_url: Option<&str>,
) -> (Vec<Check>, Reach, Option<Verification>) {
    match preflight::inspect(config) {
        Err(InspectError::Locked(path)) => through_service(config, service_url, &path).await,
        inspected => {
            let (checks, chain) = preflight::database_checks(&inspected);
            let reach = inspected.map_or(Reach::Nowhere, |i| Reach::Direct(Box::new(i)));
            (checks, reach, chain)
        }
    }
}

/// The admin credential this machine holds: the configured token, else the bootstrap key.
pub fn admin_key(config: &Config) -> Result<String, String> {
    if let Some(token) = config.admin_token().map_err(|e| e.to_string())? {
        return Ok(token.expose().to_owned());
    }
    let path = config.admin_key_path();
    std::fs::read_to_string(&path)
        .map(|key| key.trim().to_owned())
        .map_err(|e| format!("no admin_token and cannot read {}: {e}", path.display()))
}

/// The database checks answered by the service that holds the file: its health check and its
/// own walk of the chain (which it audits as `audit.verify`). Integrity is verified only on a
/// stopped file, so the database line is a WARN at best.
async fn through_service(
    config: &Config,
    service_url: Option<&str>,
    path: &str,
) -> (Vec<Check>, Reach, Option<Verification>) {
    let base = service_url.map_or_else(|| format!("http://{}", config.listen), str::to_owned);
    let in_use = format!("{path} is in use by the running service at {base}");
    let api = match admin_key(config).and_then(|key| Api::with_key(base.clone(), &key)) {
        Ok(api) => api,
        Err(why) => {
            let unasked = format!("not checked: {in_use}, and {why}");
            let checks = vec![
                Check::warn(DATABASE, unasked.clone()),
                Check::warn(SCHEMA, unasked.clone()),
                Check::warn(AUDIT_CHAIN, unasked),
            ];
            return (checks, Reach::Nowhere, None);
        }
    };
    let health = health(&api).await;
    let database = match &health {
        Ok(health) => database_from_health(health, &in_use),
        Err(why) => Check::warn(DATABASE, format!("{in_use}, which did not answer: {why}")),
    };
    let schema = match &health {
        Ok(health) => schema_from_health(health),
        Err(_) => Check::warn(SCHEMA, "not checked: the service did not answer"),
    };
    let (audit, chain) = match api.json::<Verification>(api.get("/api/audit/verify")).await {
        Ok(chain) => (audit_verdict(&chain), Some(chain)),
        Err(why) => (
            Check::warn(
                AUDIT_CHAIN,
                format!("not checked through the service: {why}"),
            ),
            None,
        ),
    };
    (vec![database, schema, audit], Reach::Service(api), chain)
}

/// `/api/health`, whose body says what is wrong even when its status is 503.
async fn health(api: &Api) -> Result<Value, String> {
    let response = api
        .get("/api/health")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    response.json().await.map_err(|e| e.to_string())
}

fn database_from_health(health: &Value, in_use: &str) -> Check {
    let check = &health["checks"]["database"];
    let detail = check["detail"].as_str().unwrap_or("no detail");
    if check["status"] == "ok" {
        Check::warn(
            DATABASE,
            format!(
                "{in_use}, which reports it ok ({detail}); page checksums are verified only on a stopped file"
            ),
        )
    } else {
        Check::fail(DATABASE, format!("{in_use}, which reports: {detail}"))
    }
}

/// A running service refuses a schema it does not know, so only a different release than this
/// binary leaves a question open.
fn schema_from_health(health: &Value) -> Check {
    let theirs = health["version"].as_str().unwrap_or("unknown");
    if theirs == build_info::VERSION {
        Check::pass(
            SCHEMA,
            format!("known: the running service, release {theirs} like this binary, opened it"),
        )
    } else {
        Check::warn(
            SCHEMA,
            format!(
                "the running service is release {theirs}, this binary {}: stop the service to check the file against this binary",
                build_info::VERSION
            ),
        )
    }
}
