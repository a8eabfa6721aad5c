//! Reload under fault injection, against the release binary: rollbacks (an older epoch, the same
//! epoch with a new salt) refused unless forced, a FIFO refused at once, cancelled Admin calls
//! that cannot pile up copies of the snapshot, a forged DP signature refused before the payload
//! is read. Each figure is printed (`--nocapture` shows them) and bounded.

mod common;

use std::{
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::{Duration, Instant},
};

use pir_core::testing::{dp_key, issuer, oprf_key, trust};
use pir_core::{
    BuildOptions, Cpi, MappingFields, SchemeFields, SchemeParams, Snapshot, UpdateOptions,
};
use pir_proto::v1::{
    GetConfigRequest, ReloadRequest, admin_client::AdminClient, discovery_client::DiscoveryClient,
};
use tonic::{Code, transport::Channel};

const BIN: &str = env!("CARGO_BIN_EXE_pir-server");
const ROLLBACK: &str =
    "epoch 1500 is not above the serving epoch 2000; build with a higher --epoch, or force";
const TOKEN: &str = "reload-faults-admin-token";
const MIB: f64 = (1u64 << 20) as f64;

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Two mappings in the small test shape, at `epoch`, with a salt of `salt` bytes.
fn small(epoch: u64, salt: u8) -> Snapshot {
    build(SchemeParams::danger_test_only_small(), epoch, salt)
}

fn build(scheme: SchemeParams, epoch: u64, salt: u8) -> Snapshot {
    let m = |cpi: &str, msp: &str| {
        MappingFields::new(Cpi::parse(cpi).unwrap(), msp, None, None, 0, u64::MAX)
            .unwrap()
            .sign(&issuer(), None)
            .unwrap()
    };
    let opts = BuildOptions {
        epoch,
        now: 1_800_000_000,
        salt: Some([salt; 32]),
        scheme: Some(scheme.into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    let mappings = vec![
        m("tel:+14155550100", "chat.example"),
        m("mailto:bob@example.org", "talk.example"),
    ];
    Snapshot::build(mappings, &trust(), &oprf_key(), &opts)
        .unwrap()
        .0
}

/// A directory of large snapshots (2,048 items, about 144 MiB each) at epochs 10 to 21, all
/// signed by the test DP key, built once for the whole file (one NTT; the other epochs are
/// empty updates, which re-encode nothing).
fn large() -> &'static (tempfile::TempDir, u64) {
    static LARGE: OnceLock<(tempfile::TempDir, u64)> = OnceLock::new();
    LARGE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let scheme = SchemeParams::try_from(SchemeFields {
            nu_1: 7,
            nu_2: 4,
            ..*SchemeParams::danger_test_only_small()
        })
        .unwrap();
        let mut s = build(scheme, 10, 1);
        for epoch in 10..=21 {
            if epoch > 10 {
                let opts = UpdateOptions {
                    epoch,
                    now: 1_800_000_000,
                };
                s = s.update(Vec::new(), &oprf_key(), &opts).unwrap().0;
            }
            s.sign(&dp_key()).unwrap();
            s.write(&dir.path().join(format!("e{epoch}.pirsnap")))
                .unwrap();
        }
        let bytes = std::fs::metadata(dir.path().join("e10.pirsnap"))
            .unwrap()
            .len();
        (dir, bytes)
    })
}

fn large_path(epoch: u64) -> PathBuf {
    large().0.path().join(format!("e{epoch}.pirsnap"))
}

/// A copy of `from` whose DP signature names the trusted key but does not verify (one byte of
/// the signature flipped, the header checksum recomputed so that only the signature is wrong).
fn forge_signature(from: &Path, to: &Path) {
    let mut bytes = std::fs::read(from).unwrap();
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let header = 16..16 + header_len;
    // The header ends with the signature (Some, key id, 64 signature bytes).
    bytes[header.end - 1] ^= 0x01;
    let hash = *blake3::hash(&bytes[header.clone()]).as_bytes();
    bytes[header.end..header.end + 32].copy_from_slice(&hash);
    std::fs::write(to, bytes).unwrap();
}

