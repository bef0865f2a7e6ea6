//! Orchestration: what each operation does, in which order, against the store.
//!
//! `Console` is the application state every handler receives. It owns the store, the key ring
//! and the in-process coordination of idempotent sends; it knows nothing about HTTP.

pub mod agents;
pub mod audit;
pub mod backup;
pub mod bus;
pub mod chats;
pub mod denials;
pub mod events;
pub mod gauges;
pub mod health;
pub mod inflight;
pub mod keys;
pub mod lockout;
pub mod preflight;
pub mod retention;
pub mod send;
pub mod sessions;
pub mod system_health;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::config::{Config, Secret};
use crate::domain::rate::{Quota, Scope, SendLimits};
use crate::store::audit::StreamLimits;
use crate::store::{Store, StoreError};
use agents::Agents;
use backup::BackupSettings;
use bus::{Bus, BusSettings};
use denials::Denials;
use inflight::Inflight;
use keys::Keys;
use lockout::{LockoutPolicy, Lockouts};
use retention::{Retention, RetentionSettings};
use sessions::SessionPolicy;

/// Settings of the send path, taken from the configuration once.
#[derive(Debug, Clone)]
pub struct SendSettings {
    pub require_idempotency_key: bool,
    pub auto_create_chats: bool,
    pub idempotency_ttl: Duration,
    pub idempotency_wait: Duration,
    pub limits: SendLimits,
}

impl SendSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            require_idempotency_key: config.require_idempotency_key,
            auto_create_chats: config.auto_create_chats,
            idempotency_ttl: Duration::from_secs(config.idempotency.ttl_hours * 3600),
            idempotency_wait: Duration::from_millis(config.idempotency.wait_ms),
            limits: SendLimits {
                chat: config.rate_limit.chat,
                operator: config.rate_limit.operator,
            },
        }
    }
}

pub struct Console {
    pub store: Store,
    pub keys: Keys,
    pub clock: Clock,
    pub send_settings: SendSettings,
    pub agents: Agents,
    pub bus: Arc<Bus>,
    pub backup: BackupSettings,
    pub retention: Retention,
    data_dir: PathBuf,
    stream_limits: StreamLimits,
    inflight: Arc<Inflight>,
    denials: Denials,
    lockouts: Lockouts,
    session_policy: SessionPolicy,
    started: Instant,
}

impl Console {
    /// Loads the state kept in memory (keys, sessions, lockouts) from `store`.
    pub fn open(
        store: Store,
        clock: Clock,
        config: &Config,
        admin_token: Option<Secret>,
    ) -> Result<Self, ServiceError> {
        let keys = Keys::new(store.clone(), clock, admin_token);
        let lockouts = Lockouts::new(LockoutPolicy::from_config(&config.auth));
        Ok(Self {
            store,
            keys,
            clock,
            send_settings: SendSettings::from_config(config),
            agents: Agents::from_config(&config.agents, clock)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            backup: BackupSettings {
                dir: config.backup_dir(),
                keep: config.backup.keep,
            },
            bus: Arc::new(Bus::new(BusSettings {
                ring_size: config.events.ring_size,
                subscriber_queue: config.events.subscriber_queue,
            })),
            retention: Retention::new(RetentionSettings::from_config(config)),
            data_dir: config.data_dir.clone(),
            stream_limits: StreamLimits {
                chunk: Duration::from_millis(config.http.write_timeout_ms),
                total: Duration::from_secs(config.http.stream_max_minutes * 60),
            },
            inflight: Arc::default(),
            denials: Denials::default(),
            lockouts,
            session_policy: SessionPolicy::from_config(&config.auth),
            started: Instant::now(),
        })
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Why an operation was refused or failed. The HTTP layer maps each to a status and a stable
/// code; only `Storage` is the server's fault, and its detail goes to the log, not the client.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{field}: {problem}")]
    Validation { field: String, problem: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyMismatch,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyInProgress { retry_after: Duration },
    #[error("the {} rate limit is exhausted", scope.as_str())]
    RateLimited {
        scope: Scope,
        retry_after_ms: u64,
        quota: Quota,
    },
    #[error("{0}")]
    IdempotencyKey(String),
    #[error("a valid API key is required")]
    Unauthenticated,
    #[error("too many failed authentications from this address")]
    Locked { retry_after: Duration },
    #[error("storage failure: {0}")]
    Storage(String),
    /// The writer is gone (shutting down) or storage cannot be reached.
    #[error("storage is unavailable")]
    Unavailable,
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable | StoreError::Io(_) => ServiceError::Unavailable,
            other => ServiceError::Storage(other.to_string()),
        }
    }
}

impl ServiceError {
    pub fn validation(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
