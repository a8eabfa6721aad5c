//! What a running server may do: its limits, each with a safe default.

use std::{fmt, path::PathBuf, time::Duration};

/// A token bucket: up to `burst` at once, refilled at `per_hour`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Bucket size.
    pub burst: u32,
    /// Refill rate, per hour.
    pub per_hour: u32,
}

/// `BURST/PER_HOUR`, as the command line takes it.
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.burst, self.per_hour)
    }
}

/// Limits of a running server. Every one has a safe default, stated only in
/// [`ServeOptions::default`] (the command line reads its defaults from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// Largest request or response message, bytes (public keys are the largest: up to ~9 MB).
    pub max_message_bytes: usize,
    /// Most queries in one `Query` request.
    pub max_queries_per_request: u32,
    /// Memory budget of registered keys, bytes.
    pub key_cache_bytes: u64,
    /// Queries (answers) queued or being answered at once, counted per query, not per request;
    /// a request that does not fit is refused with RESOURCE_EXHAUSTED before it spends any
    /// rate-limit token. A request with more queries than this waits for the queue to be empty.
    pub max_pending_answers: usize,
    /// Most queries answered together in one pass over the database, from one or more requests
    /// (each costs about 20 MiB of working memory at 1M mappings while answered). A request with
    /// more queries than this is answered alone, in passes of at most this many. 0 counts as 1.
    pub max_batch_queries: usize,
    /// Longest a request may take; past it the client gets DEADLINE_EXCEEDED.
    pub request_timeout: Duration,
    /// PIR queries per registered key. The default lets a user look up hundreds of CPIs a day
    /// (the MIMI floor is 50) but makes scanning a database of a million mappings take days.
    pub per_key_rate: Option<RateLimit>,
    /// PIR queries per peer network (an MSP server behind one address needs more).
    pub per_peer_rate: Option<RateLimit>,
    /// Key registrations per peer network (each costs CPU and tens of MB).
    pub per_peer_registrations: Option<RateLimit>,
    /// Limits of the connections, on every listener (transport).
    pub transport: TransportOptions,

    // ---- limits that many addresses cannot multiply (issue 15, items 3 and 11) ---------------
    /// Prefix length an IPv4 peer is aggregated to for the per-peer limits (32: each address).
    pub peer_prefix_v4: u8,
    /// Prefix length an IPv6 peer is aggregated to (64: one host commonly holds a whole /64).
    pub peer_prefix_v6: u8,
    /// Key registrations per second from all peers together; `None` is unlimited.
    pub global_registrations_per_second: Option<u32>,
    /// Registered clients the key cache may evict per minute to make room; past it a
    /// registration that needs room is refused and the registered clients keep working.
    /// `None` is unlimited.
    pub key_evictions_per_minute: Option<u32>,
    /// Proxies whose forwarding headers (`x-forwarded-for`, else `forwarded`) name the client
    /// the per-peer limits charge; from any other peer those headers are ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Registrations hashed and parsed at once, off the async runtime; more wait their turn.
    pub registration_workers: usize,
    /// OPRF evaluations of one registered key (each is one CPI a client can locate); `None`
    /// is unlimited.
    pub per_key_evaluations: Option<RateLimit>,
    /// OPRF evaluations from one peer network; `None` is unlimited.
    pub per_peer_evaluations: Option<RateLimit>,
    /// OPRF evaluations a second from all peers together: what bounds enumeration however many
    /// keys and networks it uses. `None` is unlimited.
    pub global_evaluations_per_second: Option<u32>,

    // ---- registered keys beyond this process (issue 13, part 4) -------------------------------
    /// Where registrations are kept besides the key cache: this process's memory (the library's
    /// default), a file (the CLI's default: [`KeyStoreSpec::DEFAULT_FILE_NAME`] beside the
    /// snapshot), or Redis shared by replicas.
    pub key_store: KeyStoreSpec,
    /// How long a registration lasts unless the client renews it (`RenewKeys`).
    pub key_ttl: Duration,
}

