//! Configuration: built-in defaults → TOML file → `SOFIIA_*` environment → command-line flags
//! (SPEC §2).
//!
//! All sources are merged into one TOML tree before anything is typed, so each layer can set any
//! key and a single deserialisation — with unknown keys denied — checks the result. Errors name
//! the key (as a dotted path), what was wrong, and which source set it.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::rate::Limit;
use crate::domain::retention::DailyTime;

/// The packaged configuration file, read when it exists and no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/sofiia-console/config.toml";
const ENV_PREFIX: &str = "SOFIIA_";
/// `SOFIIA_*` variables that are not configuration keys: the CLI's client settings, the variables
/// of the scripts in `ops/` (which run the binary with them still set), and the test knobs (see
/// `clock` and `failpoints`).
const NON_CONFIG_ENV: &[&str] = &[
    "SOFIIA_URL",
    "SOFIIA_KEY_FILE",
    "SOFIIA_BIN",
    "SOFIIA_KEY",
    "SOFIIA_METRICS_TOKEN",
    "SOFIIA_FROZEN_CLOCK_MS",
    "SOFIIA_CLOCK_START_MS",
    "SOFIIA_FAILPOINTS",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub admin_token: Option<Secret>,
    pub admin_token_file: Option<PathBuf>,
    pub require_idempotency_key: bool,
    pub auto_create_chats: bool,
    /// Origins allowed to call the API from a browser; empty denies every cross-origin request.
    pub cors_origins: Vec<String>,
    pub http: HttpConfig,
    pub idempotency: IdempotencyConfig,
    pub rate_limit: RateLimitConfig,
    pub auth: AuthConfig,
    pub agents: AgentsConfig,
    pub retention: RetentionConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub events: EventsConfig,
    pub backup: BackupConfig,
    /// Which source set each key, so a value refused after merging is traced to where it came
    /// from.
    #[serde(skip)]
    sources: Sources,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// Recent messages of the chat sent with each call.
    pub context_messages: usize,
    pub system_prompt: Option<String>,
    /// Consecutive failures that open a node's circuit…
    pub breaker_failures: u32,
    /// …for this long, after which one probe call is let through.
    pub breaker_open_seconds: u64,
    pub nodes: Vec<NodeConfig>,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            context_messages: 20,
            system_prompt: None,
            breaker_failures: 3,
            breaker_open_seconds: 30,
            nodes: Vec::new(),
        }
    }
}

/// One OpenAI-compatible agent node (`[[agents.nodes]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    /// Base URL; calls go to `{url}/chat/completions`.
    pub url: String,
    pub model: String,
    pub api_key_file: Option<PathBuf>,
    /// PEM certificates trusted for this node on top of the platform's CA store: a node behind
    /// a private CA.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "NodeConfig::default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "NodeConfig::default_max_rps")]
    pub max_rps: u32,
}

impl NodeConfig {
    fn default_timeout_ms() -> u64 {
        30_000
    }

