//! Start-up and shutdown of the service: data directory, database, keys, listener, router.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::domain::audit::{Action, Context, Outcome, Target};
use crate::http::HttpPolicy;
use crate::http::limits::LimitSettings;
use crate::http::routes::metrics::Exporter;
use crate::http::serve::ConnectionLimits;
use crate::service::events::{self, CommitsToBus};
use crate::service::{Console, ServiceError, denials, retention};
use crate::store::{OpenError, Store, WriterThread};
use crate::{build_info, failpoints, http, monitoring, supervisor};

/// How long shutdown waits for in-flight requests before it stops waiting.
/// How often metric histograms are folded in when nobody scrapes.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// How long shutdown waits for a retention run to finish its batch and record itself.
const RETENTION_STOP_LIMIT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the writer to commit what is queued.
const WRITER_DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How often the audit chain head goes to the log (also at start and at stop): the journal then
/// holds, off the database file, heads that `audit verify --expect` can hold the chain to.
const AUDIT_HEAD_LOG_INTERVAL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Service(#[from] ServiceError),
    #[error("while serving: {0}")]
    Serve(#[from] std::io::Error),
    #[error("cannot write the log: {0}")]
    Log(String),
    #[error("storage failed ({0}); restart the service to reopen the database")]
    Storage(String),
}

/// A built application, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    console: Arc<Console>,
    writer: WriterThread,
    policy: HttpPolicy,
    connections: ConnectionLimits,
    exporter: Exporter,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        // Before anything records: a handle taken from the no-op recorder stays a no-op.
        let handle = monitoring::install().ok_or_else(|| {
            StartError::Service(ServiceError::Internal(
                "a metrics recorder is already installed".into(),
            ))
        })?;
        failpoints::init_from_env();
        let clock = Clock::from_env();
        prepare_data_dir(&config.data_dir)?;
        let (store, writer) =
            supervisor::extending_start_timeout(|| Store::open(&config.database_path()))?;
        let console = Console::open(store, clock, &config, config.admin_token()?)?;
        console
            .store
            .published()
            .listen(Arc::new(CommitsToBus(console.bus.clone())));
        console.close_interrupted_runs().await?;
        console.publish_retention_state()?;
        let admin_key_path = config.admin_key_path();
        if console.keys.ensure_admin(&admin_key_path).await? {
            tracing::info!(
                event = "bootstrap_admin_key",
                path = %admin_key_path.display(),
                "created an admin key; it is in this file (mode 0600)"
            );
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Listen {
                addr: config.listen,
                reason: e.to_string(),
            })?;
        let http = &config.http;
        let policy = HttpPolicy {
            cors_origins: config.cors_origins.clone(),
            limits: LimitSettings {
                max_concurrent: http.max_concurrent_requests,
                timeout: Duration::from_millis(http.request_timeout_ms),
                body_timeout: Duration::from_millis(http.body_timeout_ms),
                max_buffered_response_bytes: (http.max_buffered_response_mib * 1024 * 1024)
                    as usize,
            },
        };
        let connections = ConnectionLimits {
            idle_timeout: Duration::from_millis(http.idle_timeout_ms),
            write_timeout: Duration::from_millis(http.write_timeout_ms),
            drain_limit: DRAIN_LIMIT,
        };
        let exporter = Exporter {
            handle,
            token: config.metrics_token()?,
        };
        Ok(Self {
            listener,
            console: Arc::new(console),
            writer,
            policy,
            connections,
            exporter,
        })
    }

    /// Serves until SIGTERM or SIGINT, then drains requests and the writer.
    pub async fn run_until_stopped(self) -> Result<(), StartError> {
        let Application {
            listener,
            console,
            writer,
            policy,
            connections,
            exporter,
        } = self;
        let addr = listener.local_addr()?;
        // Installed before `listening` is announced: from then on SIGTERM means "drain and stop".
        let stop = stop_signal()?;
        record(&console, Action::ServiceStart).await;
        tracing::info!(
            event = "listening",
            addr = %addr,
            version = build_info::VERSION,
            git_sha = build_info::GIT_SHA,
            "listening"
        );
        let housekeeping = tokio::spawn(housekeeping(Arc::downgrade(&console)));
        let heads = tokio::spawn(log_audit_heads(Arc::downgrade(&console)));
        let schedule = tokio::spawn(retention::schedule(Arc::downgrade(&console)));
        let watcher = tokio::spawn(events::watch(Arc::downgrade(&console)));
        let watchdog = supervisor::watchdog_interval()
            .map(|interval| tokio::spawn(supervisor::watchdog(Arc::downgrade(&console), interval)));
        supervisor::ready();
        // Histogram samples are folded in at each scrape; with nobody scraping they must be
        // folded in anyway, or they pile up.
        let upkeep_handle = exporter.handle.clone();
        let upkeep = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(METRICS_UPKEEP);
            loop {
                ticks.tick().await;
                upkeep_handle.run_upkeep();
            }
        });
        let router = http::router(console.clone(), &policy, exporter);
        let closing = console.clone();
        let writer_handle = console.store.writer().clone();
        // Serving ends on SIGTERM or SIGINT, or when storage fails for good: then the process
        // exits non-zero, so the service manager restarts it on a reopened file.
        let stop = async move {
            let storage_failed = tokio::select! {
                () = stop => {
                    tracing::info!(event = "stopping", "stop requested; draining requests");
                    None
                }
                cause = writer_handle.failure() => {
                    tracing::error!(event = "stopping", %cause, "storage failed; draining requests and exiting");
                    Some(cause)
                }
            };
            supervisor::stopping();
            closing.bus.close();
            storage_failed
        };
        let storage_failed = http::serve::serve(listener, router, connections, stop).await;
        // A retention run stops at its next batch and records how far it got.
        console.retention.stop(RETENTION_STOP_LIMIT).await;
        schedule.abort();
        watcher.abort();
        upkeep.abort();
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        housekeeping.abort();
        heads.abort();
        console.flush_denials().await;
        record(&console, Action::ServiceStop).await;
        console.log_audit_head("stop");
        drop(console);
        drain_writer(writer).await;
        tracing::info!(event = "stopped", "stopped");
        match storage_failed {
            Some(cause) => Err(StartError::Storage(cause)),
            None => Ok(()),
        }
    }
}

