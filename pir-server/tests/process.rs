//! The serve process in-process: started on loopback ports from a config, reloaded through its
//! signal source and the Admin service, scraped, probed while loading, serving and stopping, and
//! stopped; and its start-up refusals, each naming its flag.

mod common;

use common::signals;

use std::{net::SocketAddr, path::Path, time::Duration};

use pir_core::Snapshot;
use pir_proto::v1::{
    GetConfigRequest, ReloadRequest, admin_client::AdminClient, discovery_client::DiscoveryClient,
};
use pir_server::{
    ServeOptions,
    process::{Process, ProcessError, ServeConfig},
};
use tonic::Code;

const TOKEN: &str = "0123456789abcdef-process";
const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

fn snapshot(epoch: u64) -> Snapshot {
    common::bob_snapshot(&pir_core::testing::issuer(), epoch, epoch as u8)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A config serving `dir/db.pirsnap` (epoch 1) on free loopback ports, with the Admin service,
/// the HTTP endpoint, a pid file and the fixture OPRF key (`dir/oprf.key`).
fn config(dir: &Path) -> ServeConfig {
    let path = dir.join("db.pirsnap");
    snapshot(1).write(&path).unwrap();
    let token = dir.join("token");
    pir_core::testing::write_secret(&token, format!("{TOKEN}\n"));
    let oprf_key = dir.join(common::OPRF_KEY_FILE);
    common::write_oprf_key(&oprf_key);
    ServeConfig {
        snapshot: path,
        shards: None,
        listen: loopback(),
        options: ServeOptions::default(),
        dp_pub: None,
        oprf_key: Some(oprf_key),
        admin_listen: loopback(),
        admin_token_file: Some(token),
        metrics_listen: Some(loopback()),
        tls: None,
        plaintext: false,
        pid_file: Some(dir.join("pir-server.pid")),
        shutdown_delay: Duration::ZERO,
    }
}

async fn epoch(addr: SocketAddr) -> Option<u64> {
    common::serving_epoch(format!("http://{addr}")).await
}

/// Polls `check` every 25 ms for up to 5 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never: {what}");
}