/// Where registered keys are stored (`serve --key-store`).
#[derive(Clone, PartialEq, Eq)]
pub enum KeyStoreSpec {
    /// In this process only: lost at exit, not shared.
    Memory,
    /// An embedded database (redb) at this path, owner-only: survives restarts.
    File(PathBuf),
    /// A Redis or Valkey server (`redis://` or `rediss://` URL): shared by every replica, and
    /// the registration rate limits with it.
    Redis(String),
}

impl KeyStoreSpec {
    /// The CLI's embedded store, in the snapshot's directory unless `--key-store` says.
    pub const DEFAULT_FILE_NAME: &'static str = "pir-keys.redb";

    /// `memory`, a `redis://` or `rediss://` URL, or else a file path.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("empty: give memory, a file path, or a redis:// URL".into());
        }
        if value == "memory" {
            return Ok(Self::Memory);
        }
        if value.starts_with("redis://") || value.starts_with("rediss://") {
            return Ok(Self::Redis(value.to_owned()));
        }
        if value.contains("://") {
            return Err(format!(
                "{}: only redis:// and rediss:// URLs are key stores",
                redacted(value)
            ));
        }
        Ok(Self::File(PathBuf::from(value)))
    }
}

/// A URL with its password (`user:password@`) hidden.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// As the flag takes it, a Redis URL's credentials hidden (it is logged).
impl fmt::Display for KeyStoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Redis(url) => f.write_str(&redacted(url)),
        }
    }
}

/// The Display form: a Redis password never reaches a log through `?options`.
impl fmt::Debug for KeyStoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyStoreSpec({self})")
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: 32 << 20,
            max_queries_per_request: 32,
            key_cache_bytes: 2 << 30,
            max_pending_answers: 256,
            max_batch_queries: 8,
            request_timeout: Duration::from_secs(60),
            per_key_rate: Some(RateLimit {
                burst: 200,
                per_hour: 720,
            }),
            per_peer_rate: Some(RateLimit {
                burst: 1000,
                per_hour: 3600,
            }),
            per_peer_registrations: Some(RateLimit {
                burst: 20,
                per_hour: 60,
            }),
            peer_prefix_v4: 32,
            peer_prefix_v6: 64,
            // A registration parses megabytes of keys: 10 a second keeps both cores of a small
            // host for answering.
            global_registrations_per_second: Some(10),
            // At the 1M shape the default cache holds about 124 clients: flushing it takes at
            // least six minutes, and a client that looks something up in that time stays.
            key_evictions_per_minute: Some(20),
            trusted_proxies: Vec::new(),
            registration_workers: 2,
            // A lookup is one evaluation and one query: the same budgets as queries.
            per_key_evaluations: Some(RateLimit {
                burst: 200,
                per_hour: 720,
            }),
            per_peer_evaluations: Some(RateLimit {
                burst: 1000,
                per_hour: 3600,
            }),
            // About 5% of one core at ~80 us an element; at 50 lookups per user a day, 200 a
            // second serves about 350,000 users, and enumerating a 10-million-number region
            // takes at least 14 hours of the whole budget.
            global_evaluations_per_second: Some(200),
            transport: TransportOptions::default(),
            // The library's servers (tests, embedding) keep keys in memory; `pir-server serve`
            // defaults to a file (see `KeyStoreSpec::DEFAULT_FILE_NAME`).
            key_store: KeyStoreSpec::Memory,
            // A day: a client that looks something up daily never uploads its keys again.
            key_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

// Transport (issue 15, items 1-2): what a connection, and all of them together, may hold.

