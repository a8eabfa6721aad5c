//! Issue 15, item 3: limits an attacker cannot multiply cheaply. Per-peer limits by network
//! (an IPv6 /64) and through a trusted proxy's `x-forwarded-for`, global limits on
//! registrations and on key-cache evictions, tokens charged only once a slot is granted, and
//! the proof of possession on queries (the key id alone spends nothing).

mod common;

use std::time::Duration;

use pir_core::testing::{issuer, trust};
use pir_core::{ClientKeys, Cpi, LookupClient, SchemeParams, Snapshot};
use pir_proto::v1::{
    GetConfigRequest, QueryRequest, RegisterKeysRequest, discovery_client::DiscoveryClient,
};
use pir_server::{IpNet, RateLimit, RunningServer, ServeOptions};
use tonic::{Code, Request, transport::Channel};

use common::{connect as rpc, unlimited};

fn snapshot() -> Snapshot {
    common::bob_snapshot(&issuer(), 1, 1)
}

/// A server of [`snapshot`] under `opts`.
async fn start(opts: ServeOptions) -> RunningServer {
    common::start_on(snapshot(), opts).await
}

/// A limit of `burst` at once and then, within a test, no more (one token an hour).
fn at_most(burst: u32) -> Option<RateLimit> {
    Some(RateLimit { burst, per_hour: 1 })
}

fn loopback_proxy() -> Vec<IpNet> {
    vec!["127.0.0.1/32".parse().unwrap(), "::1/128".parse().unwrap()]
}

async fn lookup_client(rpc: &mut DiscoveryClient<Channel>) -> LookupClient {
    let config = rpc
        .get_config(GetConfigRequest::default())
        .await
        .unwrap()
        .into_inner();
    let config = pir_proto::ConfigIn::try_from(config).unwrap();
    LookupClient::new(config.lookup().clone(), trust()).unwrap()
}

fn keys() -> ClientKeys {
    ClientKeys::generate(&SchemeParams::danger_test_only_small()).unwrap()
}

/// A query for Bob, its OPRF step done in process (these limits are the queries').
fn bob(client: &LookupClient) -> Vec<u8> {
    client
        .query(&pir_core::testing::evaluate(
            &Cpi::parse("mailto:bob@example.org").unwrap(),
        ))
        .unwrap()
        .query()
        .to_vec()
}

/// An authenticated request of `keys` for `queries`.
fn query(keys: &ClientKeys, queries: Vec<Vec<u8>>) -> QueryRequest {
    QueryRequest::authenticated(keys, 1, queries)
}

/// `message` as if forwarded by a proxy for `client`.
fn from<T>(client: &str, message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut()
        .insert("x-forwarded-for", client.parse().unwrap());
    req
}

