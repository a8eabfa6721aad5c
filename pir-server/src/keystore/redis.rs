//! The Redis (or Valkey) backend, for a cluster: every replica reads and writes the same
//! registrations, which expire in Redis itself (`SET .. NX PX`, `PEXPIRE`), and the registration
//! rate limits are counted there (a GCRA token bucket in one Lua script, atomic), so that N
//! replicas together allow what one allows.
//!
//! A connection manager reconnects by itself; every command has a deadline, so a Redis that is
//! down or restarting fails a request quickly (the caller decides: a registration is refused as
//! UNAVAILABLE, a key not in the cache is unknown) and never wedges the server.
//!
//! Keys: `pir:v1:keys:{hex key id}` (the record), `pir:v1:limit:{name}` (a bucket's theoretical
//! arrival time, unix ms).

use std::{fmt::Write, time::Duration};

use pir_core::KeyId;
use redis::{AsyncCommands, Client, aio::ConnectionManager, aio::ConnectionManagerConfig};

use super::{Backend, KeyStoreError, SharedRate, Taken, now_ms, ttl_ms};

/// Longest a command may take, reconnecting included.
const DEADLINE: Duration = Duration::from_secs(2);

/// GCRA: the bucket's theoretical arrival time (TAT) advances by one interval per token; a
/// token is refused while TAT would be more than the burst's tolerance ahead of now. Redis's own
/// clock, so that replicas need not agree on theirs. Returns 0, or the wait in ms.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - tolerance > now then return tat - tolerance - now end
local next = tat + interval
redis.call('SET', KEYS[1], next, 'PX', next - now)
return 0
";

fn failed(e: impl std::fmt::Display) -> KeyStoreError {
    KeyStoreError::unavailable("redis", e)
}

fn key_of(id: &KeyId) -> String {
    let mut key = String::from("pir:v1:keys:");
    for b in id.0 {
        let _ = write!(key, "{b:02x}");
    }
    key
}

pub(super) struct Redis {
    conn: ConnectionManager,
    gcra: redis::Script,
}

impl Redis {
    /// A store at `url` (`redis://` or `rediss://`), connected lazily. Within a tokio runtime.
    pub(super) fn open(url: &str) -> Result<Self, KeyStoreError> {
        let client = Client::open(url).map_err(failed)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(DEADLINE))
            .set_response_timeout(Some(DEADLINE))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(failed)?;
        Ok(Self {
            conn,
            gcra: redis::Script::new(GCRA),
        })
    }

    /// Runs `command` on a clone of the connection, within the deadline.
    async fn run<T, F>(
        &self,
        command: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<T, KeyStoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(DEADLINE, command(self.conn.clone())).await {
            Ok(result) => result.map_err(failed),
            Err(_) => Err(failed(format!("no answer within {DEADLINE:?}"))),
        }
    }
}

/// Redis's PTTL as an expiry: -2 (no key) and -1 (no expiry: not one of ours) are none.
fn expiry_of(pttl: i64) -> Option<u64> {
    u64::try_from(pttl)
        .ok()
        .filter(|ms| *ms > 0)
        .map(|ms| now_ms().saturating_add(ms))
}

#[tonic::async_trait]
impl Backend for Redis {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn insert(
        &self,
        id: &KeyId,
        record: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<u64>, KeyStoreError> {
        let key = key_of(id);
        let ms = ttl_ms(ttl);
        let set: Option<String> = self
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(record)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(set.map(|_| now_ms().saturating_add(ms)))
    }

    async fn get(&self, id: &KeyId) -> Result<Option<(Vec<u8>, u64)>, KeyStoreError> {
        let key = key_of(id);
        let (record, pttl): (Option<Vec<u8>>, i64) = self
            .run(
                |mut c| async move { redis::pipe().get(&key).pttl(&key).query_async(&mut c).await },
            )
            .await?;
        Ok(record.zip(expiry_of(pttl)))
    }

    async fn expiry(&self, id: &KeyId) -> Result<Option<u64>, KeyStoreError> {
        let key = key_of(id);
        let pttl: i64 = self.run(|mut c| async move { c.pttl(&key).await }).await?;
        Ok(expiry_of(pttl))
    }

    async fn renew(&self, id: &KeyId, ttl: Duration) -> Result<Option<u64>, KeyStoreError> {
        let key = key_of(id);
        let ms = ttl_ms(ttl);
        let renewed: bool = self
            .run(|mut c| async move { c.pexpire(&key, ms as i64).await })
            .await?;
        Ok(renewed.then(|| now_ms().saturating_add(ms)))
    }

    async fn take(&self, name: &str, rate: SharedRate) -> Result<Option<Taken>, KeyStoreError> {
        let key = format!("pir:v1:limit:{name}");
        let interval = ttl_ms(rate.interval);
        let tolerance = interval.saturating_mul(u64::from(rate.burst.saturating_sub(1)));
        let script = &self.gcra;
        let wait: u64 = self
            .run(|mut c| async move {
                script
                    .key(key)
                    .arg(interval)
                    .arg(tolerance)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(Some(if wait == 0 {
            Taken::Granted
        } else {
            Taken::Refused(Duration::from_millis(wait))
        }))
    }

    async fn check(&self) -> Result<(), KeyStoreError> {
        let _: String = self
            .run(|mut c| async move { redis::cmd("PING").query_async(&mut c).await })
            .await?;
        Ok(())
    }
}
