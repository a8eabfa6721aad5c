//! The embedded backend: registrations in a redb database on local disk, so that they survive
//! a restart of this server (the CLI's default). The file is a secret (it holds mac keys): it is
//! created owner-only and refused when its group or others may access it, like every secret
//! file of the project (`pir_core::fs`). redb locks it: two processes cannot share one file (a
//! cluster shares Redis instead).
//!
//! Two tables: `keys` (key id → record) and `expiry` (key id → unix ms), so that renewing
//! rewrites 8 bytes, not megabytes. Expired registrations are dropped by the next insert.

use std::{fs::OpenOptions, os::unix::fs::OpenOptionsExt, path::Path, sync::Arc, time::Duration};

use pir_core::KeyId;
use redb::{Database, ReadableTable, TableDefinition};

use super::{Backend, KeyStoreError, now_ms, ttl_ms};

const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");
const EXPIRY: TableDefinition<&[u8], u64> = TableDefinition::new("expiry");

/// redb caches pages in memory; the key cache in front holds what is in use.
const CACHE_BYTES: usize = 32 << 20;

fn failed(e: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::unavailable("embedded", e)
}

/// A redb error as its message (redb's own error type is large to carry around).
struct DbError(String);

impl<E: Into<redb::Error>> From<E> for DbError {
    fn from(e: E) -> Self {
        Self(e.into().to_string())
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(super) struct Embedded {
    db: Arc<Database>,
}

impl Embedded {
    /// Opens (or creates, mode 0600) the database at `path`.
    pub(super) fn open(path: &Path) -> Result<Self, KeyStoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(failed)?;
        let meta = file.metadata().map_err(failed)?;
        if !meta.is_file() {
            return Err(failed("not a regular file"));
        }
        pir_core::fs::check_owner_only(path, &meta).map_err(failed)?;
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_file(file)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    failed("in use by another process (each server needs its own file)")
                }
                e => failed(e),
            })?;
        let txn = db.begin_write().map_err(failed)?;
        txn.open_table(KEYS).map_err(failed)?;
        txn.open_table(EXPIRY).map_err(failed)?;
        txn.commit().map_err(failed)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `work` on the database off the async runtime (redb blocks on disk).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, KeyStoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(failed)?
            .map_err(failed)
    }
}

/// The expiry of `id` if it is still live.
fn live(
    table: &impl ReadableTable<&'static [u8], u64>,
    id: &KeyId,
    now: u64,
) -> Result<Option<u64>, DbError> {
    Ok(table
        .get(id.0.as_slice())?
        .map(|e| e.value())
        .filter(|e| *e > now))
}

#[tonic::async_trait]
impl Backend for Embedded {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn insert(
        &self,
        id: &KeyId,
        record: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<u64>, KeyStoreError> {
        let id = *id;
        self.blocking(move |db| {
            let now = now_ms();
            let txn = db.begin_write()?;
            let inserted = {
                let mut expiry = txn.open_table(EXPIRY)?;
                let mut keys = txn.open_table(KEYS)?;
                if live(&expiry, &id, now)?.is_some() {
                    None
                } else {
                    let mut expired = Vec::new();
                    for entry in expiry.iter()? {
                        let (k, e) = entry?;
                        if e.value() <= now {
                            expired.push(k.value().to_vec());
                        }
                    }
                    for k in &expired {
                        expiry.remove(k.as_slice())?;
                        keys.remove(k.as_slice())?;
                    }
                    let until = now.saturating_add(ttl_ms(ttl));
                    keys.insert(id.0.as_slice(), record.as_slice())?;
                    expiry.insert(id.0.as_slice(), until)?;
                    Some(until)
                }
            };
            txn.commit()?;
            Ok(inserted)
        })
        .await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<(Vec<u8>, u64)>, KeyStoreError> {
        let id = *id;
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let Some(until) = live(&txn.open_table(EXPIRY)?, &id, now_ms())? else {
                return Ok(None);
            };
            Ok(txn
                .open_table(KEYS)?
                .get(id.0.as_slice())?
                .map(|r| (r.value().to_vec(), until)))
        })
        .await
    }

    async fn expiry(&self, id: &KeyId) -> Result<Option<u64>, KeyStoreError> {
        let id = *id;
        self.blocking(move |db| live(&db.begin_read()?.open_table(EXPIRY)?, &id, now_ms()))
            .await
    }

    async fn renew(&self, id: &KeyId, ttl: Duration) -> Result<Option<u64>, KeyStoreError> {
        let id = *id;
        self.blocking(move |db| {
            let now = now_ms();
            let txn = db.begin_write()?;
            let renewed = {
                let mut expiry = txn.open_table(EXPIRY)?;
                if live(&expiry, &id, now)?.is_some() {
                    let until = now.saturating_add(ttl_ms(ttl));
                    expiry.insert(id.0.as_slice(), until)?;
                    Some(until)
                } else {
                    None
                }
            };
            txn.commit()?;
            Ok(renewed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn the_embedded_backend_keeps_registrations_until_they_expire_and_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.redb");
        let store = Embedded::open(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // One process at a time.
        assert!(Embedded::open(&path).is_err());
        super::super::tests::behaves(Arc::new(store)).await;
        // Reopened, the registrations are still there.
        let id = KeyId([1; 32]);
        let store = Embedded::open(&path).unwrap();
        assert!(store.get(&id).await.unwrap().is_some());
    }

    #[test]
    fn a_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.redb");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Embedded::open(&path).err().unwrap();
        assert!(err.to_string().contains("group or others"), "{err}");
    }
}
