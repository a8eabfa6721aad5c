//! The real server on a loopback port, spoken to over gRPC: every lookup's OPRF step goes through
//! its `Discovery/Evaluate`.

mod common;

use pir_core::{Cpi, LookupClient, SchemeParams, Snapshot};
use pir_proto::{
    REASON_KEY, REASON_STALE_EPOCH, REASON_UNKNOWN_KEY,
    v1::{QueryRequest, RegisterKeysRequest, discovery_client::DiscoveryClient},
};
use pir_server::{RunningServer, ServeOptions};
use tonic::{Code, transport::Channel};

use common::{connect, register};

const NOW: u64 = 1_800_000_000;

fn snapshot(epoch: u64, msp_for_bob: &str) -> Snapshot {
    let m = common::forever;
    let mappings = vec![
        m("tel:+14155550100", "chat.example"),
        m("tel:+14155550100", "talk.example"),
        m("mailto:bob@example.org", msp_for_bob),
    ];
    common::small_snapshot(mappings, epoch, epoch as u8)
}

async fn start(opts: ServeOptions) -> RunningServer {
    common::start_on(snapshot(1, "chat.example"), opts).await
}

async fn lookup(
    rpc: &mut DiscoveryClient<Channel>,
    client: &LookupClient,
    key_id: &[u8],
    cpi: &str,
) -> Vec<String> {
    let evaluated = common::evaluate(rpc, client, &[Cpi::parse(cpi).unwrap()]).await;
    let pending = client.query(&evaluated[0]).unwrap();
    assert_eq!(key_id, client.keys().unwrap().id().0);
    let request = QueryRequest::authenticated(
        client.keys().unwrap(),
        client.config().epoch(),
        vec![pending.query().to_vec()],
    );
    let response = rpc.query(request).await.unwrap().into_inner();
    assert_eq!(response.answers.len(), 1);
    let result = client.decode(pending, &response.answers[0], NOW).unwrap();
    let mut msps: Vec<String> = result.msps().into_iter().map(String::from).collect();
    msps.sort();
    msps
}

fn reason(status: &tonic::Status) -> Option<&str> {
    status
        .metadata()
        .get(REASON_KEY)
        .and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_over_grpc_and_every_refusal_has_its_code() {
    let server = start(ServeOptions {
        max_queries_per_request: 2,
        ..ServeOptions::default()
    })
    .await;
    let mut rpc = connect(&server).await;
    let (client, key_id) = register(&mut rpc).await;

    assert_eq!(
        lookup(&mut rpc, &client, &key_id, "tel:+14155550100").await,
        ["chat.example", "talk.example"]
    );
    assert_eq!(
        lookup(&mut rpc, &client, &key_id, "mailto:bob@example.org").await,
        ["chat.example"]
    );
    assert!(
        lookup(&mut rpc, &client, &key_id, "mailto:nobody@example.org")
            .await
            .is_empty()
    );

    // The CPIs the refusals and the batch below need, evaluated in batches of the server's
    // limit of two.
    let cpi = |c: &str| Cpi::parse(c).unwrap();
    let pair = [cpi("tel:+14155550100"), cpi("mailto:x@example.org")];
    let [alice, absent]: [_; 2] = common::evaluate(&mut rpc, &client, &pair)
        .await
        .try_into()
        .unwrap();
    let bob = common::evaluate(&mut rpc, &client, &[cpi("mailto:bob@example.org")])
        .await
        .remove(0);
    let good = client.query(&alice).unwrap().query().to_vec();
    // Authenticated when made with the client's own key id.
    let request = |queries: Vec<Vec<u8>>, epoch: u64, key_id: &[u8]| {
        let mut req = QueryRequest {
            key_id: key_id.to_vec(),
            epoch,
            queries,
            ..QueryRequest::default()
        };
        if key_id == client.keys().unwrap().id().0 {
            req.authenticate(client.keys().unwrap());
        }
        req
    };

    // Malformed query bytes: INVALID_ARGUMENT, and the server keeps serving.
    for bad in [vec![1u8; 10], good[..good.len() - 8].to_vec(), {
        let mut q = good.clone();
        let n = q.len();
        q[n - 8..].copy_from_slice(&u64::MAX.to_le_bytes());
        q
    }] {
        let err = rpc.query(request(vec![bad], 1, &key_id)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }
    let err = rpc.query(request(vec![], 1, &key_id)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = rpc
        .query(request(vec![good.clone()], 1, &[0; 5]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = rpc
        .register_keys(RegisterKeysRequest {
            public_keys: vec![0; 100],
            ..RegisterKeysRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Unknown key and stale epoch: FAILED_PRECONDITION with a machine-readable reason.
    let err = rpc
        .query(request(vec![good.clone()], 1, &[7; 32]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), Some(REASON_UNKNOWN_KEY));
    let err = rpc
        .query(request(vec![good.clone()], 99, &key_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), Some(REASON_STALE_EPOCH));

    // Too many queries in one request: RESOURCE_EXHAUSTED.
    let err = rpc
        .query(request(vec![good.clone(); 3], 1, &key_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);

    // A batch answers in order.
    let absent = client.query(&absent).unwrap();
    let bob = client.query(&bob).unwrap();
    let answers = rpc
        .query(request(
            vec![absent.query().to_vec(), bob.query().to_vec()],
            1,
            &key_id,
        ))
        .await
        .unwrap()
        .into_inner()
        .answers;
    assert!(!client.decode(absent, &answers[0], NOW).unwrap().found());
    assert!(client.decode(bob, &answers[1], NOW).unwrap().found());

    // Still serving after all of the above.
    assert_eq!(
        lookup(&mut rpc, &client, &key_id, "tel:+14155550100").await,
        ["chat.example", "talk.example"]
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_is_idempotent_and_eviction_is_bounded_by_memory() {
    let one_key = {
        let sizes = SchemeParams::danger_test_only_small()
            .message_sizes()
            .unwrap();
        pir_server::key_cache_cost(sizes.public_keys)
    };
    // Room for one key set only.
    let server = start(ServeOptions {
        key_cache_bytes: one_key + one_key / 2,
        ..ServeOptions::default()
    })
    .await;
    let mut rpc = connect(&server).await;
    let (a, a_id) = register(&mut rpc).await;
    let again = rpc
        .register_keys(RegisterKeysRequest::for_keys(a.keys().unwrap()))
        .await
        .unwrap()
        .into_inner()
        .key_id;
    assert_eq!(again, a_id);
    assert_eq!(server.service().registered_keys(), 1);

    let (b, b_id) = register(&mut rpc).await;
    assert_eq!(server.service().registered_keys(), 1, "a was evicted");
    assert!(server.service().key_cache_bytes() <= one_key + one_key / 2);
    assert_eq!(
        lookup(&mut rpc, &b, &b_id, "mailto:bob@example.org").await,
        ["chat.example"]
    );
    // a's keys are gone, so its OPRF step is done in process (an Evaluate would be refused
    // as unknown-key too).
    let q = a
        .query(&common::evaluated("mailto:bob@example.org"))
        .unwrap();
    let mut request = QueryRequest {
        epoch: 1,
        queries: vec![q.query().to_vec()],
        ..QueryRequest::default()
    };
    request.authenticate(a.keys().unwrap());
    assert_eq!(request.key_id, a_id);
    let err = rpc.query(request).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(reason(&err), Some(REASON_UNKNOWN_KEY));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let server = start(ServeOptions::default()).await;
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "pir.v1.Discovery".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"pir.v1.Discovery".to_string()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    server.stop().await.unwrap();
}