    fn default_max_rps() -> u32 {
        5
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Failed authentications from one address that lock it out…
    pub lockout_failures: usize,
    /// …when they fall within this many minutes, for this many minutes.
    pub lockout_minutes: u64,
    /// A session ends after this long without a request…
    pub session_idle_minutes: u64,
    /// …and after this long in any case.
    pub session_max_hours: u64,
    /// Marks the session cookie `Secure` (set it when a TLS proxy fronts the console).
    pub cookie_secure: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            lockout_failures: 5,
            lockout_minutes: 15,
            session_idle_minutes: 30,
            session_max_hours: 12,
            cookie_secure: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Longest a request may take before it is answered `503`.
    pub request_timeout_ms: u64,
    /// Time a client has to send request headers; also the longest a keep-alive connection may
    /// sit idle.
    pub idle_timeout_ms: u64,
    /// Requests served at once; more are refused with `503` instead of queueing. `/livez` and
    /// `/api/health` never count, and requests without a credential may hold a quarter at most.
    pub max_concurrent_requests: usize,
    /// Time a client has to send a request's body once its headers are in.
    pub body_timeout_ms: u64,
    /// Longest a response may stall because the client stopped reading; then the connection is
    /// closed.
    pub write_timeout_ms: u64,
    /// Longest a streamed response (an audit export) may run.
    pub stream_max_minutes: u64,
    /// Response bytes held for clients at once, all connections together; past it, requests are
    /// refused with `503` rather than buffered.
    pub max_buffered_response_mib: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout_ms: 60_000,
            idle_timeout_ms: 10_000,
            max_concurrent_requests: 1024,
            body_timeout_ms: 5_000,
            write_timeout_ms: 10_000,
            stream_max_minutes: 30,
            max_buffered_response_mib: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub chat: Limit,
    pub operator: Limit,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            chat: Limit {
                per_minute: 30,
                burst: 10,
            },
            operator: Limit {
                per_minute: 120,
                burst: 30,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    pub ttl_hours: u64,
    pub wait_ms: u64,
}

/// What retention keeps, when it runs and how hard it may push (SPEC §10).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// When the daily run starts, `HH:MM` in UTC.
    pub schedule: String,
    /// Audit events older than this many days go (with their index entries).
    pub audit_days: u64,
    /// Idempotency records go once expired and at least this many hours old.
    pub idempotency_hours: u64,
    /// Messages older than this many days go; 0 keeps them forever.
    pub messages_days: u64,
    /// Rate windows untouched for this many hours go (they read as a full bucket anyway).
    pub rate_window_idle_hours: u64,
    /// Job log entries kept.
    pub runs_kept: u64,
    /// Rows deleted per write transaction.
    pub batch_size: usize,
    /// Ceiling on rows deleted per second, so foreground requests keep their latency.
    pub max_rows_per_second: u64,
    /// Whether a run compacts the file afterwards (when it is worth it).
    pub compact: bool,
    /// Compaction runs only when at least this much could be given back…
    pub compact_min_reclaimable_mib: u64,
    /// …and at least this share of the file: compaction holds every request back while it
    /// runs (seconds on a large file), which a small gain does not justify.
    pub compact_min_reclaimable_percent: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            schedule: "03:15".into(),
            audit_days: 90,
            idempotency_hours: 24,
            messages_days: 0,
            rate_window_idle_hours: 24,
            runs_kept: 1000,
            batch_size: 1000,
            max_rows_per_second: 200_000,
            compact: true,
            compact_min_reclaimable_mib: 64,
            compact_min_reclaimable_percent: 25,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where backups are written; `backups` in the data directory when unset.
    pub dir: Option<PathBuf>,
    /// Backups kept; older ones are deleted after each new one.
    pub keep: usize,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self { dir: None, keep: 7 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events kept for clients reconnecting with `Last-Event-ID`.
    pub ring_size: usize,
    /// Events a stream's client may fall behind by before it is dropped (it reconnects).
    pub subscriber_queue: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            ring_size: 1000,
            subscriber_queue: 256,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A file holding the bearer token `GET /metrics` then requires; unset, `/metrics` is open
    /// (bind it to a trusted interface).
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    /// Also write the log to daily files in this directory (`sofiia-console.YYYY-MM-DD.log`);
    /// stdout always gets it.
    pub dir: Option<PathBuf>,
    /// Daily files kept in `dir`, today's included; older ones are deleted at start and at
    /// each day's rotation.
    pub max_files: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./sofiia-data"),
            admin_token: None,
            admin_token_file: None,
            require_idempotency_key: false,
            auto_create_chats: true,
            cors_origins: Vec::new(),
            http: HttpConfig::default(),
            idempotency: IdempotencyConfig::default(),
            rate_limit: RateLimitConfig::default(),
            auth: AuthConfig::default(),
            agents: AgentsConfig::default(),
            retention: RetentionConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            events: EventsConfig::default(),
            backup: BackupConfig::default(),
            sources: Sources::default(),
        }
    }
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            ttl_hours: 24,
            wait_ms: 5000,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            dir: None,
            max_files: 14,
        }
    }
}

/// A credential from configuration: never printed, never logged.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Values given as command-line flags; they win over every other source.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("configuration file {path} is not valid TOML: {reason}")]
    Syntax { path: String, reason: String },
    #[error("invalid configuration key `{key}` (set by {source_name}): {reason}")]
    Invalid {
        key: String,
        source_name: String,
        reason: String,
    },
}

