//! The prover's state on disk (redb, an owner-only file): pending enrollments and issued
//! mappings, so that a restart loses neither. Each operation is one transaction; callers run
//! them on a blocking thread.
//!
//! A pending enrollment holds its fields, the window fixed at start, the MAC of its code (never
//! the code), the code's expiry and the attempts left. An issued mapping is held under its CPI
//! and MSP with its JSON line, its `not_after` and whether its reminder went out.

use std::{fs::OpenOptions, os::unix::fs::OpenOptionsExt, path::Path};

use pir_core::identity::ENROLLMENT_ID_LEN;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
const ISSUED: TableDefinition<&str, &[u8]> = TableDefinition::new("issued");

/// The store failed (the message says how).
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {detail}")]
pub struct StoreError {
    path: String,
    detail: String,
}

/// An enrollment waiting for its code.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) cpi: String,
    pub(crate) msp: String,
    pub(crate) psi: Option<String>,
    pub(crate) context: Option<String>,
    pub(crate) user_key: Option<Vec<u8>>,
    pub(crate) not_before: u64,
    pub(crate) not_after: u64,
    pub(crate) code_mac: Vec<u8>,
    pub(crate) code_expires_at: u64,
    pub(crate) attempts_left: u32,
}

/// A mapping the prover issued and has not withdrawn.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) mapping: String,
    pub(crate) not_after: u64,
    pub(crate) reminded: bool,
}

/// What a wrong code left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WrongCode {
    /// The enrollment lives on with this many attempts.
    AttemptsLeft(u32),
    /// That was the last attempt: the enrollment is gone.
    Spent,
    /// It was gone already.
    Gone,
}

/// What a sweep found due.
#[derive(Debug, Default)]
pub(crate) struct Due {
    /// (cpi, msp, not_after) whose reminder is now due; marked as sent.
    pub(crate) reminders: Vec<(String, String, u64)>,
    /// (cpi, msp) expired and forgotten: each needs a removal in the feed.
    pub(crate) expired: Vec<(String, String)>,
    /// Pending enrollments dropped because their code expired.
    pub(crate) dropped_pending: usize,
}

pub(crate) struct Store {
    db: Database,
    path: String,
}

fn issued_key(cpi: &str, msp: &str) -> String {
    format!("{cpi}\n{msp}")
}