fn metric(server: &RunningServer, line: &str) -> f64 {
    let text = server.service().metrics_text();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_behind_a_trusted_proxy_are_counted_by_their_slash_64() {
    let server = start(ServeOptions {
        per_peer_rate: at_most(2),
        trusted_proxies: loopback_proxy(),
        ..unlimited()
    })
    .await;
    let mut rpc = rpc(&server).await;
    let client = lookup_client(&mut rpc).await;
    rpc.register_keys(from(
        "2001:db8:1:2::1",
        RegisterKeysRequest::for_keys(client.keys().unwrap()),
    ))
    .await
    .unwrap();
    let q = || query(client.keys().unwrap(), vec![bob(&client)]);
    // Two addresses of one /64 share its budget of two; a third address of it is refused.
    rpc.query(from("2001:db8:1:2::1", q())).await.unwrap();
    rpc.query(from("2001:db8:1:2::ffff", q())).await.unwrap();
    let err = rpc
        .query(from("2001:db8:1:2:aaaa::3", q()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("peer"), "{}", err.message());
    // The next /64 has its own, and so does the proxy's own address.
    rpc.query(from("2001:db8:1:3::1", q())).await.unwrap();
    rpc.query(from("2001:db8:1:3::2", q())).await.unwrap();
    rpc.query(q()).await.unwrap();
    // A client cannot escape by forging hops left of the one the proxy appended.
    let err = rpc
        .query(from("2001:db8:9::1, 2001:db8:1:2::7", q()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(
        metric(&server, "pir_limit_refusals_total{limit=\"peer_rate\"}"),
        2.0
    );
    server.stop().await.unwrap();

    // Without --trusted-proxy the header is the client's word: ignored, every request is the
    // loopback peer's, whatever it claims.
    let server = start(ServeOptions {
        per_peer_rate: at_most(2),
        ..unlimited()
    })
    .await;
    let mut rpc = common::connect(&server).await;
    let client = lookup_client(&mut rpc).await;
    rpc.register_keys(RegisterKeysRequest::for_keys(client.keys().unwrap()))
        .await
        .unwrap();
    let q = || query(client.keys().unwrap(), vec![bob(&client)]);
    rpc.query(from("2001:db8:1::1", q())).await.unwrap();
    rpc.query(from("2001:db8:2::1", q())).await.unwrap();
    let err = rpc.query(from("2001:db8:3::1", q())).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_for_the_whole_server() {
    let server = start(ServeOptions {
        // Each address may register once; the server, three a second.
        per_peer_registrations: at_most(1),
        global_registrations_per_second: Some(3),
        trusted_proxies: loopback_proxy(),
        ..unlimited()
    })
    .await;
    let mut rpc = rpc(&server).await;
    let all: Vec<ClientKeys> = (0..4).map(|_| keys()).collect();
    for (i, k) in all.iter().take(3).enumerate() {
        rpc.register_keys(from(
            &format!("198.51.100.{i}"),
            RegisterKeysRequest::for_keys(k),
        ))
        .await
        .unwrap();
    }
    // A fourth address, with its own per-peer budget, meets the server's.
    let err = rpc
        .register_keys(from("198.51.100.3", RegisterKeysRequest::for_keys(&all[3])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("all peers"), "{}", err.message());
    // Registering known keys again costs nothing and is not refused.
    rpc.register_keys(from("198.51.100.0", RegisterKeysRequest::for_keys(&all[0])))
        .await
        .unwrap();
    // The per-peer limit is charged first (so that one peer over its own limit cannot drain
    // the server's): the refused address has spent its one registration.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = rpc
        .register_keys(from("198.51.100.3", RegisterKeysRequest::for_keys(&all[3])))
        .await
        .unwrap_err();
    assert!(err.message().contains("peer (registrations)"), "{err:?}");
    // A second later the server's bucket has refilled.
    rpc.register_keys(from("198.51.100.4", RegisterKeysRequest::for_keys(&all[3])))
        .await
        .unwrap();
    assert_eq!(server.service().registered_keys(), 4);
    assert_eq!(
        metric(
            &server,
            "pir_limit_refusals_total{limit=\"global_registration_rate\"}"
        ),
        1.0
    );
    server.stop().await.unwrap();
}

/// How many registrations, each from its own address, it takes to evict a client that has
/// just looked something up, from a full cache of `slots` entries: `None` if `attempts` are
/// not enough (the rest refused).
async fn registrations_to_evict(
    opts: ServeOptions,
    slots: u64,
    attempts: usize,
) -> (Option<usize>, RunningServer) {
    let one = pir_server::key_cache_cost(
        SchemeParams::danger_test_only_small()
            .message_sizes()
            .unwrap()
            .public_keys,
    );
    let server = start(ServeOptions {
        key_cache_bytes: slots * one + one / 2,
        per_peer_registrations: at_most(1),
        trusted_proxies: loopback_proxy(),
        ..opts
    })
    .await;
    let mut rpc = rpc(&server).await;
    // The cache full: others registered before the victim, and the victim just used its keys.
    for i in 0..slots - 1 {
        rpc.register_keys(from(
            &format!("203.0.113.{i}"),
            RegisterKeysRequest::for_keys(&keys()),
        ))
        .await
        .unwrap();
    }
    let victim = lookup_client(&mut rpc).await;
    rpc.register_keys(from(
        "192.0.2.1",
        RegisterKeysRequest::for_keys(victim.keys().unwrap()),
    ))
    .await
    .unwrap();
    rpc.query(from(
        "192.0.2.1",
        query(victim.keys().unwrap(), vec![bob(&victim)]),
    ))
    .await
    .unwrap();
    assert_eq!(server.service().registered_keys() as u64, slots);
    for n in 1..=attempts {
        let attacker = from(
            &format!("2001:db8:{n:x}::1"),
            RegisterKeysRequest::for_keys(&keys()),
        );
        match rpc.register_keys(attacker).await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("evictions"), "{}", e.message());
            }
        }
        if !server.service().has_keys(&victim.keys().unwrap().id()) {
            return (Some(n), server);
        }
    }
    (None, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_are_rationed_so_no_number_of_addresses_flushes_the_cache() {
    const SLOTS: u64 = 4;
    // Before: nothing but memory bounds evictions. As many registrations as the cache has
    // entries, from as many addresses, evict a client that has just looked something up.
    let (before, server) = registrations_to_evict(unlimited(), SLOTS, 12).await;
    assert_eq!(before, Some(SLOTS as usize));
    server.stop().await.unwrap();

    // After: two evictions a minute. The two oldest entries go; every later registration that
    // needs room is refused, from however many addresses, and the victim stays.
    let (after, server) = registrations_to_evict(
        ServeOptions {
            key_evictions_per_minute: Some(2),
            ..unlimited()
        },
        SLOTS,
        12,
    )
    .await;
    assert_eq!(after, None);
    assert_eq!(server.service().registered_keys() as u64, SLOTS);
    assert_eq!(
        metric(&server, "pir_limit_refusals_total{limit=\"eviction_rate\"}"),
        10.0
    );
    // Never an ordinary user's budget: the refusals are the server's, with a time to retry.
    let text = server.service().metrics_text();
    assert!(
        text.contains("pir_rejections_total{reason=\"rate_limited\"} 10"),
        "{text}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_as_overloaded_spends_no_tokens() {
    // 24 slots (queries) and 24 tokens per key.
    let server = start(ServeOptions {
        max_pending_answers: 24,
        per_key_rate: at_most(24),
        ..unlimited()
    })
    .await;
    let mut rpc = rpc(&server).await;
    let (blocker, user) = (lookup_client(&mut rpc).await, lookup_client(&mut rpc).await);
    for c in [&blocker, &user] {
        rpc.register_keys(RegisterKeysRequest::for_keys(c.keys().unwrap()))
            .await
            .unwrap();
    }
    // The blocker's 24 queries take every slot while they are answered.
    let slow = {
        let mut rpc = rpc.clone();
        let req = query(blocker.keys().unwrap(), vec![bob(&blocker); 24]);
        tokio::spawn(async move { rpc.query(req).await })
    };
    for _ in 0..2000 {
        if metric(&server, "pir_answers_in_progress") == 24.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Six requests of four queries: refused as overloaded, 24 queries that were not answered.
    let mut overloaded = 0;
    for _ in 0..6 {
        match rpc
            .query(query(user.keys().unwrap(), vec![bob(&user); 4]))
            .await
        {
            Err(e) if e.message().contains("overloaded") => overloaded += 1,
            other => panic!("expected overloaded: {other:?}"),
        }
    }
    assert_eq!(overloaded, 6);
    assert_eq!(slow.await.unwrap().unwrap().into_inner().answers.len(), 24);
    // The user's whole budget is still there: 24 queries, then none.
    for _ in 0..3 {
        let answers = rpc
            .query(query(user.keys().unwrap(), vec![bob(&user); 8]))
            .await
            .unwrap()
            .into_inner()
            .answers;
        assert_eq!(answers.len(), 8);
    }
    let err = rpc
        .query(query(user.keys().unwrap(), vec![bob(&user)]))
        .await
        .unwrap_err();
    assert!(err.message().contains("rate limit of this key"), "{err:?}");
    assert_eq!(
        metric(&server, "pir_limit_refusals_total{limit=\"pending\"}"),
        6.0
    );
    assert_eq!(metric(&server, "pir_answers_in_progress"), 0.0);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_need_the_mac_of_the_registered_mac_key() {
    let server = start(ServeOptions {
        per_key_rate: at_most(2),
        ..unlimited()
    })
    .await;
    let mut rpc = rpc(&server).await;
    let victim = lookup_client(&mut rpc).await;
    rpc.register_keys(RegisterKeysRequest::for_keys(victim.keys().unwrap()))
        .await
        .unwrap();
    let good = query(victim.keys().unwrap(), vec![bob(&victim)]);

    // Someone who saw the victim's key id (and even a whole request of the victim's).
    let stolen_id = victim.keys().unwrap().id().0.to_vec();
    let no_mac = QueryRequest {
        mac: Vec::new(),
        ..good.clone()
    };
    let err = rpc.query(no_mac).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("upgrade the client"), "{err:?}");
    assert!(err.metadata().get(pir_proto::REASON_KEY).is_none());
    let mut wrong = good.clone();
    wrong.mac[0] ^= 1;
    let mut own_key = query(&keys(), vec![bob(&victim)]);
    own_key.key_id = stolen_id.clone();
    let mut altered = good.clone();
    altered.queries = vec![bob(&victim)];
    let mut replayed_elsewhere = good.clone();
    replayed_elsewhere.queries.push(bob(&victim));
    for forged in [wrong, own_key, altered, replayed_elsewhere] {
        let err = rpc.query(forged).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(err.message().contains("mac does not verify"), "{err:?}");
    }
    let err = rpc
        .query(QueryRequest {
            mac: vec![0; 7],
            ..good.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Nor can the keys be registered again under a mac key of someone else's.
    let mut takeover = RegisterKeysRequest::for_keys(victim.keys().unwrap());
    takeover.query_mac_key = keys().query_mac_key().to_bytes().to_vec();
    let err = rpc.register_keys(takeover).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // An old client, without a mac key, is told to upgrade.
    let err = rpc
        .register_keys(RegisterKeysRequest {
            public_keys: keys().public_bytes().to_vec(),
            ..RegisterKeysRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("query_mac_key"), "{err:?}");

    // None of it spent the victim's budget of two.
    rpc.query(good.clone()).await.unwrap();
    rpc.query(query(victim.keys().unwrap(), vec![bob(&victim)]))
        .await
        .unwrap();
    let err = rpc.query(good).await.unwrap_err();
    assert!(err.message().contains("rate limit of this key"), "{err:?}");
    assert_eq!(
        metric(&server, "pir_limit_refusals_total{limit=\"query_mac\"}"),
        7.0
    );
    assert_eq!(
        metric(&server, "pir_rejections_total{reason=\"unauthenticated\"}"),
        5.0
    );
    server.stop().await.unwrap();
}