impl Config {
    /// Loads the configuration from every source, using the process environment.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        Self::load_from(flags, std::env::vars())
    }

    /// The configuration file `flags` select: `--config`, else the default file when it exists.
    pub fn file_for(flags: &Flags) -> Option<PathBuf> {
        flags
            .config
            .clone()
            .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()))
    }

    pub fn load_from(
        flags: &Flags,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let config = Self::merge(flags, env)?;
        config.validate()?;
        Ok(config)
    }

    /// Loads every source into typed values without checking the rules of `validate`, so
    /// preflight can report a broken rule and still check everything else on the values given.
    pub fn load_unvalidated(flags: &Flags) -> Result<Config, ConfigError> {
        Self::merge(flags, std::env::vars())
    }

    fn merge(
        flags: &Flags,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut layers = Layers::default();
        if let Some(path) = Self::file_for(flags) {
            layers.merge_file(&path)?;
        }
        for (name, value) in env {
            if let Some(path) = env_key_path(&name) {
                layers.set(&path, &value, format!("environment variable {name}"));
            }
        }
        if let Some(listen) = &flags.listen {
            layers.set_string("listen", listen, "--listen");
        }
        if let Some(dir) = &flags.data_dir {
            layers.set_string("data_dir", &dir.to_string_lossy(), "--data-dir");
        }
        layers.into_config()
    }

    /// Checks rules the types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.within(
            "idempotency.ttl_hours",
            self.idempotency.ttl_hours,
            1,
            24 * 365,
        )?;
        self.within("idempotency.wait_ms", self.idempotency.wait_ms, 0, 60_000)?;
        if tracing_subscriber::EnvFilter::builder()
            .parse(&self.log.level)
            .is_err()
        {
            return Err(self.invalid(
                "log.level",
                "must be a level (error, warn, info, debug, trace) or a tracing filter directive",
            ));
        }
        // Start-up counts today's file among them: one would delete it at each restart.
        self.within("log.max_files", self.log.max_files, 2, 3650)?;
        self.within("events.ring_size", self.events.ring_size, 1, 100_000)?;
        self.within("backup.keep", self.backup.keep, 1, 10_000)?;
        // A dropped subscriber resumes from the ring: it must hold at least a full queue.
        self.within(
            "events.subscriber_queue",
            self.events.subscriber_queue,
            1,
            self.events.ring_size,
        )?;
        for (name, limit) in [
            ("rate_limit.chat", self.rate_limit.chat),
            ("rate_limit.operator", self.rate_limit.operator),
        ] {
            // The limiter keeps whole milliseconds between requests.
            self.within(&format!("{name}.per_minute"), limit.per_minute, 1, 60_000)?;
            self.within(&format!("{name}.burst"), limit.burst, 1, 1_000_000)?;
        }
        if let Some(origin) = self.cors_origins.iter().find(|o| !is_origin(o)) {
            return Err(self.invalid(
                "cors_origins",
                &format!(
                    "{origin:?} is not an origin: expected scheme://host[:port] such as https://console.example, without a path or wildcard"
                ),
            ));
        }
        let http = &self.http;
        self.within(
            "http.request_timeout_ms",
            http.request_timeout_ms,
            100,
            3_600_000,
        )?;
        self.within("http.idle_timeout_ms", http.idle_timeout_ms, 100, 3_600_000)?;
        self.within(
            "http.max_concurrent_requests",
            http.max_concurrent_requests,
            1,
            1_000_000,
        )?;
        self.within("http.body_timeout_ms", http.body_timeout_ms, 100, 600_000)?;
        self.within("http.write_timeout_ms", http.write_timeout_ms, 100, 600_000)?;
        self.within("http.stream_max_minutes", http.stream_max_minutes, 1, 1_440)?;
        // Each response must fit: a page is at most about a mebibyte (`http::page`).
        self.within(
            "http.max_buffered_response_mib",
            http.max_buffered_response_mib,
            4,
            4_095,
        )?;
        let auth = &self.auth;
        self.within("auth.lockout_failures", auth.lockout_failures, 1, 1_000)?;
        self.within("auth.lockout_minutes", auth.lockout_minutes, 1, 10_080)?;
        self.within(
            "auth.session_idle_minutes",
            auth.session_idle_minutes,
            1,
            10_080,
        )?;
        self.within("auth.session_max_hours", auth.session_max_hours, 1, 720)?;
        self.validate_agents()?;
        self.validate_retention()?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(self.invalid("data_dir", "must not be empty"));
        }
        Ok(())
    }

    fn validate_retention(&self) -> Result<(), ConfigError> {
        let retention = &self.retention;
        if DailyTime::parse(&retention.schedule).is_none() {
            return Err(self.invalid(
                "retention.schedule",
                "must be a time of day in UTC as HH:MM, such as \"03:15\"",
            ));
        }
        self.within("retention.audit_days", retention.audit_days, 1, 36_500)?;
        self.within(
            "retention.idempotency_hours",
            retention.idempotency_hours,
            1,
            24 * 365,
        )?;
        self.within(
            "retention.messages_days",
            retention.messages_days,
            0,
            36_500,
        )?;
        // A send still in progress names its message; that message must outlive the record.
        if retention.messages_days > 0 && retention.messages_days * 24 < self.idempotency.ttl_hours
        {
            return Err(self.invalid(
                "retention.messages_days",
                "must be 0 (keep forever) or cover idempotency.ttl_hours, so a message outlives the idempotency record that names it",
            ));
        }
        self.within(
            "retention.rate_window_idle_hours",
            retention.rate_window_idle_hours,
            1,
            24 * 365,
        )?;
        self.within("retention.runs_kept", retention.runs_kept, 1, 1_000_000)?;
        self.within("retention.batch_size", retention.batch_size, 1, 100_000)?;
        self.within(
            "retention.max_rows_per_second",
            retention.max_rows_per_second,
            retention.batch_size as u64,
            100_000_000,
        )?;
        self.within(
            "retention.compact_min_reclaimable_mib",
            retention.compact_min_reclaimable_mib,
            0,
            1_048_576,
        )?;
        self.within(
            "retention.compact_min_reclaimable_percent",
            retention.compact_min_reclaimable_percent,
            0,
            100,
        )
    }

    fn validate_agents(&self) -> Result<(), ConfigError> {
        let agents = &self.agents;
        self.within("agents.context_messages", agents.context_messages, 1, 200)?;
        self.within("agents.breaker_failures", agents.breaker_failures, 1, 100)?;
        self.within(
            "agents.breaker_open_seconds",
            agents.breaker_open_seconds,
            1,
            3600,
        )?;
        for (i, node) in agents.nodes.iter().enumerate() {
            let key = |field: &str| format!("agents.nodes[{i}].{field}");
            if crate::domain::slug::validate(&node.name).is_err() {
                return Err(self.invalid(
                    &key("name"),
                    "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
                ));
            }
            if agents.nodes[..i].iter().any(|n| n.name == node.name) {
                return Err(self.invalid(&key("name"), "names must be unique"));
            }
            if !(node.url.starts_with("http://") || node.url.starts_with("https://")) {
                return Err(self.invalid(&key("url"), "must be an http:// or https:// URL"));
            }
            if node.ca_file.is_some() && !node.url.starts_with("https://") {
                return Err(self.invalid(
                    &key("ca_file"),
                    "is set but the node's url is not https://, so it would never be used",
                ));
            }
            if node.model.is_empty() {
                return Err(self.invalid(&key("model"), "must not be empty"));
            }
            self.within(&key("timeout_ms"), node.timeout_ms, 100, 600_000)?;
            self.within(&key("max_rps"), node.max_rps, 1, 10_000)?;
        }
        // A send may try every node in turn; its request deadline must outlast them all, or it
        // would be answered 503 while failing over as designed.
        let chain_ms: u64 = agents.nodes.iter().map(|n| n.timeout_ms).sum();
        let needed_ms = chain_ms + COMMIT_ALLOWANCE_MS;
        if !agents.nodes.is_empty() && self.http.request_timeout_ms < needed_ms {
            return Err(self.invalid(
                "http.request_timeout_ms",
                &format!(
                    "{} is shorter than a send that tries every agent node may take: the nodes' \
                     timeouts add up to {chain_ms} ms, so it must be at least {needed_ms} \
                     (their sum plus {COMMIT_ALLOWANCE_MS} ms for the send's commits)",
                    self.http.request_timeout_ms
                ),
            ));
        }
        Ok(())
    }

    /// The admin credential from `admin_token` or `admin_token_file`, if any. Either must hold
    /// at least `MIN_ADMIN_TOKEN_LEN` characters: an empty or short token would let anyone in.
    pub fn admin_token(&self) -> Result<Option<Secret>, ConfigError> {
        if let Some(token) = &self.admin_token {
            return self.check_token("admin_token", token.expose()).map(Some);
        }
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            self.invalid(
                "admin_token_file",
                &format!("cannot read {}: {e}", path.display()),
            )
        })?;
        self.check_token("admin_token_file", text.trim()).map(Some)
    }

    /// The token `GET /metrics` requires, from `metrics.token_file`, if set. It must hold at
    /// least `MIN_ADMIN_TOKEN_LEN` characters, like the admin token.
    pub fn metrics_token(&self) -> Result<Option<Secret>, ConfigError> {
        let Some(path) = &self.metrics.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            self.invalid(
                "metrics.token_file",
                &format!("cannot read {}: {e}", path.display()),
            )
        })?;
        self.check_token("metrics.token_file", text.trim())
            .map(Some)
    }

    /// The database file inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("sofiia.redb")
    }

    /// Where backups are written.
    pub fn backup_dir(&self) -> PathBuf {
        self.backup
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("backups"))
    }

    /// Where the bootstrap admin key is written.
    pub fn admin_key_path(&self) -> PathBuf {
        self.data_dir.join("admin.key")
    }
}

