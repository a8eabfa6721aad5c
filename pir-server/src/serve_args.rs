//! The flags of `pir-server serve` and their parsers (the binary's; `main.rs` dispatches).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;
use pir_server::{
    KeyStoreSpec, RateLimit, ServeOptions, TransportOptions,
    process::{ServeConfig, TlsFiles},
};

/// The flags of `serve`, each also read from the environment variable its help names (the
/// flag wins). Every default of a [`ServeOptions`] field is read from
/// [`ServeOptions::default`], never restated here.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The snapshot file.
    #[arg(long, env = "PIR_SNAPSHOT", required_unless_present = "manifest")]
    snapshot: Option<PathBuf>,
    /// Serve shards of a sharded directory (`build --shards`): its manifest.pirman, whose DP
    /// signature --dp-pub checks; each shard file must be the one it names. A reload (SIGHUP,
    /// Admin) reads the manifest again and swaps the manifest and its shards together.
    #[arg(long, env = "PIR_MANIFEST", conflicts_with = "snapshot")]
    manifest: Option<PathBuf>,
    /// Which shards of --manifest this process answers queries for: `all`, indices and ranges
    /// (`0-3`, `2`, `0,2-3`), or `none` (a process that only answers OPRF evaluations, with
    /// --oprf-key, and GetConfig).
    #[arg(long, env = "PIR_SHARDS", requires = "manifest", default_value = "all")]
    shards: pir_server::ShardSelection,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051", env = "PIR_LISTEN")]
    listen: SocketAddr,
    /// Largest gRPC message, MiB.
    #[arg(long, default_value_t = ServeOptions::default().max_message_bytes >> 20, env = "PIR_MAX_MESSAGE_MIB")]
    max_message_mib: usize,
    /// Most queries in one request.
    #[arg(long, default_value_t = ServeOptions::default().max_queries_per_request, env = "PIR_MAX_QUERIES_PER_REQUEST")]
    max_queries_per_request: u32,
    /// Memory budget of registered client keys, MiB.
    #[arg(long, default_value_t = ServeOptions::default().key_cache_bytes >> 20, env = "PIR_KEY_CACHE_MIB")]
    key_cache_mib: u64,
    /// Queries queued or being answered at once (counted per query, across requests); a
    /// request that does not fit gets RESOURCE_EXHAUSTED, and spends no rate-limit token.
    #[arg(long, default_value_t = ServeOptions::default().max_pending_answers, env = "PIR_MAX_PENDING")]
    max_pending: usize,
    /// Most queries answered together in one pass over the database, across requests
    /// (about 20 MiB of working memory each at 1M mappings). A larger request is answered
    /// alone, in passes of at most this many.
    #[arg(long, default_value_t = ServeOptions::default().max_batch_queries, env = "PIR_MAX_BATCH")]
    max_batch: usize,
    /// Refuse snapshots (at start and on reload) not signed by a key in this file.
    #[arg(long, env = "PIR_DP_PUB")]
    dp_pub: Option<PathBuf>,
    /// The DP's OPRF secret key (from `oprf-keygen`, mode 0600): answer `Discovery/Evaluate`
    /// with it. Without it the server is a PIR host only, holding nothing that opens the
    /// snapshot's entries; clients then ask the DP's evaluator. Snapshots keyed by another OPRF
    /// key are refused.
    #[arg(long, env = "PIR_OPRF_KEY")]
    oprf_key: Option<PathBuf>,
    /// Address of the Admin service (hot reload). Only started with --admin-token-file.
    #[arg(long, default_value = "127.0.0.1:50052", env = "PIR_ADMIN_LISTEN")]
    admin_listen: SocketAddr,
    /// File holding the admin bearer token (at least 16 characters).
    #[arg(long, env = "PIR_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// How long a request may take before DEADLINE_EXCEEDED (e.g. 60s, 2m, 500ms).
    #[arg(
        long,
        default_value_t = ServeOptions::default().request_timeout.into(),
        value_parser = positive_duration,
        env = "PIR_REQUEST_TIMEOUT"
    )]
    request_timeout: humantime::Duration,
    /// The old spelling of --request-timeout, in whole seconds.
    #[arg(long, hide = true, conflicts_with = "request_timeout")]
    request_timeout_secs: Option<u64>,
    /// PIR queries per registered key: BURST/PER_HOUR, or `off`.
    #[arg(
        long,
        default_value_t = RateArg(ServeOptions::default().per_key_rate),
        value_parser = parse_rate,
        env = "PIR_KEY_RATE"
    )]
    key_rate: RateArg,
    /// PIR queries per peer network (see --peer-prefix-v4/-v6): BURST/PER_HOUR, or `off`.
    #[arg(
        long,
        default_value_t = RateArg(ServeOptions::default().per_peer_rate),
        value_parser = parse_rate,
        env = "PIR_PEER_RATE"
    )]
    peer_rate: RateArg,
    /// Key registrations per peer network: BURST/PER_HOUR, or `off`.
    #[arg(
        long,
        default_value_t = RateArg(ServeOptions::default().per_peer_registrations),
        value_parser = parse_rate,
        env = "PIR_REGISTRATION_RATE"
    )]
    registration_rate: RateArg,
    /// OPRF evaluations (each one CPI a client can locate) per registered key: BURST/PER_HOUR,
    /// or `off`.
    #[arg(
        long,
        default_value_t = RateArg(ServeOptions::default().per_key_evaluations),
        value_parser = parse_rate,
        env = "PIR_KEY_EVALUATION_RATE"
    )]
    key_evaluation_rate: RateArg,
    /// OPRF evaluations per peer network: BURST/PER_HOUR, or `off`.
    #[arg(
        long,
        default_value_t = RateArg(ServeOptions::default().per_peer_evaluations),
        value_parser = parse_rate,
        env = "PIR_PEER_EVALUATION_RATE"
    )]
    peer_evaluation_rate: RateArg,
    /// OPRF evaluations per second from all peers together, or `off`: the bound on how fast
    /// anyone can enumerate CPIs, whatever keys and networks they use.
    #[arg(
        long,
        default_value_t = CountArg(ServeOptions::default().global_evaluations_per_second),
        value_parser = parse_count,
        env = "PIR_GLOBAL_EVALUATION_RATE"
    )]
    global_evaluation_rate: CountArg,
    // ---- limits that many addresses cannot multiply (issue 15, items 3 and 11) ---------------
    /// Per-peer limits count IPv4 peers by networks of this prefix length (32: each address).
    #[arg(
        long,
        default_value_t = ServeOptions::default().peer_prefix_v4,
        value_parser = clap::value_parser!(u8).range(0..=32),
        env = "PIR_PEER_PREFIX_V4"
    )]
    peer_prefix_v4: u8,
    /// Per-peer limits count IPv6 peers by networks of this prefix length (64: a host's /64).
    #[arg(
        long,
        default_value_t = ServeOptions::default().peer_prefix_v6,
        value_parser = clap::value_parser!(u8).range(0..=128),
        env = "PIR_PEER_PREFIX_V6"
    )]
    peer_prefix_v6: u8,
    /// Key registrations per second from all peers together, or `off`.
    #[arg(
        long,
        default_value_t = CountArg(ServeOptions::default().global_registrations_per_second),
        value_parser = parse_count,
        env = "PIR_GLOBAL_REGISTRATION_RATE"
    )]
    global_registration_rate: CountArg,
    /// Registered clients the full key cache may evict per minute, or `off`; past it,
    /// registrations that need room get RESOURCE_EXHAUSTED and registered clients stay.
    #[arg(
        long,
        default_value_t = CountArg(ServeOptions::default().key_evictions_per_minute),
        value_parser = parse_count,
        env = "PIR_KEY_EVICTION_RATE"
    )]
    key_eviction_rate: CountArg,
    /// A proxy network (CIDR, e.g. 10.0.0.0/8 or 2001:db8::/48) whose x-forwarded-for or
    /// forwarded header names the client for the per-peer limits. Repeatable, or comma-separated.
    /// From other peers those headers are ignored.
    /// A bare address is that one host.
    #[arg(long, value_delimiter = ',', value_parser = parse_network, env = "PIR_TRUSTED_PROXY")]
    trusted_proxy: Vec<ipnet::IpNet>,
    /// Registrations hashed and parsed at once, off the async runtime (more wait their turn).
    #[arg(
        long,
        default_value_t = ServeOptions::default().registration_workers,
        value_parser = parse_workers,
        env = "PIR_REGISTRATION_WORKERS"
    )]
    registration_workers: usize,
    /// Serve HTTP here: Prometheus metrics at /metrics, and the probes /healthz (alive) and
    /// /readyz (snapshot loaded, answering; 503 while loading and once stopping).
    #[arg(long, env = "PIR_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// PEM certificate chain: serve over TLS (with --tls-key). Checked at start.
    #[arg(long, requires = "tls_key", env = "PIR_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", env = "PIR_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (loopback needs no flag).
    #[arg(long, conflicts_with = "tls_cert", env = "PIR_PLAINTEXT")]
    plaintext: bool,
    /// Write the process id to this file once the ports are bound; removed at exit.
    #[arg(long, env = "PIR_PID_FILE")]
    pid_file: Option<PathBuf>,
    /// After SIGTERM or SIGINT, keep answering this long with health NOT_SERVING and /readyz
    /// 503 before closing the listeners, so that load balancers stop sending first (e.g. 5s).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, env = "PIR_SHUTDOWN_DELAY")]
    shutdown_delay: Duration,
    // Transport (issue 15, items 1-2): limits of every listener's connections.
    /// HTTP/2 streams open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS); more
    /// are refused.
    #[arg(long, default_value_t = TransportOptions::default().max_streams_per_connection, value_parser = clap::value_parser!(u32).range(1..), env = "PIR_MAX_STREAMS_PER_CONNECTION")]
    max_streams_per_connection: u32,
    /// Streams a client may open and reset before they are accepted (rapid reset) before the
    /// connection gets GOAWAY.
    #[arg(long, default_value_t = TransportOptions::default().max_pending_reset_streams, env = "PIR_MAX_PENDING_RESET_STREAMS")]
    max_pending_reset_streams: usize,
    /// Streams the server may reset for a client's protocol errors (refused streams included)
    /// before the connection gets GOAWAY.
    #[arg(long, default_value_t = TransportOptions::default().max_local_reset_streams, env = "PIR_MAX_LOCAL_RESET_STREAMS")]
    max_local_reset_streams: usize,
    /// Interval of HTTP/2 keepalive PINGs.
    #[arg(long, default_value_t = TransportOptions::default().keepalive_interval.into(), value_parser = positive_duration, env = "PIR_KEEPALIVE_INTERVAL")]
    keepalive_interval: humantime::Duration,
    /// A connection whose peer leaves a keepalive PING unanswered this long is closed.
    #[arg(long, default_value_t = TransportOptions::default().keepalive_timeout.into(), value_parser = positive_duration, env = "PIR_KEEPALIVE_TIMEOUT")]
    keepalive_timeout: humantime::Duration,
    /// A connection with no open stream (or HTTP request) this long is closed.
    #[arg(long, default_value_t = TransportOptions::default().idle_timeout.into(), value_parser = positive_duration, env = "PIR_IDLE_TIMEOUT")]
    idle_timeout: humantime::Duration,
    /// A connection older than this gets GOAWAY (clients reconnect).
    #[arg(long, default_value_t = TransportOptions::default().max_connection_age.into(), value_parser = positive_duration, env = "PIR_MAX_CONNECTION_AGE")]
    max_connection_age: humantime::Duration,
    /// How long requests in flight may still take once their connection got GOAWAY (age or
    /// shutdown) before it is closed anyway.
    #[arg(long, default_value_t = TransportOptions::default().connection_grace.into(), value_parser = positive_duration, env = "PIR_CONNECTION_GRACE")]
    connection_grace: humantime::Duration,
    /// Connections open at once over all listeners (more wait in the listen queue), or `auto`:
    /// the file descriptor limit less 32, at most 4096.
    #[arg(long, default_value_t = ConnectionsArg(TransportOptions::default().max_connections), value_parser = parse_connections, env = "PIR_MAX_CONNECTIONS")]
    max_connections: ConnectionsArg,
    /// Longest a request's whole body may take to arrive; a slower upload is dropped.
    #[arg(long, default_value_t = TransportOptions::default().request_body_timeout.into(), value_parser = positive_duration, env = "PIR_REQUEST_BODY_TIMEOUT")]
    request_body_timeout: humantime::Duration,
    /// Longest a TLS handshake may take.
    #[arg(long, default_value_t = TransportOptions::default().tls_handshake_timeout.into(), value_parser = positive_duration, env = "PIR_TLS_HANDSHAKE_TIMEOUT")]
    tls_handshake_timeout: humantime::Duration,
    /// Where registered client keys are kept, so that they survive a restart and are shared
    /// by replicas: a file path (an embedded database, created owner-only), `memory` (this
    /// process only), or a `redis://` or `rediss://` URL (Redis or Valkey, shared by every
    /// replica with the registration rate limits). Default: `pir-keys.redb` in the
    /// snapshot's directory.
    #[arg(long, value_parser = KeyStoreSpec::parse, env = "PIR_KEY_STORE")]
    key_store: Option<KeyStoreSpec>,
    /// How long a registration lasts unless the client renews it (clients renew by themselves
    /// with RenewKeys, without uploading their keys again).
    #[arg(long, default_value_t = ServeOptions::default().key_ttl.into(), value_parser = positive_duration, env = "PIR_KEY_TTL")]
    key_ttl: humantime::Duration,
    /// Request body bytes held at once over all requests, MiB; past it RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = (TransportOptions::default().in_flight_request_bytes >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..), env = "PIR_IN_FLIGHT_REQUEST_MIB")]
    in_flight_request_mib: u64,
}

