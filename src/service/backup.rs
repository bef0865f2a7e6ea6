//! Backups on request (`POST /api/admin/backup`, `sofiia-console backup create`): a consistent
//! copy of the database taken while the service serves (`store::backup`), named by its time,
//! audited as `backup.create`, the oldest beyond `backup.keep` deleted. Also their check
//! (`backup verify`) and their restore on a stopped service (`backup restore`, `store::restore`),
//! audited as `backup.restore` in the restored file.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::Serialize;

use super::{Console, ServiceError};
use crate::domain::audit::{Action, Context, Outcome, Target};
use crate::domain::rfc3339;
use crate::store::backup::{CheckError, Checked, check_copy};
use crate::store::restore::{RestoreError, Restored, restore};

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

    /// Records, in the restored file, that it was restored: what from, and where the file it
    /// replaced was kept.
    pub async fn record_restore(
        &self,
        ctx: &Context,
        restored: &Restored,
    ) -> Result<(), ServiceError> {
        let from = restored.restored_from.display().to_string();
        let mut audit = ctx
            .draft(
                self.clock.now_ms(),
                Action::BackupRestore,
                Target::new("backup", &from),
                Outcome::Ok,
            )
            .detail("restored_head_seq", restored.checked.audit.head_seq);
        if let Some(previous) = &restored.previous {
            audit = audit.detail("previous", previous.display().to_string());
        }
        self.store.append_audit(vec![audit]).await?;
        Ok(())
    }
}

/// Checks the backup `file` (`backup verify`): integrity, schema version and audit chain.
pub fn verify_backup(file: &Path) -> Result<Checked, CheckError> {
    check_copy(file)
}

/// Restores `file` over the database at `database` of a stopped service, keeping the current
/// file beside it as `<database>.before-restore-<time>`.
pub fn restore_backup(database: &Path, file: &Path, now_ms: u64) -> Result<Restored, RestoreError> {
    let stamp = file_stamp(now_ms);
    let mut kept = database.as_os_str().to_owned();
    kept.push(format!(".before-restore-{stamp}"));
    // The audit event names the backup by a path that means something after the fact.
    let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    restore(&file, database, Path::new(&kept))
}

/// `sofiia-YYYYMMDDTHHMMSS.mmmZ.redb`: sorts by time, and says when at a glance.
fn file_name(now_ms: u64) -> String {
    format!("{PREFIX}{}{SUFFIX}", file_stamp(now_ms))
}

/// `YYYYMMDDTHHMMSS.mmmZ`: a time that sorts as text and is safe in a file name.
fn file_stamp(now_ms: u64) -> String {
    rfc3339(now_ms)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect()
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
