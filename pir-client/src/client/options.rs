//! How a client connects and what it trusts, and the defaults that hold against a hostile
//! server.

use std::{path::PathBuf, time::Duration};

use pir_core::{DpKeys, TrustStore};

/// Default limit on one gRPC message, both ways: public keys are up to about 9 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Default deadline of every RPC: a query's answer scans the whole database (about a second
/// at a million mappings, more while the server is busy), far below this.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`PirClient`](crate::PirClient) connects and what it trusts.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The issuer keys whose signatures make a mapping genuine.
    pub trust: TrustStore,
    /// Where to keep the client's keys between runs; `None` generates keys on every connect.
    /// With [`Self::dp_keys`], the file also remembers the newest snapshot verified.
    pub key_file: Option<PathBuf>,
    /// Limit for establishing the connection.
    pub connect_timeout: Option<Duration>,
    /// Deadline of each RPC (a query's answer scans the whole database: be generous). `None`
    /// waits for ever, which a stalled server then makes a hang.
    pub request_timeout: Option<Duration>,
    /// Largest gRPC message sent or received, bytes. Parameters whose keys, queries or
    /// responses need more are refused before any key is made.
    pub max_message_bytes: usize,
    /// PEM file of the CA that signed the server's certificate, for `https://` URLs (the
    /// system's roots are used without it).
    pub tls_ca: Option<PathBuf>,
    /// The DP keys the served snapshot must be signed by (`--dp-pub`). With them, the client
    /// checks the signed snapshot header the server sends and that the configuration is the
    /// one it describes, and refuses an epoch older than the newest it verified (remembered in
    /// the key file, if any, else for this client's life) or another header for that epoch.
    ///
    /// Without them, the configuration is taken as the server states it: a server (or anyone
    /// posing as it) can serve an older snapshot, or one the DP never built, and the client
    /// cannot tell. Mappings are still verified against [`Self::trust`] either way, so a
    /// server cannot forge a mapping, only serve old or partial ones.
    pub dp_keys: Option<DpKeys>,
    /// Accept scheme parameters that are not one of pir-core's vetted presets (for tests and
    /// research: their security and failure probability are unknown). Off by default.
    pub allow_custom_params: bool,
    /// Allow plaintext `http://` to addresses other than this machine's loopback. Off by
    /// default: on a network, anyone on the path could pose as the server.
    pub insecure_plaintext: bool,
    /// Generate and register fresh keys on connect even when [`Self::key_file`] holds usable
    /// ones, and replace them in the file (key rotation). The key id links every lookup made
    /// with one key set; a new set starts a new, unlinked history, at the cost of one key
    /// upload. What the file remembers of verified snapshots is kept.
    pub rotate_keys: bool,
    /// The DP's evaluator (`--evaluator URL`), when the server is a PIR host without the OPRF
    /// key. `None` asks the server itself. The keys are registered with both; the evaluator's
    /// snapshot must be keyed by the same OPRF key as the server's.
    pub evaluator: Option<String>,
}

impl Default for ClientOptions {
    /// No trusted issuer (every found mapping then fails verification), no key file, a 10 s
    /// connect timeout, a 30 s deadline per RPC, 64 MiB messages, no DP keys, vetted
    /// parameters only, plaintext only to loopback.
    fn default() -> Self {
        Self {
            trust: TrustStore::new(),
            key_file: None,
            connect_timeout: Some(Duration::from_secs(10)),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tls_ca: None,
            dp_keys: None,
            allow_custom_params: false,
            insecure_plaintext: false,
            rotate_keys: false,
            evaluator: None,
        }
    }
}

impl ClientOptions {
    /// Defaults, trusting `trust`.
    pub fn new(trust: TrustStore) -> Self {
        Self {
            trust,
            ..Self::default()
        }
    }

    /// These options, also accepting parameters that are not vetted presets (tests' small
    /// shapes, research): see [`Self::allow_custom_params`].
    pub fn allowing_custom_params(self) -> Self {
        Self {
            allow_custom_params: true,
            ..self
        }
    }

    /// These options, requiring snapshots signed by `dp_keys`: see [`Self::dp_keys`].
    pub fn with_dp_keys(self, dp_keys: DpKeys) -> Self {
        Self {
            dp_keys: Some(dp_keys),
            ..self
        }
    }
}