impl Config {
    /// The effective configuration as TOML with every secret value replaced, for reports that
    /// leave the machine. Paths to secret files stay: they are where to look, not what is there.
    pub fn redacted_toml(&self) -> String {
        let mut table = toml::Table::try_from(self).unwrap_or_default();
        redact(&mut table);
        toml::to_string(&table).unwrap_or_default()
    }
}

/// Replaces the string value of every key that names a secret, at any depth. Judged by the name
/// rather than by a list, so a credential setting added later is redacted without anyone
/// remembering to add it here.
fn redact(table: &mut toml::Table) {
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::String(text) if names_a_secret(key) => *text = "(redacted)".into(),
            toml::Value::Table(inner) => redact(inner),
            toml::Value::Array(items) => items
                .iter_mut()
                .filter_map(toml::Value::as_table_mut)
                .for_each(redact),
            _ => {}
        }
    }
}

fn names_a_secret(key: &str) -> bool {
    let is_path = key.ends_with("_file") || key.ends_with("_dir");
    !is_path
        && ["token", "secret", "password", "key"]
            .iter()
            .any(|word| key.contains(word))
}

/// What a send's request deadline allows beyond its agent calls, for its two commits.
const COMMIT_ALLOWANCE_MS: u64 = 1_000;

/// Shortest admin token accepted.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl Config {
    /// A rule the merged value of `key` broke, naming the key and the source that set it.
    fn invalid(&self, key: &str, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            source_name: self.sources.of(key).to_owned(),
            reason: reason.into(),
        }
    }

    /// Checks `low <= value <= high`, naming the key, the value and what is allowed.
    fn within<T: PartialOrd + std::fmt::Display>(
        &self,
        key: &str,
        value: T,
        low: T,
        high: T,
    ) -> Result<(), ConfigError> {
        if value < low || value > high {
            return Err(self.invalid(
                key,
                &format!("{value} is not allowed: must be between {low} and {high}"),
            ));
        }
        Ok(())
    }

    fn check_token(&self, key: &str, token: &str) -> Result<Secret, ConfigError> {
        if token.trim().chars().count() < MIN_ADMIN_TOKEN_LEN {
            return Err(self.invalid(
                key,
                &format!(
                    "the token must be at least {MIN_ADMIN_TOKEN_LEN} characters (the value is not shown)"
                ),
            ));
        }
        Ok(Secret(token.trim().to_owned()))
    }
}

