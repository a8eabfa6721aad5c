//! The key store (issue 13, part 4): registrations that survive a restart (the embedded store),
//! expire and are renewed, and are shared by replicas through a real Redis, which may go away
//! and come back. All on loopback; the Redis tests need `redis-server` (or `valkey-server`) on
//! PATH and fail, saying so, without it.

mod common;

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::redis::Redis;
use pir_core::LookupClient;
use pir_proto::v1::{RegisterKeysRequest, RenewKeysRequest, discovery_client::DiscoveryClient};
use pir_server::{
    KeyStoreSpec, RateLimit, RunningServer, ServeOptions,
    process::{Process, ServeConfig},
};
use tonic::{Code, transport::Channel};

const BOB: &str = "mailto:bob@example.org";

fn snapshot() -> pir_core::Snapshot {
    common::bob_snapshot(&pir_core::testing::issuer(), 1, 1)
}

fn with_store(key_store: KeyStoreSpec) -> ServeOptions {
    ServeOptions {
        key_store,
        ..common::unlimited()
    }
}

async fn start(opts: ServeOptions) -> (RunningServer, DiscoveryClient<Channel>) {
    let server = common::start_on(snapshot(), opts).await;
    let rpc = common::connect(&server).await;
    (server, rpc)
}

/// A lookup client for the server at `rpc` whose keys are not registered there.
async fn unregistered(rpc: &mut DiscoveryClient<Channel>) -> LookupClient {
    let config = common::config(rpc).await;
    LookupClient::new(config.lookup().clone(), pir_core::testing::trust()).unwrap()
}