impl ServeArgs {
    /// What these flags ask the serve process to do.
    pub(crate) fn config(self) -> ServeConfig {
        ServeConfig {
            options: self.options(),
            shards: self.manifest.is_some().then_some(self.shards),
            snapshot: self.manifest.or(self.snapshot).unwrap_or_default(),
            listen: self.listen,
            dp_pub: self.dp_pub,
            oprf_key: self.oprf_key,
            admin_listen: self.admin_listen,
            admin_token_file: self.admin_token_file,
            metrics_listen: self.metrics_listen,
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
            plaintext: self.plaintext,
            pid_file: self.pid_file,
            shutdown_delay: self.shutdown_delay,
        }
    }

    /// The server's limits these flags ask for.
    pub(crate) fn options(&self) -> ServeOptions {
        ServeOptions {
            max_message_bytes: self.max_message_mib << 20,
            max_queries_per_request: self.max_queries_per_request,
            key_cache_bytes: self.key_cache_mib << 20,
            max_pending_answers: self.max_pending,
            max_batch_queries: self.max_batch,
            request_timeout: match self.request_timeout_secs {
                Some(secs) => Duration::from_secs(secs.max(1)),
                None => self.request_timeout.into(),
            },
            per_key_rate: self.key_rate.0,
            per_peer_rate: self.peer_rate.0,
            per_peer_registrations: self.registration_rate.0,
            transport: self.transport(),
            peer_prefix_v4: self.peer_prefix_v4,
            peer_prefix_v6: self.peer_prefix_v6,
            global_registrations_per_second: self.global_registration_rate.0,
            key_evictions_per_minute: self.key_eviction_rate.0,
            trusted_proxies: self.trusted_proxy.clone(),
            registration_workers: self.registration_workers,
            per_key_evaluations: self.key_evaluation_rate.0,
            per_peer_evaluations: self.peer_evaluation_rate.0,
            global_evaluations_per_second: self.global_evaluation_rate.0,
            key_store: self.key_store.clone().unwrap_or_else(|| {
                KeyStoreSpec::File(
                    self.manifest
                        .as_ref()
                        .or(self.snapshot.as_ref())
                        .and_then(|p| p.parent())
                        .unwrap_or(std::path::Path::new(""))
                        .join(KeyStoreSpec::DEFAULT_FILE_NAME),
                )
            }),
            key_ttl: self.key_ttl.into(),
        }
    }