async fn wait_for_epoch(addr: SocketAddr, want: u64) {
    eventually(&format!("epoch {want} served"), || async move {
        epoch(addr).await == Some(want)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_reloads_and_stops_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let pid_file = config.pid_file.clone().unwrap();
    let listening = Process::prepare(config).unwrap().bind().await.unwrap();
    let addr = listening.addr();
    let admin = listening.admin_addr().expect("admin runs with a token");
    let metrics = listening.metrics_addr().expect("metrics asked for");
    assert_ne!(addr.port(), 0, "the bound port, not the one asked for");
    // Written once the ports are bound: this process's id.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(pid, format!("{}\n", std::process::id()));

    let (stop, reload, signals) = signals();
    let process = tokio::spawn(listening.run(signals));
    wait_for_epoch(addr, 1).await;

    // A reload request (SIGHUP in production) reads the file the process was started with.
    snapshot(2).write(&dir.path().join("db.pirsnap")).unwrap();
    reload.send(()).await.unwrap();
    wait_for_epoch(addr, 2).await;

    // The Admin service reloads another file, with the token; a broken file is refused and
    // counted, and the old snapshot keeps serving.
    let other = dir.path().join("other.pirsnap");
    snapshot(3).write(&other).unwrap();
    let broken = dir.path().join("broken.pirsnap");
    std::fs::write(&broken, b"not a snapshot").unwrap();
    let mut client = AdminClient::connect(format!("http://{admin}"))
        .await
        .unwrap();
    let reload_request = |path: &Path| {
        let mut req = tonic::Request::new(ReloadRequest {
            path: path.display().to_string(),
            ..Default::default()
        });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        req
    };
    assert!(client.reload(reload_request(&broken)).await.is_err());
    let reply = client
        .reload(reload_request(&other))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.previous_epoch, reply.epoch), (2, 3));

    // The metrics endpoint follows, with the process's own metrics and the build.
    let text = common::scrape_metrics(metrics).await;
    for needle in [
        "pir_snapshot_epoch 3",
        "pir_reload_failures_total 1",
        "pir_snapshot_load_seconds ",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        &format!(
            "pir_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let rss: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rss > f64::from(1 << 20), "{rss}");

    // Stop: every task ends, the process returns cleanly, the pid file is gone.
    stop.send(()).unwrap();
    common::stopped(process).await;
    assert_eq!(epoch(addr).await, None, "nothing listens any more");
    assert!(!pid_file.exists(), "the pid file is removed at exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_loading_nor_once_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        shutdown_delay: Duration::from_secs(2),
        ..config(dir.path())
    };
    let mut listening = Process::prepare(config).unwrap().bind().await.unwrap();
    let (addr, http) = (listening.addr(), listening.metrics_addr().unwrap());
    let release = listening.danger_hold_loading();
    let (stop, _reload, signals) = signals();
    let process = tokio::spawn(listening.run(signals));

    // Loading: every port answers, and says it is not ready.
    eventually("the probes answer", || async move {
        tokio::net::TcpStream::connect(http).await.is_ok()
    })
    .await;
    assert_eq!(
        common::http_get(http, "/readyz").await,
        (503, "loading the snapshot\n".into())
    );
    assert_eq!(
        common::http_get(http, "/healthz").await,
        (200, "ok\n".into())
    );
    assert_eq!(common::health(addr, "").await, Some(NOT_SERVING));
    assert_eq!(
        common::health(addr, "pir.v1.Discovery").await,
        Some(NOT_SERVING)
    );
    let mut rpc = DiscoveryClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let err = rpc
        .get_config(GetConfigRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("loading"), "{err:?}");
    let text = common::scrape_metrics(http).await;
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(text.contains("pir_build_info"), "{text}");

    // Loaded: ready everywhere.
    release.send(()).unwrap();
    eventually("ready", || async move {
        common::http_get(http, "/readyz").await == (200, "ready\n".into())
    })
    .await;
    assert_eq!(common::health(addr, "").await, Some(SERVING));
    assert_eq!(
        common::health(addr, "pir.v1.Discovery").await,
        Some(SERVING)
    );
    let health =
        tonic_health::pb::health_client::HealthClient::new(common::channel(addr).await.unwrap());

    // Stopping: NOT_SERVING at once, while lookups are still answered during the delay.
    stop.send(()).unwrap();
    eventually("NOT_SERVING once stopping", || {
        let mut health = health.clone();
        async move {
            let req = tonic_health::pb::HealthCheckRequest {
                service: "pir.v1.Discovery".into(),
            };
            health.check(req).await.unwrap().into_inner().status == NOT_SERVING
        }
    })
    .await;
    assert_eq!(
        common::http_get(http, "/readyz").await,
        (503, "shutting down\n".into())
    );
    assert_eq!(
        rpc.get_config(GetConfigRequest::default())
            .await
            .unwrap()
            .into_inner()
            .epoch,
        1,
        "still answering until the shutdown delay ends"
    );
    assert!(!process.is_finished());
    drop((rpc, health));
    tokio::time::timeout(Duration::from_secs(20), process)
        .await
        .expect("the process stops after the delay")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_are_bound_before_the_snapshot_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind(loopback()).unwrap();
    let port = taken.local_addr().unwrap();
    // A snapshot that would be refused once read: the port in use is what is reported.
    let broken = dir.path().join("broken.pirsnap");
    std::fs::write(&broken, b"not a snapshot").unwrap();
    for (which, config) in [
        (
            "--listen",
            ServeConfig {
                listen: port,
                snapshot: broken.clone(),
                ..config(dir.path())
            },
        ),
        (
            "--admin-listen",
            ServeConfig {
                admin_listen: port,
                snapshot: broken.clone(),
                ..config(dir.path())
            },
        ),
        (
            "--metrics-listen",
            ServeConfig {
                metrics_listen: Some(port),
                snapshot: broken.clone(),
                ..config(dir.path())
            },
        ),
    ] {
        let pid_file = config.pid_file.clone().unwrap();
        let err = Process::prepare(config)
            .unwrap()
            .bind()
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, ProcessError::Bind { flag, addr, .. } if *flag == which && *addr == port),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("{which} {port}: address already in use;")),
            "{err}"
        );
        assert!(
            !pid_file.exists(),
            "no pid file for a process that never bound"
        );
    }

    // With the port free, the broken snapshot is refused once read, and the pid file goes.
    drop(taken);
    let config = ServeConfig {
        snapshot: broken,
        ..config(dir.path())
    };
    let pid_file = config.pid_file.clone().unwrap();
    let listening = Process::prepare(config).unwrap().bind().await.unwrap();
    assert!(pid_file.exists());
    let (_stop, _reload, signals) = signals();
    let err = tokio::time::timeout(Duration::from_secs(20), listening.run(signals))
        .await
        .expect("a refused snapshot ends the process")
        .err()
        .unwrap();
    assert!(matches!(err, ProcessError::Server(_)), "{err}");
    assert!(!pid_file.exists());
}

