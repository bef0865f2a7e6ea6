//! Sessions, keyed by the hash of their token. Every change is published (`published`), so a
//! cookie-authenticated request reads memory.

use super::batch::WriteTables;
use super::codec::{self, Record};
use super::published::Change;
use super::{Store, StoreError, audit};
use crate::domain::audit::Draft;
use crate::domain::session::{Session, TokenHash};

impl Record for Session {
    const VERSION: u8 = 1;
    const NAME: &'static str = "session";
}

impl Store {
    pub async fn insert_session(
        &self,
        hash: TokenHash,
        session: Session,
        audit: Draft,
    ) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                save(t, hash, session.clone())?;
                audit::append(t, audit.clone())?;
                Ok(())
            })
            .await
    }

    /// Ends a session, recording `audit` when there was one to end.
    pub async fn delete_session(&self, hash: TokenHash, audit: Draft) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                if t.sessions.remove(hash.as_slice())?.is_some() {
                    t.publish(Change::SessionEnded(hash));
                    audit::append(t, audit.clone())?;
                }
                Ok(())
            })
            .await
    }

    /// Records activity, unless later activity is recorded already; a session already ended is
    /// left ended.
    pub async fn touch_session(&self, hash: TokenHash, seen_ms: u64) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                let stored: Option<Session> = codec::get(&t.sessions, hash.as_slice())?;
                if let Some(mut session) = stored.filter(|s| s.last_seen_ms < seen_ms) {
                    session.last_seen_ms = seen_ms;
                    save(t, hash, session.clone())?;
                }
                Ok(())
            })
            .await
    }
}

fn save(t: &mut WriteTables<'_>, hash: TokenHash, session: Session) -> Result<(), StoreError> {
    t.sessions
        .insert(hash.as_slice(), codec::encode(&session)?.as_slice())?;
    t.publish(Change::Session { hash, session });
    Ok(())
}