/// A `pir-server serve` child with the Admin service on, answering evaluations with the
/// fixture OPRF key (every snapshot here is keyed by it), killed when dropped.
struct Server {
    child: tokio::process::Child,
    url: String,
    admin: String,
    metrics: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(snapshot: &Path, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("admin.token");
        std::fs::write(&token, TOKEN).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let oprf = dir.path().join(common::OPRF_KEY_FILE);
        common::write_oprf_key(&oprf);
        let (listen, admin, metrics) = (free_port(), free_port(), free_port());
        let child = tokio::process::Command::new(BIN)
            .args(["serve", "--snapshot"])
            .arg(snapshot)
            .args(["--listen", &listen.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--metrics-listen", &metrics.to_string()])
            .arg("--admin-token-file")
            .arg(&token)
            .arg("--oprf-key")
            .arg(&oprf)
            // Several servers serve the one large snapshot at once: the default store beside
            // it is one process's (its file is locked).
            .args(["--key-store", "memory"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let server = Self {
            child,
            url: format!("http://{listen}"),
            admin: format!("http://{admin}"),
            metrics,
            _dir: dir,
        };
        let want = Snapshot::read_header(snapshot).unwrap().epoch;
        assert!(
            server.wait_for_epoch(want).await,
            "the server did not start"
        );
        server
    }

    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    async fn epoch(&self) -> Option<u64> {
        common::serving_epoch(self.url.clone()).await
    }

    async fn wait_for_epoch(&self, want: u64) -> bool {
        for _ in 0..600 {
            if self.epoch().await == Some(want) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn salt(&self) -> Vec<u8> {
        let mut rpc = DiscoveryClient::connect(self.url.clone()).await.unwrap();
        let config = rpc
            .get_config(GetConfigRequest::default())
            .await
            .unwrap()
            .into_inner();
        config.layout.unwrap().salt
    }

    fn sighup(&self) {
        let pid = self.pid().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// The value of a counter on `/metrics`.
    async fn counter(&self, name: &str) -> u64 {
        let text = common::scrape_metrics(self.metrics).await;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    }

    async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::connect(self.admin.clone()).await.unwrap()
    }

    /// Peak and current resident memory of the process, bytes.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap()
                * 1024
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

fn reload_request(path: &Path) -> tonic::Request<ReloadRequest> {
    reload_request_forced(path, false)
}

fn reload_request_forced(path: &Path, force: bool) -> tonic::Request<ReloadRequest> {
    let mut req = tonic::Request::new(ReloadRequest {
        path: path.display().to_string(),
        force,
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req
}

/// Epochs only rise: an older snapshot (2000 back to 1500) and another build under the serving
/// epoch (its own salt) are refused, through the Admin call and SIGHUP alike, logged and
/// counted, and the old snapshot keeps serving; a forced Admin reload installs the older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_or_same_epochs_are_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("db.pirsnap");
    small(2000, 1).write(&served).unwrap();
    let server = Server::start(&served, &[]).await;
    let mut admin = server.admin().await;

    let older = dir.path().join("e1500.pirsnap");
    small(1500, 3).write(&older).unwrap();
    let err = admin.reload(reload_request(&older)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(ROLLBACK), "{err:?}");

    // The dangerous case: the same epoch, another salt (lookups would find nothing, silently).
    let resalted = dir.path().join("e2000-resalted.pirsnap");
    small(2000, 2).write(&resalted).unwrap();
    let err = admin.reload(reload_request(&resalted)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains("epoch 2000 is not above the serving epoch 2000"),
        "{err:?}"
    );
    assert_eq!(server.epoch().await, Some(2000));
    assert_eq!(server.salt().await, [1u8; 32]);

    // SIGHUP never forces: the served name pointed at the older file is refused too.
    small(1500, 3).write(&served).unwrap();
    server.sighup();
    let mut refusals = 0;
    for _ in 0..200 {
        refusals = server.counter("pir_reload_epoch_refusals_total").await;
        if refusals == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(refusals, 3, "the SIGHUP reload was not refused");
    assert_eq!(server.counter("pir_reload_failures_total").await, 3);
    assert_eq!(server.epoch().await, Some(2000));
    assert_eq!(server.salt().await, [1u8; 32]);

    // Forced: a deliberate rollback is installed.
    let reply = admin
        .reload(reload_request_forced(&older, true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.previous_epoch, reply.epoch), (2000, 1500));
    assert_eq!(server.salt().await, [3u8; 32]);
    // And a rising epoch needs no force.
    let newer = dir.path().join("e1501.pirsnap");
    small(1501, 4).write(&newer).unwrap();
    let reply = admin
        .reload(reload_request(&newer))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.previous_epoch, reply.epoch), (1500, 1501));
    assert_eq!(server.counter("pir_reload_epoch_refusals_total").await, 3);
}

/// A FIFO is refused at once (it used to hang the call, and SIGHUP reloads behind it, until a
/// writer came), and reloads go on afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("e1.pirsnap");
    small(1, 1).write(&first).unwrap();
    let server = Server::start(&first, &[]).await;
    let fifo = dir.path().join("fifo.pirsnap");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut admin = server.admin().await;
    let start = Instant::now();
    let reply =
        tokio::time::timeout(Duration::from_secs(10), admin.reload(reload_request(&fifo))).await;
    let took = start.elapsed();
    eprintln!("figure: FIFO reload answered after {took:?}");
    let err = reply.expect("the FIFO reload hung").unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message()
            .contains("not a regular file (a FIFO): a snapshot must be a regular file"),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Nothing is left holding the reload lock: SIGHUP reloads at once, of a FIFO too.
    std::fs::remove_file(&first).unwrap();
    std::os::unix::fs::symlink(&fifo, &first).unwrap();
    let start = Instant::now();
    server.sighup();
    let mut failures = 0;
    for _ in 0..200 {
        failures = server.counter("pir_reload_failures_total").await;
        if failures == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(failures, 2, "the SIGHUP reload of the FIFO was not refused");
    eprintln!(
        "figure: SIGHUP to a FIFO refused within {:?}",
        start.elapsed()
    );
    let second = dir.path().join("e2.pirsnap");
    small(2, 2).write(&second).unwrap();
    let start = Instant::now();
    let reply = admin.reload(reload_request(&second)).await.unwrap();
    assert_eq!(reply.into_inner().epoch, 2);
    std::fs::remove_file(&first).unwrap();
    small(3, 3).write(&first).unwrap();
    server.sighup();
    assert!(server.wait_for_epoch(3).await, "SIGHUP did not reload");
    let took = start.elapsed();
    eprintln!("figure: after the FIFO, an Admin reload and a SIGHUP reload done in {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(server.counter("pir_reload_failures_total").await, 2);
}

/// A signature that names the trusted key but does not verify is refused from the header,
/// before the payload is read: milliseconds, whatever the file's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_signature_is_refused_before_the_payload_is_read() {
    let (_, bytes) = large();
    let dir = tempfile::tempdir().unwrap();
    let dp_pub = dir.path().join("dp.pub");
    std::fs::write(&dp_pub, dp_key().to_public_text()).unwrap();
    let forged = dir.path().join("forged.pirsnap");
    forge_signature(&large_path(21), &forged);
    let server = Server::start(&large_path(10), &["--dp-pub", dp_pub.to_str().unwrap()]).await;
    let mut admin = server.admin().await;
    // The best of three calls: the first on a connection also pays for setting it up.
    let mut took = Duration::MAX;
    let mut err = None;
    for _ in 0..3 {
        let start = Instant::now();
        err = Some(admin.reload(reload_request(&forged)).await.unwrap_err());
        took = took.min(start.elapsed());
    }
    let err = err.unwrap();
    eprintln!(
        "figure: forged signature on a {:.0} MiB snapshot refused in {took:?}",
        *bytes as f64 / MIB
    );
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("snapshot signature does not verify"),
        "{err:?}"
    );
    assert_eq!(server.epoch().await, Some(10));
    // The genuine file loads, reading the whole payload: that is what the refusal saved.
    let start = Instant::now();
    let reply = admin.reload(reload_request(&large_path(21))).await.unwrap();
    let full = start.elapsed();
    assert_eq!(reply.into_inner().epoch, 21);
    eprintln!("figure: the genuine snapshot loaded and installed in {full:?}");
    assert!(took < Duration::from_millis(200), "{took:?}");
    assert!(
        took * 4 < full,
        "refused in {took:?}, a whole load takes {full:?}"
    );
}

/// Ten Admin calls cancelled by their clients while the first load runs: the load is not
/// multiplied (the lock is held for the whole load, and calls cancelled before their turn do not
/// start one), so the process never holds more than two snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_admin_calls_keep_at_most_two_snapshots() {
    let (_, bytes) = large();
    let server = Server::start(&large_path(10), &[]).await;
    let (_, serving) = server.memory();
    let mut calls = Vec::new();
    for epoch in 11..=20 {
        let mut admin = server.admin().await;
        calls.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_millis(100),
                admin.reload(reload_request(&large_path(epoch))),
            )
            .await;
        }));
    }
    for call in calls {
        call.await.unwrap();
    }
    // Let whatever loads were started finish.
    let mut last = server.epoch().await;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = server.epoch().await;
        if now == last && now != Some(10) {
            break;
        }
        last = now;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (peak, _) = server.memory();
    let copies = (peak.saturating_sub(serving)) as f64 / *bytes as f64 + 1.0;
    eprintln!(
        "figure: 10 cancelled reloads of a {:.0} MiB snapshot: peak RSS {:.0} MiB (serving \
         {:.0} MiB), about {copies:.1} snapshots resident at once; epoch now {:?}",
        *bytes as f64 / MIB,
        peak as f64 / MIB,
        serving as f64 / MIB,
        server.epoch().await
    );
    assert!(copies < 2.5, "{copies:.1} snapshots resident");
    // The call that got the lock first loaded and installed its snapshot.
    let epoch = server.epoch().await.unwrap();
    assert!((11..=20).contains(&epoch), "epoch {epoch}");
}