    /// The connection limits these flags ask for.
    fn transport(&self) -> TransportOptions {
        TransportOptions {
            max_streams_per_connection: self.max_streams_per_connection,
            max_pending_reset_streams: self.max_pending_reset_streams,
            max_local_reset_streams: self.max_local_reset_streams,
            keepalive_interval: self.keepalive_interval.into(),
            keepalive_timeout: self.keepalive_timeout.into(),
            idle_timeout: self.idle_timeout.into(),
            max_connection_age: self.max_connection_age.into(),
            connection_grace: self.connection_grace.into(),
            max_connections: self.max_connections.0,
            request_body_timeout: self.request_body_timeout.into(),
            tls_handshake_timeout: self.tls_handshake_timeout.into(),
            in_flight_request_bytes: usize::try_from(self.in_flight_request_mib << 20)
                .unwrap_or(usize::MAX),
        }
    }
}

/// A connection cap from the command line; `auto` is `None`.
#[derive(Clone, Copy, Debug)]
struct ConnectionsArg(Option<usize>);

impl std::fmt::Display for ConnectionsArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("auto"),
        }
    }
}

fn parse_connections(text: &str) -> Result<ConnectionsArg, String> {
    if text == "auto" {
        return Ok(ConnectionsArg(None));
    }
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (or say auto)".into()),
        Ok(n) => Ok(ConnectionsArg(Some(n))),
        Err(e) => Err(format!("{text:?}: {e} (expected a number or auto)")),
    }
}

