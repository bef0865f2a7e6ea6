//! API keys: authentication, creation, revocation and the bootstrap key.
//!
//! Authentication reads the keys the writer publishes after each commit (`store::published`), so
//! it needs no read transaction, and a revocation takes effect the moment it is durable — even
//! if the request that made it is gone by then.

use std::io::Write;
use std::path::Path;

use crate::clock::Clock;
use crate::config::Secret;
use crate::domain::api_key::{self, ApiKey};
use crate::domain::audit::{Action, Context, Outcome, Target};
use crate::domain::principal::{Credential, Principal};
use crate::domain::role::Role;
use crate::store::Store;

use super::ServiceError;

/// `last_used_ms` is written at most this often per key, not on every request.
const LAST_USED_GRANULARITY_MS: u64 = 60_000;
const MAX_EXPIRY_DAYS: u32 = 3650;

pub struct Keys {
    store: Store,
    clock: Clock,
    admin_token: Option<Secret>,
}

/// A key as returned at creation: the record plus the full secret, shown this once.
pub struct CreatedKey {
    pub key: ApiKey,
    pub secret: String,
}

impl Keys {
    pub fn new(store: Store, clock: Clock, admin_token: Option<Secret>) -> Self {
        Self {
            store,
            clock,
            admin_token,
        }
    }

    /// The principal a presented credential stands for, or `None`.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        if let Some(token) = &self.admin_token
            && api_key::tokens_match(presented, token.expose())
        {
            return Some(Principal::admin_token());
        }
        let parsed = api_key::parse(presented)?;
        let now = self.clock.now_ms();
        let (principal, record_use) = self
            .store
            .published()
            .with_key(parsed.id, |key| {
                if !(api_key::secret_matches(parsed.secret, &key.secret_hash) && key.is_active(now))
                {
                    return None;
                }
                let stale = key
                    .last_used_ms
                    .is_none_or(|t| now.saturating_sub(t) >= LAST_USED_GRANULARITY_MS);
                let principal = Principal {
                    credential: Credential::Key,
                    id: key.id.clone(),
                    role: key.role,
                    via_session: false,
                };
                Some((principal, stale))
            })
            .flatten()?;
        if record_use {
            self.record_use(&principal.id, now);
        }
        Some(principal)
    }

    /// What a session opened with `principal` remembers of its credential: the key id, or for
    /// the admin token a fingerprint of the token itself, so rotating the token ends its sessions.
    pub fn session_binding(&self, principal: &Principal) -> String {
        match principal.credential {
            Credential::Key => principal.id.clone(),
            Credential::AdminToken => self.admin_token_fingerprint().unwrap_or_default(),
        }
    }

    fn admin_token_fingerprint(&self) -> Option<String> {
        let token = self.admin_token.as_ref()?;
        Some(hex::encode(api_key::hash_secret(token.expose())))
    }

    /// The role a credential holds now, if it is still valid: sessions opened with a key end
    /// when the key is revoked or expires, those opened with the admin token when it changes.
    pub fn current_role(&self, credential: Credential, binding: &str) -> Option<Role> {
        match credential {
            Credential::AdminToken => self
                .admin_token_fingerprint()
                .filter(|current| current == binding)
                .map(|_| Role::Admin),
            Credential::Key => {
                let now = self.clock.now_ms();
                self.store
                    .published()
                    .with_key(binding, |k| k.is_active(now).then_some(k.role))
                    .flatten()
            }
        }
    }

    pub async fn create(
        &self,
        ctx: &Context,
        name: String,
        role: Role,
        expires_in_days: Option<u32>,
    ) -> Result<CreatedKey, ServiceError> {
        api_key::validate_name(&name).map_err(|p| ServiceError::validation("name", p))?;
        let now = self.clock.now_ms();
        let expires_ms = match expires_in_days {
            Some(days) if (1..=MAX_EXPIRY_DAYS).contains(&days) => {
                Some(now + u64::from(days) * 86_400_000)
            }
            Some(_) => {
                return Err(ServiceError::validation(
                    "expires_in_days",
                    format!("must be between 1 and {MAX_EXPIRY_DAYS}"),
                ));
            }
            None => None,
        };
        let mut entropy = [0u8; 44];
        getrandom::fill(&mut entropy)
            .map_err(|e| ServiceError::Internal(format!("no entropy for a new key: {e}")))?;
        let generated = api_key::generate(&entropy);
        let audit = ctx
            .draft(
                now,
                Action::KeyCreate,
                Target::new("key", &generated.id),
                Outcome::Ok,
            )
            .detail("role", role.as_str())
            .detail("name", name.as_str());
        let key = ApiKey {
            id: generated.id,
            name,
            role,
            secret_hash: generated.hash,
            created_ms: now,
            expires_ms,
            revoked_ms: None,
            last_used_ms: None,
        };
        self.store.insert_key(key.clone(), audit).await?;
        Ok(CreatedKey {
            key,
            secret: generated.full,
        })
    }

    pub async fn revoke(&self, ctx: &Context, id: &str) -> Result<ApiKey, ServiceError> {
        let audit = ctx.draft(
            self.clock.now_ms(),
            Action::KeyRevoke,
            Target::new("key", id),
            Outcome::Ok,
        );
        self.store
            .revoke_key(id.to_owned(), audit)
            .await?
            .ok_or(ServiceError::NotFound("key"))
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Vec<ApiKey> {
        self.store.published().keys()
    }

    /// On a first start with no admin credential at all, creates an admin key and writes it to
    /// `path` (mode 0600). Returns whether it did.
    pub async fn ensure_admin(&self, path: &Path) -> Result<bool, ServiceError> {
        let now = self.clock.now_ms();
        let has_admin = self.admin_token.is_some()
            || self
                .list()
                .iter()
                .any(|k| k.role == Role::Admin && k.is_active(now));
        if has_admin {
            return Ok(false);
        }
        let created = self
            .create(
                &Context::system(),
                "bootstrap-admin".into(),
                Role::Admin,
                None,
            )
            .await?;
        write_secret_file(path, &created.secret)
            .map_err(|e| ServiceError::Internal(format!("cannot write {}: {e}", path.display())))?;
        Ok(true)
    }

    /// Records a use in the background. Until it is published, other requests may find the key
    /// stale too; the writer keeps only the latest use, so they cost a no-op write at most.
    fn record_use(&self, id: &str, now: u64) {
        let store = self.store.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(error) = store.record_key_use(id, now).await {
                tracing::warn!(event = "key_use_not_recorded", %error, "could not record key use");
            }
        });
    }
}

fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only to a new file; an old one keeps its bits unless they are reset.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