fn metric(server: &RunningServer, line: &str) -> u64 {
    let text = server.service().metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

fn reason(status: &tonic::Status) -> Option<&str> {
    status
        .metadata()
        .get(pir_proto::REASON_KEY)
        .and_then(|v| v.to_str().ok())
}

fn assert_unknown_key(status: &tonic::Status) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        reason(status),
        Some(pir_proto::REASON_UNKNOWN_KEY),
        "{status:?}"
    );
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_survive_a_restart_on_the_same_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = KeyStoreSpec::File(dir.path().join("keys.redb"));
    let (server, mut rpc) = start(with_store(file.clone())).await;
    let (client, _) = common::register(&mut rpc).await;
    assert_eq!(
        common::try_lookup(&mut rpc, &client, BOB).await.unwrap(),
        ["chat.example"]
    );
    server.stop().await.unwrap();

    // A new process on the same file: the keys are served without being registered again.
    let (server, mut rpc) = start(with_store(file)).await;
    assert_eq!(server.service().registered_keys(), 0);
    assert_eq!(
        common::try_lookup(&mut rpc, &client, BOB).await.unwrap(),
        ["chat.example"]
    );
    assert_eq!(server.service().registered_keys(), 1);
    assert_eq!(
        metric(
            &server,
            "pir_key_store_operations_total{backend=\"embedded\",op=\"insert\"}"
        ),
        0,
        "nothing was registered with this process"
    );
    assert_eq!(
        metric(
            &server,
            "pir_key_cache_store_fetches_total{outcome=\"loaded\"}"
        ),
        1
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_expires_unless_renewed_and_renewing_takes_the_owners_mac() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ServeOptions {
        key_ttl: Duration::from_secs(3),
        ..with_store(KeyStoreSpec::File(dir.path().join("keys.redb")))
    };
    let (server, mut rpc) = start(opts).await;
    let client = unregistered(&mut rpc).await;
    let registered = rpc
        .register_keys(RegisterKeysRequest::for_keys(client.keys().unwrap()))
        .await
        .unwrap()
        .into_inner();
    let now = unix_now();
    assert!(
        (now + 2..=now + 3).contains(&registered.expires_at),
        "{registered:?}"
    );

    // Renewed twice over its lifetime, it lives on past its first expiry.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let renewed = rpc
            .renew_keys(RenewKeysRequest::authenticated(client.keys().unwrap()))
            .await
            .unwrap()
            .into_inner();
        assert!(renewed.expires_at >= unix_now() + 2, "{renewed:?}");
    }
    assert!(unix_now() >= registered.expires_at);
    assert_eq!(
        common::try_lookup(&mut rpc, &client, BOB).await.unwrap(),
        ["chat.example"]
    );

    // Renewing takes the MAC of the keys' owner.
    let mut forged = RenewKeysRequest::authenticated(client.keys().unwrap());
    forged.mac[0] ^= 1;
    let refused = rpc.renew_keys(forged).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // Not renewed: gone, from the cache as from the store, until registered again.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_unknown_key(
        &common::try_lookup(&mut rpc, &client, BOB)
            .await
            .unwrap_err(),
    );
    assert_unknown_key(
        &rpc.renew_keys(RenewKeysRequest::authenticated(client.keys().unwrap()))
            .await
            .unwrap_err(),
    );
    rpc.register_keys(RegisterKeysRequest::for_keys(client.keys().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        common::try_lookup(&mut rpc, &client, BOB).await.unwrap(),
        ["chat.example"]
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_registrations_through_redis_and_heal_when_it_restarts() {
    let mut redis = Redis::start().await;
    let shared = with_store(KeyStoreSpec::Redis(redis.url()));
    let (a, mut rpc_a) = start(shared.clone()).await;
    let (b, mut rpc_b) = start(shared.clone()).await;

    // Registered with one replica, looked up at the other with no registration there.
    let (client, _) = common::register(&mut rpc_a).await;
    assert_eq!(
        common::try_lookup(&mut rpc_b, &client, BOB).await.unwrap(),
        ["chat.example"]
    );
    assert_eq!(
        metric(&b, "pir_key_cache_store_fetches_total{outcome=\"loaded\"}"),
        1
    );
    assert_eq!(
        metric(
            &b,
            "pir_key_store_operations_total{backend=\"redis\",op=\"insert\"}"
        ),
        0
    );
    // Which replicas received RegisterKeys (answered or refused): A only.
    let register_ok = "pir_requests_total{method=\"RegisterKeys\",outcome=\"ok\"}";
    let register_refused = "pir_requests_total{method=\"RegisterKeys\",outcome=\"refused\"}";
    assert_eq!((metric(&a, register_ok), metric(&b, register_ok)), (1, 0));
    assert_eq!(
        metric(&b, "pir_requests_total{method=\"Query\",outcome=\"ok\"}"),
        1
    );
    // Registering again at the other replica renews, and keeps the first mac key.
    let other_mac = RegisterKeysRequest {
        query_mac_key: vec![7; 32],
        ..RegisterKeysRequest::for_keys(client.keys().unwrap())
    };
    assert_eq!(
        rpc_b.register_keys(other_mac).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(metric(&b, register_refused), 1);

    // Redis restarts empty: a replica that never held the keys says they are unknown (the
    // client registers again), and once registered again every answer is right.
    redis.restart().await;
    let (c, mut rpc_c) = start(shared).await;
    assert_unknown_key(
        &common::try_lookup(&mut rpc_c, &client, BOB)
            .await
            .unwrap_err(),
    );
    let registered = eventually(|| {
        let mut rpc = rpc_c.clone();
        let keys = RegisterKeysRequest::for_keys(client.keys().unwrap());
        async move { rpc.register_keys(keys).await.ok() }
    })
    .await
    .into_inner();
    assert!(registered.expires_at > unix_now());
    for rpc in [&mut rpc_a, &mut rpc_b, &mut rpc_c] {
        assert_eq!(
            common::try_lookup(rpc, &client, BOB).await.unwrap(),
            ["chat.example"]
        );
    }
    for server in [a, b, c] {
        server.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_registrations_are_unavailable_cached_clients_are_served_and_it_recovers() {
    let mut redis = Redis::start().await;
    let (server, mut rpc) = start(with_store(KeyStoreSpec::Redis(redis.url()))).await;
    let (cached, _) = common::register(&mut rpc).await;
    let newcomer = unregistered(&mut rpc).await;

    redis.stop();
    let started = std::time::Instant::now();
    let refused = rpc
        .register_keys(RegisterKeysRequest::for_keys(newcomer.keys().unwrap()))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("key store (redis) is unavailable"),
        "{}",
        refused.message()
    );
    // Keys in the cache keep working; keys it does not hold are unknown, not an error.
    assert_eq!(
        common::try_lookup(&mut rpc, &cached, BOB).await.unwrap(),
        ["chat.example"]
    );
    assert_unknown_key(
        &common::try_lookup(&mut rpc, &newcomer, BOB)
            .await
            .unwrap_err(),
    );
    assert!(
        metric(
            &server,
            "pir_key_store_errors_total{backend=\"redis\",op=\"insert\"}"
        ) >= 1
    );

    // Back: the server reconnects by itself.
    redis.restart().await;
    eventually(|| {
        let mut rpc = rpc.clone();
        let keys = RegisterKeysRequest::for_keys(newcomer.keys().unwrap());
        async move { rpc.register_keys(keys).await.ok() }
    })
    .await;
    assert_eq!(
        common::try_lookup(&mut rpc, &newcomer, BOB).await.unwrap(),
        ["chat.example"]
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_limits_are_shared_by_replicas_through_redis() {
    let redis = Redis::start().await;
    let opts = ServeOptions {
        per_peer_registrations: Some(RateLimit {
            burst: 2,
            per_hour: 1,
        }),
        ..with_store(KeyStoreSpec::Redis(redis.url()))
    };
    let (a, mut rpc_a) = start(opts.clone()).await;
    let (b, mut rpc_b) = start(opts).await;
    // Two registrations from this peer, one at each replica, use up its burst of two.
    unregistered_registers(&mut rpc_a).await.unwrap();
    unregistered_registers(&mut rpc_b).await.unwrap();
    for rpc in [&mut rpc_a, &mut rpc_b] {
        let refused = unregistered_registers(rpc).await.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("registrations"),
            "{}",
            refused.message()
        );
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

async fn unregistered_registers(rpc: &mut DiscoveryClient<Channel>) -> Result<(), tonic::Status> {
    let client = unregistered(rpc).await;
    rpc.register_keys(RegisterKeysRequest::for_keys(client.keys().unwrap()))
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_store_that_cannot_be_opened_is_refused_at_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let readable = dir.path().join("readable.redb");
    std::fs::write(&readable, b"").unwrap();
    std::fs::set_permissions(
        &readable,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    for (store, says) in [
        (KeyStoreSpec::Redis(format!("redis://{closed}/0")), "redis"),
        (KeyStoreSpec::File(readable.clone()), "group or others"),
        (
            KeyStoreSpec::File(dir.path().join("missing/dir/keys.redb")),
            "No such file",
        ),
    ] {
        let err = Process::prepare(serve_config(dir.path(), store))
            .unwrap()
            .bind()
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("--key-store "), "{err}");
        assert!(err.contains(says), "{err}");
    }
}

fn serve_config(dir: &Path, key_store: KeyStoreSpec) -> ServeConfig {
    let path = dir.join("db.pirsnap");
    snapshot().write(&path).unwrap();
    let loopback = "127.0.0.1:0".parse().unwrap();
    ServeConfig {
        snapshot: path,
        shards: None,
        listen: loopback,
        options: with_store(key_store),
        dp_pub: None,
        oprf_key: None,
        admin_listen: loopback,
        admin_token_file: None,
        metrics_listen: None,
        tls: None,
        plaintext: false,
        pid_file: None,
        shutdown_delay: Duration::ZERO,
    }
}

/// What `attempt` returns once it returns something, within 15 s.
async fn eventually<T, F: Future<Output = Option<T>>>(mut attempt: impl FnMut() -> F) -> T {
    for _ in 0..150 {
        if let Some(t) = attempt().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never happened within 15 s");
}