/// Limits of the connections on every listener (Discovery, Admin, HTTP metrics and probes).
/// Together they bound what an unauthenticated client can pin: at most `max_connections`
/// connections of at most `max_streams_per_connection` streams, whose request bodies hold at
/// most `in_flight_request_bytes` between them and are dropped `request_body_timeout` after
/// their headers if still unfinished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportOptions {
    /// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams open at once on one connection; more are
    /// refused (RST_STREAM REFUSED_STREAM).
    pub max_streams_per_connection: u32,
    /// Streams a client may open and reset before the server accepts them (the rapid-reset
    /// flood); past this the connection is closed with GOAWAY ENHANCE_YOUR_CALM.
    pub max_pending_reset_streams: usize,
    /// Streams the server may reset for a client's protocol errors (refused streams included)
    /// before it closes the connection with GOAWAY ENHANCE_YOUR_CALM.
    pub max_local_reset_streams: usize,
    /// Interval of HTTP/2 keepalive PINGs; a connection whose peer does not answer one within
    /// `keepalive_timeout` is closed.
    pub keepalive_interval: Duration,
    /// How long a keepalive PING may go unanswered.
    pub keepalive_timeout: Duration,
    /// A connection with no open stream (or request) for this long is closed (GOAWAY).
    pub idle_timeout: Duration,
    /// A connection older than this gets GOAWAY (clients reconnect; requests in flight finish).
    pub max_connection_age: Duration,
    /// How long requests in flight may take to finish once a connection got GOAWAY (age or
    /// shutdown) before it is closed anyway; longer than the request timeout.
    pub connection_grace: Duration,
    /// Connections open at once, over all listeners; more wait in the kernel's listen queue.
    /// `None`: the descriptor limit minus [`TransportOptions::DESCRIPTOR_HEADROOM`] (at most
    /// [`TransportOptions::AUTO_MAX_CONNECTIONS`]).
    pub max_connections: Option<usize>,
    /// Longest a request's whole body may take to arrive after its headers; a slower upload is
    /// dropped (and its buffered bytes released) with DEADLINE_EXCEEDED.
    pub request_body_timeout: Duration,
    /// Longest a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// Bytes of request bodies held at once, over all requests being received or answered;
    /// a request past it gets RESOURCE_EXHAUSTED.
    pub in_flight_request_bytes: usize,
}

impl TransportOptions {
    /// Descriptors kept free of connections when the cap is derived from the descriptor limit
    /// (snapshot files being loaded, TLS and key files, the runtime's own).
    pub const DESCRIPTOR_HEADROOM: usize = 32;
    /// The most connections a derived cap allows.
    pub const AUTO_MAX_CONNECTIONS: usize = 4096;

    /// The connection cap under a descriptor limit of `nofile`: the one asked for, else the
    /// limit less the headroom (at least 1, at most [`TransportOptions::AUTO_MAX_CONNECTIONS`]).
    pub fn connection_cap(&self, nofile: u64) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let free = usize::try_from(nofile)
                .unwrap_or(usize::MAX)
                .saturating_sub(Self::DESCRIPTOR_HEADROOM);
            free.clamp(1, Self::AUTO_MAX_CONNECTIONS)
        })
    }
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            max_streams_per_connection: 64,
            max_pending_reset_streams: 20,
            max_local_reset_streams: 64,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connection_age: Duration::from_secs(3600),
            connection_grace: Duration::from_secs(70),
            max_connections: None,
            request_body_timeout: Duration::from_secs(20),
            tls_handshake_timeout: Duration::from_secs(10),
            in_flight_request_bytes: 256 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_store_is_memory_a_redis_url_or_a_path_and_never_shows_a_password() {
        assert_eq!(KeyStoreSpec::parse("memory"), Ok(KeyStoreSpec::Memory));
        assert_eq!(
            KeyStoreSpec::parse("/var/lib/pir/keys.redb"),
            Ok(KeyStoreSpec::File("/var/lib/pir/keys.redb".into()))
        );
        let url = "rediss://pir:s3cret@redis.internal:6380/0";
        let spec = KeyStoreSpec::parse(url).unwrap();
        assert_eq!(spec, KeyStoreSpec::Redis(url.into()));
        assert_eq!(spec.to_string(), "rediss://***@redis.internal:6380/0");
        assert!(!format!("{spec:?}").contains("s3cret"));
        assert!(
            KeyStoreSpec::parse("http://x:y@host")
                .unwrap_err()
                .contains("***@host")
        );
        assert!(KeyStoreSpec::parse(" ").is_err());
    }
}

/// Fault injection for the server's own tests (feature `test-hooks`, off by default). Never
/// enable it in a server that answers real requests.
#[cfg(feature = "test-hooks")]
#[derive(Clone, Debug, Default)]
pub struct TestHooks {
    /// A query whose bytes start with this marker panics inside the answering thread, as a
    /// dependency bug would.
    pub danger_panic_marker: Option<Vec<u8>>,
}