/// `https://host[:port]` or `http://host[:port]`: what a browser sends as `Origin`.
fn is_origin(text: &str) -> bool {
    let Some(rest) = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// `SOFIIA_RATE_LIMIT__CHAT__PER_MINUTE` → `["rate_limit", "chat", "per_minute"]`.
fn env_key_path(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    if NON_CONFIG_ENV.contains(&name) || rest.is_empty() {
        return None;
    }
    Some(rest.split("__").map(str::to_ascii_lowercase).collect())
}

/// For each key set, the source that set it: `file <path>`, `environment variable <NAME>` or
/// the flag. Keys are dotted paths; a key may hold a whole table or list (an environment
/// variable can set `agents.nodes` at once).
#[derive(Debug, Clone, Default)]
struct Sources(HashMap<String, String>);

impl Sources {
    /// Records that `source` set `key`, replacing whatever set it or anything inside it before:
    /// a later layer replaces the value whole.
    fn record(&mut self, key: String, source: String) {
        self.0.retain(|set, _| !holds(&key, set));
        self.0.insert(key, source);
    }

    /// The source of the value at `key`: the one that set the key itself or the table or list
    /// holding it, else — for a table — one that set a key inside it.
    fn of(&self, key: &str) -> &str {
        let holding = self
            .0
            .iter()
            .filter(|(set, _)| holds(set, key))
            .max_by_key(|(set, _)| set.len());
        holding
            .or_else(|| self.0.iter().find(|(set, _)| holds(key, set)))
            .map_or("configuration", |(_, source)| source.as_str())
    }
}

/// Whether the value at `outer` is or contains the one at `inner` (`http` holds
/// `http.idle_timeout_ms`, `agents.nodes` holds `agents.nodes[0].url`, `http.idle` holds
/// nothing but itself).
fn holds(outer: &str, inner: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The merged TOML tree and, for each key set, the source that set it.
struct Layers {
    tree: toml::Table,
    defaults: toml::Table,
    sources: Sources,
}

impl Default for Layers {
    fn default() -> Self {
        let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
        Self {
            tree: toml::Table::new(),
            defaults,
            sources: Sources::default(),
        }
    }
}

impl Layers {
    fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: shown.clone(),
                    reason: e.message().to_owned(),
                })?;
        for dotted in dotted_keys(&table, "") {
            self.sources.record(dotted, format!("file {shown}"));
        }
        self.tree = table;
        Ok(())
    }

    /// Sets a key from text. Where the default is a number, boolean or list, the text is read as
    /// a TOML value (`5000`, `false`, `["a"]`); everywhere else it is taken as a string, so
    /// `SOFIIA_ADMIN_TOKEN=12345` stays a string.
    fn set(&mut self, path: &[String], text: &str, source: String) {
        let typed = match lookup(&self.defaults, path) {
            Some(toml::Value::String(_)) | None => None,
            Some(_) => parse_toml_value(text),
        };
        let value = typed.unwrap_or_else(|| toml::Value::String(text.to_owned()));
        self.sources.record(path.join("."), source);
        insert(&mut self.tree, path, value);
    }

    fn set_string(&mut self, key: &str, text: &str, source: &str) {
        self.sources.record(key.to_owned(), source.to_owned());
        self.tree
            .insert(key.to_owned(), toml::Value::String(text.to_owned()));
    }

    fn into_config(self) -> Result<Config, ConfigError> {
        let value = toml::Value::Table(self.tree);
        let mut config: Config = serde_path_to_error::deserialize(value).map_err(|error| {
            let key = error.path().to_string();
            ConfigError::Invalid {
                source_name: self.sources.of(&key).to_owned(),
                key,
                reason: error.into_inner().message().to_owned(),
            }
        })?;
        config.sources = self.sources;
        Ok(config)
    }
}