impl Store {
    /// Opens (or creates, mode 0600) the store at `path`; refused when group or others may
    /// access it or another process holds it.
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        let failed = |detail: String| StoreError {
            path: name.clone(),
            detail,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| failed(e.to_string()))?;
        let meta = file.metadata().map_err(|e| failed(e.to_string()))?;
        if !meta.is_file() {
            return Err(failed("not a regular file".into()));
        }
        pir_core::fs::check_owner_only(path, &meta).map_err(|e| failed(e.to_string()))?;
        let db = Database::builder().create_file(file).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                failed("in use by another process (each prover needs its own file)".into())
            }
            e => failed(format!("{e} (is it a pir-issuer state file?)")),
        })?;
        let store = Self { db, path: name };
        store.write(|txn| {
            txn.open_table(PENDING)?;
            txn.open_table(ISSUED)?;
            Ok(())
        })?;
        Ok(store)
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    fn write<T>(
        &self,
        work: impl FnOnce(&redb::WriteTransaction) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let out = work(&txn).map_err(|e| self.error(e.0))?;
        txn.commit().map_err(|e| self.error(e))?;
        Ok(out)
    }

    pub(crate) fn insert_pending(
        &self,
        id: &[u8; ENROLLMENT_ID_LEN],
        pending: &Pending,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(pending).map_err(|e| self.error(e))?;
        self.write(|txn| {
            txn.open_table(PENDING)?
                .insert(id.as_slice(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// The pending enrollment, if it exists and its code has not expired at `now`.
    pub(crate) fn pending(
        &self,
        id: &[u8; ENROLLMENT_ID_LEN],
        now: u64,
    ) -> Result<Option<Pending>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(PENDING).map_err(|e| self.error(e))?;
        let Some(bytes) = table.get(id.as_slice()).map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        let pending: Pending = serde_json::from_slice(bytes.value()).map_err(|e| self.error(e))?;
        Ok((pending.code_expires_at >= now).then_some(pending))
    }

    /// Drops a pending enrollment (its code could not be sent).
    pub(crate) fn forget_pending(&self, id: &[u8; ENROLLMENT_ID_LEN]) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(PENDING)?.remove(id.as_slice())?;
            Ok(())
        })
    }

    /// Counts a wrong code against the enrollment.
    pub(crate) fn wrong_code(&self, id: &[u8; ENROLLMENT_ID_LEN]) -> Result<WrongCode, StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(PENDING)?;
            let current = table.get(id.as_slice())?.map(|b| b.value().to_vec());
            let Some(bytes) = current else {
                return Ok(WrongCode::Gone);
            };
            let mut pending: Pending = serde_json::from_slice(&bytes).map_err(DbError::other)?;
            if pending.attempts_left <= 1 {
                table.remove(id.as_slice())?;
                return Ok(WrongCode::Spent);
            }
            pending.attempts_left -= 1;
            let bytes = serde_json::to_vec(&pending).map_err(DbError::other)?;
            table.insert(id.as_slice(), bytes.as_slice())?;
            Ok(WrongCode::AttemptsLeft(pending.attempts_left))
        })
    }

    /// Ends the enrollment and records the mapping it issued, in one transaction. False when
    /// the enrollment was already gone (completed concurrently): the code was used.
    pub(crate) fn finish(
        &self,
        id: &[u8; ENROLLMENT_ID_LEN],
        cpi: &str,
        msp: &str,
        issued: &Issued,
    ) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec(issued).map_err(|e| self.error(e))?;
        self.write(|txn| {
            if txn.open_table(PENDING)?.remove(id.as_slice())?.is_none() {
                return Ok(false);
            }
            txn.open_table(ISSUED)?
                .insert(issued_key(cpi, msp).as_str(), bytes.as_slice())?;
            Ok(true)
        })
    }

    /// Forgets the issued mapping of `cpi` at `msp`; whether there was one.
    pub(crate) fn revoke(&self, cpi: &str, msp: &str) -> Result<bool, StoreError> {
        self.write(|txn| {
            Ok(txn
                .open_table(ISSUED)?
                .remove(issued_key(cpi, msp).as_str())?
                .is_some())
        })
    }

    /// The issued mapping of `cpi` at `msp`, if any.
    pub(crate) fn issued(&self, cpi: &str, msp: &str) -> Result<Option<Issued>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(ISSUED).map_err(|e| self.error(e))?;
        let found = table
            .get(issued_key(cpi, msp).as_str())
            .map_err(|e| self.error(e))?;
        found
            .map(|b| serde_json::from_slice(b.value()).map_err(|e| self.error(e)))
            .transpose()
    }

    /// Every issued mapping's JSON line, in key order (for `export`).
    pub(crate) fn all_issued(&self) -> Result<Vec<Issued>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(ISSUED).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.error(e))? {
            let (_, value) = entry.map_err(|e| self.error(e))?;
            out.push(serde_json::from_slice(value.value()).map_err(|e| self.error(e))?);
        }
        Ok(out)
    }

    /// Finds, at `now`, the reminders due (marking them sent), the expired mappings (removing
    /// them) and the pending enrollments whose code expired (removing them).
    pub(crate) fn sweep(&self, now: u64, remind_before: u64) -> Result<Due, StoreError> {
        self.write(|txn| {
            let mut due = Due::default();
            let mut issued = txn.open_table(ISSUED)?;
            let mut updates = Vec::new();
            for entry in issued.iter()? {
                let (key, value) = entry?;
                let record: Issued =
                    serde_json::from_slice(value.value()).map_err(DbError::other)?;
                let key = key.value().to_owned();
                let (cpi, msp) = key.split_once('\n').unwrap_or((key.as_str(), ""));
                if record.not_after < now {
                    due.expired.push((cpi.to_owned(), msp.to_owned()));
                    updates.push((key.clone(), None));
                } else if !record.reminded && record.not_after.saturating_sub(remind_before) <= now
                {
                    due.reminders
                        .push((cpi.to_owned(), msp.to_owned(), record.not_after));
                    let marked = Issued {
                        reminded: true,
                        ..record
                    };
                    updates.push((key.clone(), Some(marked)));
                }
            }
            for (key, record) in updates {
                match record {
                    None => {
                        issued.remove(key.as_str())?;
                    }
                    Some(r) => {
                        let bytes = serde_json::to_vec(&r).map_err(DbError::other)?;
                        issued.insert(key.as_str(), bytes.as_slice())?;
                    }
                }
            }
            let mut pending = txn.open_table(PENDING)?;
            let mut stale = Vec::new();
            for entry in pending.iter()? {
                let (key, value) = entry?;
                let record: Pending =
                    serde_json::from_slice(value.value()).map_err(DbError::other)?;
                if record.code_expires_at < now {
                    stale.push(key.value().to_vec());
                }
            }
            for key in &stale {
                pending.remove(key.as_slice())?;
            }
            due.dropped_pending = stale.len();
            Ok(due)
        })
    }
}

struct DbError(String);

impl DbError {
    fn other(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

impl<E: Into<redb::Error>> From<E> for DbError {
    fn from(e: E) -> Self {
        Self(e.into().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(expires: u64) -> Pending {
        Pending {
            cpi: "tel:+14155550100".into(),
            msp: "chat.example".into(),
            psi: None,
            context: None,
            user_key: None,
            not_before: 0,
            not_after: 1000,
            code_mac: vec![1; 32],
            code_expires_at: expires,
            attempts_left: 2,
        }
    }

    #[test]
    fn state_survives_reopening_and_codes_are_spent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let id = [5; ENROLLMENT_ID_LEN];
        {
            let store = Store::open(&path).unwrap();
            store.insert_pending(&id, &pending(100)).unwrap();
            assert!(Store::open(&path).is_err(), "a second opener is refused");
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.pending(&id, 50).unwrap(), Some(pending(100)));
        assert_eq!(store.pending(&id, 101).unwrap(), None, "expired");
        assert_eq!(store.wrong_code(&id).unwrap(), WrongCode::AttemptsLeft(1));
        assert_eq!(store.wrong_code(&id).unwrap(), WrongCode::Spent);
        assert_eq!(store.wrong_code(&id).unwrap(), WrongCode::Gone);

        store.insert_pending(&id, &pending(100)).unwrap();
        let issued = Issued {
            mapping: "{}".into(),
            not_after: 1000,
            reminded: false,
        };
        assert!(store.finish(&id, "tel:+1", "m", &issued).unwrap());
        assert!(!store.finish(&id, "tel:+1", "m", &issued).unwrap(), "used");
        assert_eq!(store.issued("tel:+1", "m").unwrap(), Some(issued));

        let due = store.sweep(950, 100).unwrap();
        assert_eq!(due.reminders, vec![("tel:+1".into(), "m".into(), 1000)]);
        assert!(store.sweep(960, 100).unwrap().reminders.is_empty(), "once");
        let due = store.sweep(1001, 100).unwrap();
        assert_eq!(due.expired, vec![("tel:+1".into(), "m".into())]);
        assert!(!store.revoke("tel:+1", "m").unwrap());
    }

    #[test]
    fn a_state_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("chmod 600") || err.contains("600"), "{err}");
    }
}
