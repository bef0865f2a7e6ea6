//! Backups on request (`POST /api/admin/backup`, `sofiia-console backup create`): a consistent
//! copy of the database taken while the service serves (`store::backup`), named by its time,
//! audited as `backup.create`, the oldest beyond `backup.keep` deleted.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Serialize;

use super::{Console, ServiceError};
use crate::domain::audit::{Action, Context, Outcome, Target};
use crate::domain::rfc3339;

const PREFIX: &str = "sofiia-";
const SUFFIX: &str = ".redb";

#[derive(Debug, Clone)]
pub struct BackupSettings {
    pub dir: PathBuf,
    pub keep: usize,
}

/// A backup file.
#[derive(Debug, Clone, Serialize)]
pub struct Backup {
    pub file: String,
    pub bytes: u64,
    pub created_at: String,
}

/// A backup just made, with what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub backup: Backup,
    pub rows: std::collections::BTreeMap<String, u64>,
    /// Older backups deleted to keep `backup.keep`.
    pub deleted: Vec<String>,
}

impl Console {
    pub async fn create_backup(&self, ctx: &Context) -> Result<Created, ServiceError> {
        let settings = &self.backup;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&settings.dir)
            .map_err(|e| ServiceError::Storage(format!("{}: {e}", settings.dir.display())))?;
        let now_ms = self.clock.now_ms();
        let name = file_name(now_ms);
        let copied = self.store.copy_to(&settings.dir.join(&name))?;
        let audit = ctx
            .draft(
                now_ms,
                Action::BackupCreate,
                Target::new("backup", &name),
                Outcome::Ok,
            )
            .detail("bytes", copied.bytes);
        self.store.append_audit(vec![audit]).await?;
        let deleted = prune(&settings.dir, settings.keep);
        tracing::info!(event = "backup_created", file = %name, bytes = copied.bytes, "backup created");
        Ok(Created {
            backup: Backup {
                file: name,
                bytes: copied.bytes,
                created_at: rfc3339(now_ms),
            },
            rows: copied.rows,
            deleted,
        })
    }

    /// The backups in `backup.dir`, newest first.
    pub fn backups(&self) -> Vec<Backup> {
        listed(&self.backup.dir)
    }
}

/// `sofiia-YYYYMMDDTHHMMSS.mmmZ.redb`: sorts by time, and says when at a glance.
fn file_name(now_ms: u64) -> String {
    let stamp: String = rfc3339(now_ms)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("{PREFIX}{stamp}{SUFFIX}")
}

fn listed(dir: &Path) -> Vec<Backup> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut backups: Vec<Backup> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            if !(file.starts_with(PREFIX) && file.ends_with(SUFFIX)) {
                return None;
            }
            let metadata = entry.metadata().ok()?;
            let modified = metadata.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
            Some(Backup {
                file,
                bytes: metadata.len(),
                created_at: rfc3339(modified.as_millis() as u64),
            })
        })
        .collect();
    backups.sort_by(|a, b| b.file.cmp(&a.file));
    backups
}

/// Deletes the oldest backups beyond `keep`; their names.
fn prune(dir: &Path, keep: usize) -> Vec<String> {
    let mut deleted = Vec::new();
    for old in listed(dir).into_iter().skip(keep) {
        match std::fs::remove_file(dir.join(&old.file)) {
            Ok(()) => deleted.push(old.file),
            Err(error) => {
                tracing::warn!(event = "error", file = %old.file, %error, "could not delete an old backup");
            }
        }
    }
    deleted
}
