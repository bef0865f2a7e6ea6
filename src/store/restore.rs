//! Putting a backup in the place of the database of a stopped service.
//!
//! The backup is checked first (`backup::check_copy`) and refused unless its chain verifies.
//! It is then copied beside the database and fsync'd; the current database gets a second name
//! (a hard link, the kept file), the copy is renamed over the database's name, and the directory
//! is fsync'd. The rename replaces atomically, so a crash leaves either the old database or the
//! restored one under that name, never none and never a partial file; the old one is never
//! deleted here.
//!
//! Until the swap, the current database is held open read-only, which refuses a service starting
//! meanwhile, tells a running service from a stopped one, and writes nothing to the old file. A file that cannot be opened at all — damage is
//! the usual reason to restore — cannot be in use either, and is swapped without that hold.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use redb::{Builder, ReadOnlyDatabase};
use serde::Serialize;

use super::backup::{CheckError, Checked, check_copy, sync_dir};

/// Where a restore left things.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub database: PathBuf,
    pub restored_from: PathBuf,
    /// The database as it was before, kept under a new name; `None` when there was none.
    pub previous: Option<PathBuf>,
    /// Why the previous file could not be held open, when it could not (it is kept all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_unreadable: Option<String>,
    pub checked: Checked,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "{0} is in use by the running service; a restore needs it stopped (systemctl stop sofiia-console)"
    )]
    Running(PathBuf),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error("{0}")]
    Io(String),
}

/// Replaces the database at `database` by a checked copy of `backup`, keeping the current file
/// as `keep_as`.
pub fn restore(backup: &Path, database: &Path, keep_as: &Path) -> Result<Restored, RestoreError> {
    if same_file(backup, database) {
        return Err(RestoreError::Refused(format!(
            "{} is the database itself",
            backup.display()
        )));
    }
    let (held, previous_unreadable) = hold(database)?;
    let checked = check_copy(backup)?;
    if !checked.audit.valid {
        return Err(RestoreError::Refused(format!(
            "{} does not verify: {}",
            backup.display(),
            checked
                .audit
                .reason
                .as_deref()
                .unwrap_or("the audit chain is broken")
        )));
    }
    let incoming = database.with_extension("restoring");
    let io = |e: std::io::Error| RestoreError::Io(format!("{}: {e}", incoming.display()));
    copy_durably(backup, &incoming, database).map_err(io)?;
    // The current file gets its second name first, then one rename replaces it atomically: the
    // database's name never goes missing, not even for an instant.
    let previous = database.exists().then(|| keep_as.to_owned());
    if previous.is_some() {
        std::fs::hard_link(database, keep_as).map_err(io)?;
    }
    std::fs::rename(&incoming, database).map_err(io)?;
    sync_dir(database).map_err(io)?;
    drop(held);
    Ok(Restored {
        database: database.to_owned(),
        restored_from: backup.to_owned(),
        previous,
        previous_unreadable,
        checked,
    })
}

/// Opens the current database read-only to hold it through the swap: `None` when there is none
/// or it cannot be opened (with the reason).
fn hold(database: &Path) -> Result<(Option<ReadOnlyDatabase>, Option<String>), RestoreError> {
    if !database.exists() {
        return Ok((None, None));
    }
    match Builder::new().open_read_only(database) {
        Ok(held) => Ok((Some(held), None)),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            Err(RestoreError::Running(database.to_owned()))
        }
        Err(redb::DatabaseError::RepairAborted) => Ok((
            None,
            Some(
                "it was not closed cleanly (the service stopped on a failure or was killed)".into(),
            ),
        )),
        Err(other) => Ok((None, Some(other.to_string()))),
    }
}

/// Copies `from` to the new file `to` (mode 0600, owned like `like` or its directory, so a
/// restore run by root leaves a file the service's user can open), fsync'd.
fn copy_durably(from: &Path, to: &Path, like: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(to);
    let mut target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    std::io::copy(&mut File::open(from)?, &mut target)?;
    let owner = std::fs::metadata(like)
        .or_else(|_| std::fs::metadata(like.parent().unwrap_or(Path::new("."))))?;
    let mine = target.metadata()?;
    if (mine.uid(), mine.gid()) != (owner.uid(), owner.gid()) {
        std::os::unix::fs::fchown(&target, Some(owner.uid()), Some(owner.gid()))?;
    }
    target.flush()?;
    target.sync_all()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}