#[test]
fn start_up_refusals_name_their_flag() {
    let dir = tempfile::tempdir().unwrap();

    let public = ServeConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..config(dir.path())
    };
    let err = Process::prepare(public.clone()).err().unwrap();
    assert!(matches!(err, ProcessError::NotLoopback { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "--listen 0.0.0.0:0 is not a loopback address: give --tls-cert and --tls-key, or \
         --plaintext to serve without TLS"
    );
    assert!(
        Process::prepare(ServeConfig {
            plaintext: true,
            ..public
        })
        .is_ok(),
        "--plaintext allows it"
    );

    let short = dir.path().join("short");
    pir_core::testing::write_secret(&short, "  too short  \n");
    let err = Process::prepare(ServeConfig {
        admin_token_file: Some(short.clone()),
        ..config(dir.path())
    })
    .err()
    .unwrap();
    assert!(
        matches!(&err, ProcessError::AdminTokenTooShort { path } if *path == short),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "--admin-token-file {}: the token must be at least 16 characters",
            short.display()
        )
    );

    let missing = dir.path().join("missing");
    for (flag, config) in [
        (
            "--admin-token-file",
            ServeConfig {
                admin_token_file: Some(missing.clone()),
                ..config(dir.path())
            },
        ),
        (
            "--snapshot",
            ServeConfig {
                snapshot: missing.clone(),
                ..config(dir.path())
            },
        ),
        (
            "--snapshot",
            ServeConfig {
                snapshot: dir.path().to_path_buf(),
                ..config(dir.path())
            },
        ),
    ] {
        let err = Process::prepare(config).err().unwrap();
        assert!(
            matches!(&err, ProcessError::File { flag: f, .. } if *f == flag),
            "{err}"
        );
        assert!(err.to_string().starts_with(&format!("{flag} ")), "{err}");
    }

    let err = Process::prepare(ServeConfig {
        dp_pub: Some(missing.clone()),
        ..config(dir.path())
    })
    .err()
    .unwrap();
    assert!(matches!(err, ProcessError::DpPub(_)), "{err}");
    assert!(err.to_string().starts_with("--dp-pub "), "{err}");

    // The OPRF key: missing, or readable by others.
    let open_key = dir.path().join("open-oprf.key");
    common::write_oprf_key(&open_key);
    std::fs::set_permissions(
        &open_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
    for (file, says) in [
        (missing, "No such file"),
        (open_key, "group or others may access (mode 0640)"),
    ] {
        let err = Process::prepare(ServeConfig {
            oprf_key: Some(file),
            ..config(dir.path())
        })
        .err()
        .unwrap();
        assert!(matches!(err, ProcessError::OprfKey(_)), "{err}");
        assert!(err.to_string().starts_with("--oprf-key "), "{err}");
        assert!(err.to_string().contains(says), "{err}");
    }
}

/// The services reflection `version` lists at `addr`, sorted.
async fn listed(addr: SocketAddr, version: &str) -> Vec<String> {
    macro_rules! list {
        ($pb:ident) => {{
            use tonic_reflection::pb::$pb::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest,
                server_reflection_response::MessageResponse,
            };
            let mut client = ServerReflectionClient::new(common::channel(addr).await.unwrap());
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut replies = client
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .unwrap()
                .into_inner();
            let reply = replies.message().await.unwrap().unwrap();
            let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
                panic!("not a service list: {reply:?}");
            };
            list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }};
    }
    let mut names = match version {
        "v1" => list!(v1),
        _ => list!(v1alpha),
    };
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_what_each_port_serves_in_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let listening = Process::prepare(config(dir.path()))
        .unwrap()
        .bind()
        .await
        .unwrap();
    let (addr, admin) = (listening.addr(), listening.admin_addr().unwrap());
    let (stop, _reload, signals) = signals();
    let process = tokio::spawn(listening.run(signals));
    wait_for_epoch(addr, 1).await;
    let reflection = [
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    for version in ["v1", "v1alpha"] {
        let mut main = vec!["grpc.health.v1.Health", "pir.v1.Discovery"];
        main.extend(reflection);
        main.sort();
        assert_eq!(listed(addr, version).await, main, "{version}, main port");
        let mut on_admin = vec!["pir.v1.Admin"];
        on_admin.extend(reflection);
        on_admin.sort();
        assert_eq!(
            listed(admin, version).await,
            on_admin,
            "{version}, admin port"
        );
    }
    stop.send(()).unwrap();
    common::stopped(process).await;
}
