//! Admin-page sessions: login with a key, a cookie token, idle and absolute expiry (SPEC §4).
//!
//! Like keys, sessions are read from the state the writer publishes after each commit
//! (`store::published`), so a cookie-authenticated request costs no read transaction, and a
//! session ended by logout is over the moment the logout is durable. Activity is written at
//! most once a minute per session.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Console, ServiceError};
use crate::config::AuthConfig;
use crate::domain::audit::{Action, Actor, Context, Outcome, Target};
use crate::domain::principal::{Credential, Principal};
use crate::domain::session::{Session, TokenHash, token_hash};

const ACTIVITY_GRANULARITY_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle: Duration,
    pub max: Duration,
    /// Whether the cookie is marked `Secure`.
    pub cookie_secure: bool,
}

impl SessionPolicy {
    pub fn from_config(auth: &AuthConfig) -> Self {
        Self {
            idle: Duration::from_secs(auth.session_idle_minutes * 60),
            max: Duration::from_secs(auth.session_max_hours * 3600),
            cookie_secure: auth.cookie_secure,
        }
    }

    fn idle_ms(&self) -> u64 {
        self.idle.as_millis() as u64
    }
}

/// A session just opened: the token for the cookie, shown only now.
pub struct Opened {
    pub token: String,
    pub principal: Principal,
    pub ends_ms: u64,
}

impl Console {
    pub fn session_policy(&self) -> SessionPolicy {
        self.session_policy
    }

    /// Opens a session for the holder of `presented` (an API key or the admin token). A wrong
    /// credential counts toward the address's lockout and is recorded as `auth.login_failed`.
    pub async fn login(&self, ctx: &Context, presented: &str) -> Result<Opened, ServiceError> {
        let now = self.clock.now_ms();
        let principal = Some(presented)
            .filter(|p| !p.is_empty())
            .and_then(|p| self.keys.authenticate(p));
        let Some(principal) = principal else {
            let failed = ctx.draft(
                now,
                Action::AuthLoginFailed,
                Target::new("session", "-"),
                Outcome::Denied,
            );
            self.record_denial(failed);
            self.authentication_failed(ctx).await;
            return Err(ServiceError::Unauthenticated);
        };
        let mut token_bytes = [0u8; 32];
        getrandom::fill(&mut token_bytes)
            .map_err(|e| ServiceError::Internal(format!("no entropy for a session: {e}")))?;
        let token = URL_SAFE_NO_PAD.encode(token_bytes);
        let hash = token_hash(&token);
        let session = Session {
            credential: principal.credential,
            credential_id: self.keys.session_binding(&principal),
            role: principal.role,
            created_ms: now,
            last_seen_ms: now,
            expires_ms: now + self.session_policy.max.as_millis() as u64,
        };
        let principal = Principal {
            via_session: true,
            ..principal
        };
        let audit = Context {
            actor: Actor::of(&principal),
            ..ctx.clone()
        }
        .draft(
            now,
            Action::AuthLogin,
            Target::new("session", &session_id(&hash)),
            Outcome::Ok,
        )
        .detail("expires_ms", session.expires_ms);
        let ends_ms = session.ends_ms(self.session_policy.idle_ms());
        self.store.insert_session(hash, session, audit).await?;
        Ok(Opened {
            token,
            principal,
            ends_ms,
        })
    }

    /// The principal a session token stands for, if the session and its credential are live.
    pub fn authenticate_session(&self, token: &str) -> Option<Principal> {
        let hash = token_hash(token);
        let now = self.clock.now_ms();
        let idle_ms = self.session_policy.idle_ms();
        let (principal, stale) = self
            .store
            .published()
            .with_session(&hash, |session| {
                session.is_live(now, idle_ms).then(|| session.clone())
            })
            .flatten()
            .and_then(|session| {
                let role = self
                    .keys
                    .current_role(session.credential, &session.credential_id)?;
                let principal = match session.credential {
                    Credential::AdminToken => Principal {
                        via_session: true,
                        ..Principal::admin_token()
                    },
                    Credential::Key => Principal {
                        credential: Credential::Key,
                        id: session.credential_id.clone(),
                        role,
                        via_session: true,
                    },
                };
                let stale = now.saturating_sub(session.last_seen_ms) >= ACTIVITY_GRANULARITY_MS;
                Some((principal, stale))
            })?;
        if stale {
            self.record_activity(hash, now);
        }
        Some(principal)
    }

    /// Whether a principal authenticated earlier may still act: its key not revoked or expired,
    /// the admin token unchanged, its session (`session_token`) still open. Long-lived streams
    /// ask this before each event.
    pub fn still_authorized(&self, principal: &Principal, session_token: Option<&str>) -> bool {
        match session_token.filter(|_| principal.via_session) {
            Some(token) => self.authenticate_session(token).is_some(),
            None => {
                let binding = self.keys.session_binding(principal);
                self.keys
                    .current_role(principal.credential, &binding)
                    .is_some()
            }
        }
    }

    /// When the session behind `token` ends if nothing more happens.
    pub fn session_ends_ms(&self, token: &str) -> Option<u64> {
        let idle_ms = self.session_policy.idle_ms();
        self.store
            .published()
            .with_session(&token_hash(token), |s| s.ends_ms(idle_ms))
    }

    pub async fn logout(&self, ctx: &Context, token: &str) -> Result<(), ServiceError> {
        let hash = token_hash(token);
        let audit = ctx.draft(
            self.clock.now_ms(),
            Action::AuthLogout,
            Target::new("session", &session_id(&hash)),
            Outcome::Ok,
        );
        Ok(self.store.delete_session(hash, audit).await?)
    }

    /// Records activity in the background; the writer keeps only the latest.
    fn record_activity(&self, hash: TokenHash, now: u64) {
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.touch_session(hash, now).await {
                tracing::warn!(event = "session_not_touched", %error, "could not record session activity");
            }
        });
    }
}

/// A session's public name in the audit trail: a prefix of its token's hash.
fn session_id(hash: &TokenHash) -> String {
    hex::encode(&hash[..8])
}