/// A duration like `60s`, `2m` or `500ms`, more than zero.
fn positive_duration(text: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration = text
        .parse()
        .map_err(|e| format!("{e} (expected a duration like 60s, 2m or 500ms)"))?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// A rate limit from the command line; `off` is `None`.
#[derive(Clone, Copy, Debug)]
struct RateArg(Option<RateLimit>);

impl std::fmt::Display for RateArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(rate) => write!(f, "{rate}"),
            None => f.write_str("off"),
        }
    }
}

fn parse_rate(text: &str) -> Result<RateArg, String> {
    if text == "off" {
        return Ok(RateArg(None));
    }
    let (burst, per_hour) = text
        .split_once('/')
        .ok_or_else(|| "expected BURST/PER_HOUR or off".to_string())?;
    let n = |s: &str| s.trim().parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
    let rate = RateLimit {
        burst: n(burst)?,
        per_hour: n(per_hour)?,
    };
    if rate.burst == 0 || rate.per_hour == 0 {
        return Err("burst and rate must be positive (or say off)".into());
    }
    Ok(RateArg(Some(rate)))
}

/// Between 1 and 1024 workers.
fn parse_workers(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!("{text:?}: expected a whole number from 1 to 1024")),
    }
}

/// A network in CIDR form, or one address as the network of that host alone.
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net);
    }
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| {
            format!("{text:?} is not a network (e.g. 10.0.0.0/8, 2001:db8::/48) or an address")
        })
}

