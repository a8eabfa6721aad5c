//! Hot reload: atomic swaps under load, refusal of bad snapshots, the Admin RPC, SIGHUP.

mod common;

use std::{net::SocketAddr, path::Path, time::Duration};

use pir_client::{ClientOptions, PirClient};
use pir_core::testing::trust;
use pir_core::{Cpi, DpKey, DpKeys, Snapshot};
use pir_proto::v1::{ReloadRequest, admin_client::AdminClient};
use pir_server::{AdminToken, Reloader, RunningServer, ServeOptions};
use tonic::Code;

/// Alice is at chat.example in every epoch; Bob moves between MSPs with the epoch's parity.
fn bob_msp(epoch: u64) -> &'static str {
    if epoch.is_multiple_of(2) {
        "talk.example"
    } else {
        "ring.example"
    }
}

fn snapshot(epoch: u64) -> Snapshot {
    let m = common::forever;
    let mappings = vec![
        m("tel:+14155550100", "chat.example"),
        m("mailto:bob@example.org", bob_msp(epoch)),
    ];
    // A new salt each epoch: clients must re-encrypt for the new layout.
    common::small_snapshot(mappings, epoch, epoch as u8)
}

async fn start() -> RunningServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(
        snapshot(1),
        addr,
        ServeOptions::default(),
        Some(pir_core::testing::oprf_key()),
    )
    .await
    .unwrap()
}

fn write(dir: &Path, name: &str, s: &Snapshot) -> std::path::PathBuf {
    let p = dir.join(name);
    s.write(&p).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_concurrent_lookups_lose_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = start().await;
    let reloader = Reloader::new(
        server.service().clone(),
        dir.path().join("db.pirsnap"),
        None,
    );
    let url = server.url();

    let mut tasks = Vec::new();
    for _ in 0..3 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client =
                PirClient::connect(&url, ClientOptions::new(trust()).allowing_custom_params())
                    .await
                    .unwrap();
            let mut answers = Vec::new();
            for i in 0..8 {
                let cpi = if i % 2 == 0 {
                    "mailto:bob@example.org"
                } else {
                    "tel:+14155550100"
                };
                let outcome = client.lookup(&Cpi::parse(cpi).unwrap()).await.unwrap();
                let msps: Vec<String> = outcome
                    .result
                    .msps()
                    .into_iter()
                    .map(String::from)
                    .collect();
                answers.push((cpi, msps));
            }
            answers
        }));
    }
    for epoch in 2..=5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let path = write(dir.path(), &format!("e{epoch}.pirsnap"), &snapshot(epoch));
        let (_, now) = reloader.reload(Some(path)).await.unwrap();
        assert_eq!(now, epoch);
    }
    for task in tasks {
        for (cpi, msps) in task.await.unwrap() {
            if cpi == "tel:+14155550100" {
                assert_eq!(msps, ["chat.example"]);
            } else {
                // Correct for one epoch or the other, never empty or mixed.
                assert!(
                    msps == ["talk.example"] || msps == ["ring.example"],
                    "{msps:?}"
                );
            }
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_snapshots_are_refused_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = start().await;
    let dp = DpKey::from_seed(&[62; 32]);
    let dp_keys = DpKeys::parse(&dp.to_public_text()).unwrap();
    let reloader = Reloader::new(
        server.service().clone(),
        dir.path().join("db.pirsnap"),
        Some(dp_keys),
    );

    // Corrupt: one flipped byte near the end of the database.
    let path = write(dir.path(), "corrupt.pirsnap", &snapshot(2));
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    assert!(reloader.reload(Some(path)).await.is_err());
    // Missing.
    assert!(reloader.reload(None).await.is_err());
    // Intact but unsigned, while a DP signature is required.
    let unsigned = write(dir.path(), "unsigned.pirsnap", &snapshot(2));
    let err = reloader.reload(Some(unsigned)).await.unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");
    // Signed by another key.
    let mut other = snapshot(2);
    other.sign(&DpKey::from_seed(&[63; 32])).unwrap();
    let other = write(dir.path(), "other.pirsnap", &other);
    assert!(reloader.reload(Some(other)).await.is_err());
    assert_eq!(server.service().epoch(), 1);

    let mut client = PirClient::connect(
        &server.url(),
        ClientOptions::new(trust()).allowing_custom_params(),
    )
    .await
    .unwrap();
    let bob = Cpi::parse("mailto:bob@example.org").unwrap();
    let outcome = client.lookup(&bob).await.unwrap();
    assert_eq!(outcome.result.mappings[0].fields.msp, bob_msp(1));

    // Signed by the DP: accepted, and the client follows to the new epoch by itself.
    let mut signed = snapshot(2);
    signed.sign(&dp).unwrap();
    let signed = write(dir.path(), "signed.pirsnap", &signed);
    assert_eq!(reloader.reload(Some(signed)).await.unwrap(), (1, 2));
    let outcome = client.lookup(&bob).await.unwrap();
    assert_eq!(outcome.result.mappings[0].fields.msp, bob_msp(2));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start().await;
    let path = write(dir.path(), "db.pirsnap", &snapshot(2));
    let reloader = Reloader::new(server.service().clone(), path, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = listener.local_addr().unwrap();
    let token = "0123456789abcdef-token".to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    assert!(
        AdminToken::new("0123456789abcde".into()).is_none(),
        "too short"
    );
    let admin = tokio::spawn(pir_server::serve_admin(
        reloader,
        AdminToken::new(token.clone()).unwrap(),
        listener,
        async {
            let _ = rx.await;
        },
    ));
    let mut client = AdminClient::connect(format!("http://{admin_addr}"))
        .await
        .unwrap();

    for bad in [
        None,
        Some("Bearer wrong-token-wrong-token"),
        Some("0123456789abcdef-token"),
    ] {
        let mut req = tonic::Request::new(ReloadRequest::default());
        if let Some(v) = bad {
            req.metadata_mut()
                .insert("authorization", v.parse().unwrap());
        }
        let err = client.reload(req).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    assert_eq!(server.service().epoch(), 1);

    let mut req = tonic::Request::new(ReloadRequest::default());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let reply = client.reload(req).await.unwrap().into_inner();
    assert_eq!((reply.previous_epoch, reply.epoch), (1, 2));

    let mut req = tonic::Request::new(ReloadRequest {
        path: dir.path().join("absent.pirsnap").display().to_string(),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    assert!(client.reload(req).await.is_err());
    assert_eq!(server.service().epoch(), 2);

    let _ = tx.send(());
    admin.await.unwrap().unwrap();
    server.stop().await.unwrap();
}

/// The binary: SIGHUP reloads the file it was started with; SIGTERM stops it cleanly (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "db.pirsnap", &snapshot(1));
    let oprf = dir.path().join(common::OPRF_KEY_FILE);
    common::write_oprf_key(&oprf);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pir-server"))
        .args(["serve", "--snapshot"])
        .arg(&path)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--oprf-key")
        .arg(&oprf)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let epoch = || common::serving_epoch(url.clone());
    let wait_for = |want: u64| async move {
        for _ in 0..200 {
            if epoch().await == Some(want) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    assert!(wait_for(1).await, "server did not come up");

    write(dir.path(), "db.pirsnap", &snapshot(2));
    let pid = child.id().unwrap().to_string();
    let kill = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
    };
    assert!(kill("-HUP").success());
    assert!(wait_for(2).await, "SIGHUP did not reload");

    assert!(kill("-TERM").success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("server exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
