//! The serve process in-process: started on loopback ports from a config, reloaded through its
//! signal source and the Admin service, scraped, and stopped; and its start-up refusals.

mod common;

use std::{net::SocketAddr, path::Path, time::Duration};

use pir_core::Snapshot;
use pir_proto::v1::{
    GetConfigRequest, ReloadRequest, admin_client::AdminClient, discovery_client::DiscoveryClient,
};
use pir_server::{
    ServeOptions,
    process::{Process, ProcessError, ServeConfig, Signals, Step},
};

const TOKEN: &str = "0123456789abcdef-process";

fn snapshot(epoch: u64) -> Snapshot {
    common::bob_snapshot(&pir_core::testing::issuer(), epoch, epoch as u8)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A config serving `dir/db.pirsnap` (epoch 1) on free loopback ports, with the Admin service
/// and metrics.
fn config(dir: &Path) -> ServeConfig {
    let path = dir.join("db.pirsnap");
    snapshot(1).write(&path).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    ServeConfig {
        snapshot: path,
        listen: loopback(),
        options: ServeOptions::default(),
        dp_pub: None,
        admin_listen: loopback(),
        admin_token_file: Some(token),
        metrics_listen: Some(loopback()),
        tls: None,
        plaintext: false,
    }
}

async fn epoch(addr: SocketAddr) -> Option<u64> {
    let mut rpc = DiscoveryClient::connect(format!("http://{addr}"))
        .await
        .ok()?;
    Some(
        rpc.get_config(GetConfigRequest {})
            .await
            .ok()?
            .into_inner()
            .epoch,
    )
}

async fn wait_for_epoch(addr: SocketAddr, want: u64) {
    for _ in 0..200 {
        if epoch(addr).await == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("epoch {want} never served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_reloads_and_stops_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let listening = Process::load(config).unwrap().bind().await.unwrap();
    let addr = listening.addr();
    let admin = listening.admin_addr().expect("admin runs with a token");
    let metrics = listening.metrics_addr().expect("metrics asked for");
    assert_ne!(addr.port(), 0, "the bound port, not the one asked for");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (reload, reloads) = tokio::sync::mpsc::channel(1);
    let signals = Signals::new(
        async {
            let _ = stopped.await;
        },
        reloads,
    );
    let process = tokio::spawn(listening.run(signals));
    wait_for_epoch(addr, 1).await;

    // A reload request (SIGHUP in production) reads the file the process was started with.
    snapshot(2).write(&dir.path().join("db.pirsnap")).unwrap();
    reload.send(()).await.unwrap();
    wait_for_epoch(addr, 2).await;

    // The Admin service reloads another file, with the token.
    let other = dir.path().join("other.pirsnap");
    snapshot(3).write(&other).unwrap();
    let mut client = AdminClient::connect(format!("http://{admin}"))
        .await
        .unwrap();
    let mut req = tonic::Request::new(ReloadRequest {
        path: other.display().to_string(),
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let reply = client.reload(req).await.unwrap().into_inner();
    assert_eq!((reply.previous_epoch, reply.epoch), (2, 3));

    // The metrics endpoint follows.
    let text = common::scrape_metrics(metrics).await;
    assert!(text.contains("pir_snapshot_epoch 3"), "{text}");

    // Stop: every task ends and the process returns cleanly.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), process)
        .await
        .expect("the process stops")
        .unwrap()
        .unwrap();
    assert_eq!(epoch(addr).await, None, "nothing listens any more");
}

#[test]
fn start_up_refusals_are_typed() {
    let dir = tempfile::tempdir().unwrap();

    let public = ServeConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..config(dir.path())
    };
    let err = Process::load(public.clone()).err().unwrap();
    assert!(matches!(err, ProcessError::NotLoopback { .. }), "{err}");
    assert!(
        err.to_string()
            .ends_with("give --tls-cert and --tls-key, or --plaintext to serve without TLS"),
        "{err}"
    );
    assert!(
        Process::load(ServeConfig {
            plaintext: true,
            ..public
        })
        .is_ok(),
        "--plaintext allows it"
    );

    let short = dir.path().join("short");
    std::fs::write(&short, "  too short  \n").unwrap();
    let err = Process::load(ServeConfig {
        admin_token_file: Some(short),
        ..config(dir.path())
    })
    .err()
    .unwrap();
    assert!(matches!(err, ProcessError::AdminTokenTooShort), "{err}");
    assert_eq!(
        err.to_string(),
        "the admin token must be at least 16 characters"
    );

    let missing = dir.path().join("missing");
    let err = Process::load(ServeConfig {
        admin_token_file: Some(missing.clone()),
        ..config(dir.path())
    })
    .err()
    .unwrap();
    assert!(
        matches!(&err, ProcessError::Io { step: Step::Reading(p), .. } if *p == missing),
        "{err}"
    );

    let err = Process::load(ServeConfig {
        snapshot: missing,
        ..config(dir.path())
    })
    .err()
    .unwrap();
    assert!(matches!(err, ProcessError::Server(_)), "{err}");
}