/// A count per unit of time from the command line; `off` is `None`.
#[derive(Clone, Copy, Debug)]
struct CountArg(Option<u32>);

impl std::fmt::Display for CountArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("off"),
        }
    }
}

fn parse_count(text: &str) -> Result<CountArg, String> {
    if text == "off" {
        return Ok(CountArg(None));
    }
    match text.trim().parse::<u32>() {
        Ok(0) => Err("must be positive (or say off)".into()),
        Ok(n) => Ok(CountArg(Some(n))),
        Err(e) => Err(format!("{text:?}: {e} (expected a whole number, or off)")),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    use crate::{Cli, Command};

    #[test]
    fn serve_defaults_are_the_options_defaults() {
        let cli = Cli::try_parse_from(["pir-server", "serve", "--snapshot", "db.pirsnap"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        // The one default of its own: registrations on disk beside the snapshot (the library
        // keeps them in memory).
        assert_eq!(
            args.options(),
            ServeOptions {
                key_store: KeyStoreSpec::File("pir-keys.redb".into()),
                ..ServeOptions::default()
            }
        );
    }

    #[test]
    fn the_key_store_is_beside_the_snapshot_unless_named() {
        let args = serve(&["--key-ttl", "90m"]).unwrap();
        assert_eq!(args.options().key_ttl, Duration::from_secs(90 * 60));
        let cli = Cli::try_parse_from(["pir-server", "serve", "--snapshot", "/srv/pir/db.pirsnap"])
            .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(
            args.options().key_store,
            KeyStoreSpec::File("/srv/pir/pir-keys.redb".into())
        );
        for (value, want) in [
            ("memory", KeyStoreSpec::Memory),
            (
                "/var/lib/pir/keys.redb",
                KeyStoreSpec::File("/var/lib/pir/keys.redb".into()),
            ),
            (
                "redis://10.0.0.5:6379/0",
                KeyStoreSpec::Redis("redis://10.0.0.5:6379/0".into()),
            ),
        ] {
            let args = serve(&["--key-store", value]).unwrap();
            assert_eq!(args.options().key_store, want, "{value}");
        }
        for (flag, bad) in [("--key-store", "http://x"), ("--key-ttl", "0s")] {
            let err = serve(&[flag, bad]).err().unwrap().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }

    #[test]
    fn cli_is_consistent_and_serve_flags_parse() {
        Cli::command().debug_assert();
        for args in [
            vec!["pir-server", "serve", "--snapshot", "db.pirsnap"],
            vec![
                "pir-server",
                "serve",
                "--snapshot",
                "db.pirsnap",
                "--key-rate",
                "off",
                "--peer-rate",
                "10/100",
                "--max-batch",
                "16",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("not serve");
            };
            let ServeArgs {
                key_rate,
                peer_rate,
                max_batch,
                ..
            } = *args;
            assert!(key_rate.0.is_none() || key_rate.0.is_some_and(|r| r.burst == 200));
            assert!(peer_rate.0.is_some());
            assert!(max_batch == ServeOptions::default().max_batch_queries || max_batch == 16);
        }
        assert!(
            Cli::try_parse_from(["pir-server", "serve", "--snapshot", "x", "--key-rate", "5"])
                .is_err()
        );
        for rate in ["off", "3/7"] {
            let cli =
                Cli::try_parse_from(["pir-server", "serve", "--snapshot", "x", "--key-rate", rate])
                    .unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("not serve");
            };
            assert_eq!(
                args.key_rate.to_string(),
                rate,
                "a rate prints as it parses"
            );
        }
        assert!(
            Cli::try_parse_from(["pir-server", "serve", "--snapshot", "x", "--tls-cert", "c"])
                .is_err()
        );
    }

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut all = vec!["pir-server", "serve", "--snapshot", "db.pirsnap"];
        all.extend(args);
        let cli = Cli::try_parse_from(all)?;
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        Ok(*args)
    }

    #[test]
    fn durations_are_human() {
        for (text, want) in [
            ("60s", Duration::from_secs(60)),
            ("2m", Duration::from_secs(120)),
            ("500ms", Duration::from_millis(500)),
            ("1m 30s", Duration::from_secs(90)),
        ] {
            let args = serve(&["--request-timeout", text]).unwrap();
            assert_eq!(args.options().request_timeout, want, "{text}");
        }
        for bad in ["60", "0s", "soon"] {
            let err = serve(&["--request-timeout", bad])
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("--request-timeout"), "{err}");
        }
        let err = serve(&["--request-timeout", "60"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("expected a duration like 60s, 2m or 500ms"),
            "{err}"
        );
        // The old flag still works, hidden, and not together with the new one.
        let args = serve(&["--request-timeout-secs", "5"]).unwrap();
        assert_eq!(args.options().request_timeout, Duration::from_secs(5));
        assert!(serve(&["--request-timeout-secs", "5", "--request-timeout", "5s"]).is_err());
        let args = serve(&["--shutdown-delay", "5s", "--pid-file", "/run/pir.pid"]).unwrap();
        let config = args.config();
        assert_eq!(config.shutdown_delay, Duration::from_secs(5));
        assert_eq!(config.pid_file, Some(PathBuf::from("/run/pir.pid")));
        assert_eq!(serve(&[]).unwrap().config().shutdown_delay, Duration::ZERO);
    }

    #[test]
    fn transport_flags_parse_and_the_connection_cap_follows_the_descriptor_limit() {
        let args = serve(&[
            "--max-connections",
            "100",
            "--idle-timeout",
            "5s",
            "--in-flight-request-mib",
            "8",
        ])
        .unwrap();
        let t = args.options().transport;
        assert_eq!(t.max_connections, Some(100));
        assert_eq!(t.idle_timeout, Duration::from_secs(5));
        assert_eq!(t.in_flight_request_bytes, 8 << 20);
        assert_eq!(t.connection_cap(64), 100, "asked for, kept");
        let auto = TransportOptions::default();
        assert_eq!(auto.connection_cap(64), 32);
        assert_eq!(auto.connection_cap(10), 1);
        assert_eq!(auto.connection_cap(u64::MAX), 4096);
        for bad in [
            &["--max-connections", "0"][..],
            &["--max-connections", "many"],
            &["--idle-timeout", "0s"],
            &["--max-streams-per-connection", "0"],
            &["--in-flight-request-mib", "0"],
        ] {
            let err = serve(bad).err().unwrap().to_string();
            assert!(err.contains(bad[0]), "{err}");
        }
    }

    #[test]
    fn limit_flags_parse_and_refuse_nonsense() {
        let args = serve(&[
            "--peer-prefix-v6",
            "48",
            "--peer-prefix-v4",
            "24",
            "--global-registration-rate",
            "off",
            "--key-eviction-rate",
            "5",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--trusted-proxy",
            "::1,192.168.0.0/16",
            "--registration-workers",
            "4",
        ])
        .unwrap();
        let o = args.options();
        assert_eq!((o.peer_prefix_v4, o.peer_prefix_v6), (24, 48));
        assert_eq!(o.global_registrations_per_second, None);
        assert_eq!(o.key_evictions_per_minute, Some(5));
        assert_eq!(o.registration_workers, 4);
        let nets: Vec<String> = o.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "::1/128", "192.168.0.0/16"]);
        for (flag, bad) in [
            ("--peer-prefix-v4", "33"),
            ("--peer-prefix-v6", "129"),
            ("--trusted-proxy", "10.0.0.1/33"),
            ("--trusted-proxy", "proxy.example"),
            ("--key-eviction-rate", "0"),
            ("--global-registration-rate", "many"),
            ("--registration-workers", "0"),
        ] {
            let err = serve(&[flag, bad]).err().unwrap().to_string();
            assert!(err.contains(flag), "{flag} {bad}: {err}");
        }
    }

    /// Every flag of `serve` (but the hidden old spelling) can come from a `PIR_` variable,
    /// named after the flag, and `--help` says which.
    #[test]
    fn every_serve_flag_has_an_environment_variable() {
        let mut cli = Cli::command();
        let serve = cli.find_subcommand_mut("serve").unwrap();
        let mut help = Vec::new();
        serve.write_long_help(&mut help).unwrap();
        let help = String::from_utf8(help).unwrap();
        let mut checked = 0;
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if arg.is_hide_set() || matches!(long, "help" | "verbose") {
                continue;
            }
            let want = format!("PIR_{}", long.to_uppercase().replace('-', "_"));
            let env = arg.get_env().and_then(|e| e.to_str());
            assert_eq!(env, Some(want.as_str()), "--{long}");
            assert!(
                help.contains(&format!("[env: {want}=]")),
                "--{long} in\n{help}"
            );
            checked += 1;
        }
        assert!(checked >= 20, "{checked}");
    }
}
