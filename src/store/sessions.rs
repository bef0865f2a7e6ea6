//! Sessions, keyed by the hash of their token.

use redb::ReadableTable;

use super::codec::{self, Record};
use super::tables::SESSIONS;
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
                t.sessions
                    .insert(hash.as_slice(), codec::encode(&session)?.as_slice())?;
                audit::append(t, audit)?;
                Ok(())
            })
            .await
    }

    /// Ends a session, recording `audit` when there was one to end.
    pub async fn delete_session(&self, hash: TokenHash, audit: Draft) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                if t.sessions.remove(hash.as_slice())?.is_some() {
                    audit::append(t, audit)?;
                }
                Ok(())
            })
            .await
    }

    /// Records activity; a session already ended is left ended.
    pub async fn touch_session(&self, hash: TokenHash, seen_ms: u64) -> Result<(), StoreError> {
        self.writer()
            .execute(move |t| {
                let stored: Option<Session> = codec::get(&t.sessions, hash.as_slice())?;
                if let Some(mut session) = stored {
                    session.last_seen_ms = seen_ms;
                    t.sessions
                        .insert(hash.as_slice(), codec::encode(&session)?.as_slice())?;
                }
                Ok(())
            })
            .await
    }

    pub fn all_sessions(&self) -> Result<Vec<(TokenHash, Session)>, StoreError> {
        self.read(|txn| {
            let mut all = Vec::new();
            for row in txn.open_table(SESSIONS)?.iter()? {
                let (hash, raw) = row?;
                let hash: TokenHash = hash
                    .value()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("session key is not a hash".into()))?;
                all.push((hash, codec::decode(raw.value())?));
            }
            Ok(all)
        })
    }
}