fn parse_toml_value(text: &str) -> Option<toml::Value> {
    let mut table: toml::Table = format!("v = {text}").parse().ok()?;
    table.remove("v")
}

fn lookup<'t>(table: &'t toml::Table, path: &[String]) -> Option<&'t toml::Value> {
    let (first, rest) = path.split_first()?;
    let value = table.get(first)?;
    match (rest.is_empty(), value) {
        (true, v) => Some(v),
        (false, toml::Value::Table(inner)) => lookup(inner, rest),
        _ => None,
    }
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return;
    }
    let child = table
        .entry(first.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !child.is_table() {
        *child = toml::Value::Table(toml::Table::new());
    }
    if let toml::Value::Table(inner) = child {
        insert(inner, rest, value);
    }
}

/// Every leaf key of `table` as a dotted path.
fn dotted_keys(table: &toml::Table, prefix: &str) -> Vec<String> {
    table
        .iter()
        .flat_map(|(k, v)| {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(inner) => dotted_keys(inner, &key),
                _ => vec![key],
            }
        })
        .collect()
}

#[cfg(test)]
mod packaged_file;

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_from(&Flags::default(), env)
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// Keys of every shape the loader meets: known ones, nested, unknown, and odd.
        fn env_name() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "LISTEN",
                    "DATA_DIR",
                    "ADMIN_TOKEN",
                    "CORS_ORIGINS",
                    "HTTP__REQUEST_TIMEOUT_MS",
                    "RATE_LIMIT__CHAT__BURST",
                    "RETENTION__SCHEDULE",
                    "RETENTION__AUDIT_DAYS",
                    "AGENTS__NODES",
                    "LOG__LEVEL",
                    "EVENTS__RING_SIZE",
                    "BACKUP__KEEP",
                ])
                .prop_map(str::to_owned),
                "[A-Z_]{0,30}",
                any::<String>(),
            ]
            .prop_map(|name| format!("SOFIIA_{name}"))
        }

        /// Loads a configuration file holding `bytes`; any outcome but a panic is fine.
        fn load_file(bytes: &[u8]) {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), bytes).unwrap();
            let flags = Flags {
                config: Some(file.path().to_owned()),
                ..Flags::default()
            };
            let _ = Config::load_from(&flags, std::iter::empty());
        }

        proptest! {
            #[test]
            fn any_file_loads_or_is_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                load_file(&bytes);
            }

            #[test]
            fn any_toml_text_loads_or_is_refused_without_panic(
                text in r#"(\[[a-z_.]{0,20}\]\n)?([a-z_.]{1,24} = ("[^"\n]{0,12}"|-?[0-9]{1,20}|true|\[\]|\{\}|\[1, "a"\])\n){0,6}"#,
            ) {
                load_file(text.as_bytes());
            }

            #[test]
            fn any_environment_loads_or_is_refused_without_panic(
                env in prop::collection::vec((env_name(), any::<String>()), 0..6),
            ) {
                let _ = Config::load_from(&Flags::default(), env);
            }
        }
    }

    #[test]
    fn defaults_need_no_configuration() {
        let config = load(&[]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./sofiia-data"));
        assert!(config.auto_create_chats);
        assert_eq!(config.idempotency.wait_ms, 5000);
    }

    #[test]
    fn environment_maps_onto_nested_keys_with_types() {
        let config = load(&[
            ("SOFIIA_IDEMPOTENCY__WAIT_MS", "250"),
            ("SOFIIA_AUTO_CREATE_CHATS", "false"),
            ("SOFIIA_ADMIN_TOKEN", "1234567890123456"),
            ("SOFIIA_URL", "http://ignored"),
            ("SOFIIA_BIN", "/usr/bin/sofiia-console"),
            ("SOFIIA_KEY", "sk_ignored"),
            ("OTHER", "x"),
        ])
        .unwrap();
        assert_eq!(config.idempotency.wait_ms, 250);
        assert!(!config.auto_create_chats);
        assert_eq!(config.admin_token.unwrap().expose(), "1234567890123456");
    }

    #[test]
    fn errors_name_the_key_and_its_source() {
        let message = load(&[("SOFIIA_IDEMPOTENCY__WAIT_MS", "soon")])
            .unwrap_err()
            .to_string();
        assert!(message.contains("idempotency.wait_ms"), "{message}");
        assert!(message.contains("SOFIIA_IDEMPOTENCY__WAIT_MS"), "{message}");

        let message = load(&[("SOFIIA_LISTEN_ADDR", "x")])
            .unwrap_err()
            .to_string();
        assert!(message.contains("listen_addr"), "{message}");

        let message = load(&[("SOFIIA_LISTEN", "nowhere")])
            .unwrap_err()
            .to_string();
        assert!(message.contains("`listen`"), "{message}");

        let message = load(&[("SOFIIA_IDEMPOTENCY__TTL_HOURS", "0")])
            .unwrap_err()
            .to_string();
        assert!(message.contains("idempotency.ttl_hours"), "{message}");
    }

    #[test]
    fn validation_errors_name_the_source_that_set_the_key() {
        let message = load(&[("SOFIIA_HTTP__WRITE_TIMEOUT_MS", "5")])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(
                "`http.write_timeout_ms` (set by environment variable SOFIIA_HTTP__WRITE_TIMEOUT_MS)"
            ),
            "{message}"
        );

        let config = load(&[("SOFIIA_ADMIN_TOKEN", "too-short")]).unwrap();
        let message = config.admin_token().unwrap_err().to_string();
        assert!(
            message.contains("`admin_token` (set by environment variable SOFIIA_ADMIN_TOKEN)"),
            "{message}"
        );
        assert!(!message.contains("too-short"), "{message}");

        let nodes = r#"[{ name = "n", url = "ftp://10.0.0.5", model = "m" }]"#;
        let message = load(&[("SOFIIA_AGENTS__NODES", nodes)])
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(
                "`agents.nodes[0].url` (set by environment variable SOFIIA_AGENTS__NODES)"
            ),
            "{message}"
        );

        let flags = Flags {
            data_dir: Some(PathBuf::new()),
            ..Flags::default()
        };
        let message = Config::load_from(&flags, []).unwrap_err().to_string();
        assert!(
            message.contains("`data_dir` (set by --data-dir)"),
            "{message}"
        );
    }

    #[test]
    fn validation_errors_name_the_file_and_the_layer_that_won() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "short\n").unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "admin_token_file = {:?}\n[http]\nwrite_timeout_ms = 5\n[auth]\nlockout_minutes = 0\n",
                token.display().to_string()
            ),
        )
        .unwrap();
        let flags = Flags {
            config: Some(path.clone()),
            ..Flags::default()
        };
        let from_file = format!("(set by file {})", path.display());

        let message = Config::load_from(&flags, []).unwrap_err().to_string();
        assert!(message.contains("`http.write_timeout_ms`"), "{message}");
        assert!(message.contains(&from_file), "{message}");

        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        // The environment replaces the file's value, and with it the blame.
        let message = Config::load_from(&flags, env(&[("SOFIIA_HTTP__WRITE_TIMEOUT_MS", "50")]))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("(set by environment variable SOFIIA_HTTP__WRITE_TIMEOUT_MS)"),
            "{message}"
        );

        let config = Config::load_from(
            &flags,
            env(&[
                ("SOFIIA_HTTP__WRITE_TIMEOUT_MS", "500"),
                ("SOFIIA_AUTH__LOCKOUT_MINUTES", "5"),
            ]),
        )
        .unwrap();
        let message = config.admin_token().unwrap_err().to_string();
        assert!(message.contains("`admin_token_file`"), "{message}");
        assert!(message.contains(&from_file), "{message}");
    }

    #[test]
    fn a_key_holds_only_what_is_under_it() {
        assert!(holds("http", "http.idle_timeout_ms"));
        assert!(holds("http.idle_timeout_ms", "http.idle_timeout_ms"));
        assert!(holds("agents.nodes", "agents.nodes[0].url"));
        assert!(!holds("http.idle", "http.idle_timeout_ms"));
        assert!(!holds("http.idle_timeout_ms", "http"));
    }

    #[test]
    fn cors_origins_must_be_origins() {
        let ok = load(&[("SOFIIA_CORS_ORIGINS", r#"["https://console.example:8443"]"#)]).unwrap();
        assert_eq!(ok.cors_origins, vec!["https://console.example:8443"]);
        for bad in [
            r#"["*"]"#,
            r#"["https://a.example/path"]"#,
            r#"["console.example"]"#,
        ] {
            let message = load(&[("SOFIIA_CORS_ORIGINS", bad)])
                .unwrap_err()
                .to_string();
            assert!(message.contains("cors_origins"), "{message}");
        }
    }

    #[test]
    fn the_redacted_configuration_shows_paths_but_no_secret() {
        let nodes = r#"[{ name = "n", url = "http://10.0.0.5/v1", model = "m", api_key_file = "/etc/n.key" }]"#;
        let config = load(&[
            ("SOFIIA_ADMIN_TOKEN", "s3cret-admin-token-value"),
            ("SOFIIA_AGENTS__NODES", nodes),
        ])
        .unwrap();
        let text = config.redacted_toml();
        assert!(!text.contains("s3cret-admin-token-value"), "{text}");
        assert!(text.contains(r#"admin_token = "(redacted)""#), "{text}");
        assert!(text.contains("/etc/n.key"), "{text}");
        assert!(text.contains("require_idempotency_key = false"), "{text}");
    }

    #[test]
    fn flags_win_over_environment() {
        let flags = Flags {
            listen: Some("127.0.0.1:9999".into()),
            ..Flags::default()
        };
        let env = [("SOFIIA_LISTEN".to_string(), "127.0.0.1:1".to_string())];
        let config = Config::load_from(&flags, env).unwrap();
        assert_eq!(config.listen.port(), 9999);
    }

    #[test]
    fn file_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:7000\"\n[idempotency]\nttl_hour = 3\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        let message = Config::load_from(&flags, []).unwrap_err().to_string();
        assert!(message.contains("ttl_hour"), "{message}");
        assert!(message.contains("config.toml"), "{message}");
    }

    #[test]
    fn a_ca_file_needs_an_https_node() {
        let nodes = |url: &str| {
            format!(r#"[{{ name = "n", url = "{url}", model = "m", ca_file = "/etc/ca.pem" }}]"#)
        };
        let config = load(&[("SOFIIA_AGENTS__NODES", &nodes("https://10.0.0.5/v1"))]).unwrap();
        assert_eq!(
            config.agents.nodes[0].ca_file,
            Some(PathBuf::from("/etc/ca.pem"))
        );
        let message = load(&[("SOFIIA_AGENTS__NODES", &nodes("http://10.0.0.5/v1"))])
            .unwrap_err()
            .to_string();
        assert!(message.contains("agents.nodes[0].ca_file"), "{message}");
    }

    #[test]
    fn the_request_deadline_must_outlast_every_agent_node() {
        let nodes = r#"[{ name = "a", url = "http://10.0.0.5/v1", model = "m", timeout_ms = 30000 },
                        { name = "b", url = "http://10.0.0.6/v1", model = "m", timeout_ms = 30000 }]"#;
        let message = load(&[("SOFIIA_AGENTS__NODES", nodes)])
            .unwrap_err()
            .to_string();
        assert!(message.contains("http.request_timeout_ms"), "{message}");
        assert!(message.contains("61000"), "{message}");
        let longer = load(&[
            ("SOFIIA_AGENTS__NODES", nodes),
            ("SOFIIA_HTTP__REQUEST_TIMEOUT_MS", "61000"),
        ]);
        assert!(longer.is_ok());
    }
}