/// Records a service lifecycle event; failing to is logged, not fatal.
async fn record(console: &Console, action: Action) {
    let event = Context::system()
        .draft(
            console.clock.now_ms(),
            action,
            Target::new("service", "sofiia-console"),
            Outcome::Ok,
        )
        .detail("version", build_info::VERSION)
        .detail("git_sha", build_info::GIT_SHA);
    if let Err(error) = console.store.append_audit(vec![event]).await {
        tracing::error!(event = "error", %error, action = action.as_str(), "could not record a service event");
    }
}

/// Closes the denial-aggregation windows on schedule and forgets lockout state that no longer
/// matters. Holds the console weakly so it never keeps the writer alive at shutdown.
async fn housekeeping(console: std::sync::Weak<Console>) {
    let mut ticks = tokio::time::interval(denials::WINDOW);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(console) = console.upgrade() else {
            return;
        };
        console.flush_denials().await;
        console.sweep_lockouts();
    }
}

/// Logs the audit chain head at start and every `AUDIT_HEAD_LOG_INTERVAL`.
async fn log_audit_heads(console: std::sync::Weak<Console>) {
    let mut ticks = tokio::time::interval(AUDIT_HEAD_LOG_INTERVAL);
    loop {
        ticks.tick().await;
        let Some(console) = console.upgrade() else {
            return;
        };
        console.log_audit_head("periodic");
    }
}

/// Creates the data directory (0700) when it does not exist.
fn prepare_data_dir(dir: &Path) -> Result<(), StartError> {
    let failed = |e: std::io::Error| StartError::DataDir {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(failed)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)?;
    }
    Ok(())
}

/// Waits, bounded, for the writer to commit everything queued. The writer stops once the last
/// handle to it is gone, which is when the router and every task holding the console are done.
async fn drain_writer(writer: WriterThread) {
    let joined = tokio::task::spawn_blocking(move || writer.join());
    if tokio::time::timeout(WRITER_DRAIN_LIMIT, joined)
        .await
        .is_err()
    {
        tracing::warn!(event = "writer_drain_timeout", "writer still busy at exit");
    }
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future resolving on either.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
