//! Lookups on keyword layout v3 (every CPI keyed by the DP's VOPRF, placed by the choice table) through the real client and
//! server on loopback ports, from the library and from the `pir-client` CLI.
//!
//! What each test shows: a lookup returns exactly the signed mappings put in (several MSPs for
//! one CPI), leaves out those outside their validity and counts them, reports an opted-out CPI
//! as such (text and `--json`) and an absent one as not found, the same results an in-process
//! lookup of the same snapshot gives; and the roles split: a PIR host without the OPRF key
//! plus the DP's evaluator (`ClientOptions::evaluator`, `--evaluator`) give the same results,
//! while the key-less host alone tells the user to give `--evaluator`.

use std::{net::SocketAddr, path::Path, process::Output};

use pir_client::{ClientError, ClientOptions, LookupOutcome, PirClient};
use pir_core::{
    BuildOptions, Cpi, LookupResult, Mapping, Snapshot,
    identity::OptOut,
    oprf::OprfKey,
    testing::{build_records, issuer, mapping_valid, oprf_key, small_scheme, trust},
};
use pir_server::{RunningServer, ServeOptions};
use serde_json::Value;

// ------------------------------------------------------------------------------ the fixtures

/// Three MSPs, one with a PSI and a context.
const ALICE: &str = "tel:+14155550100";
/// One MSP.
const BOB: &str = "mailto:bob@example.org";
/// One valid mapping, one expired and one not valid yet.
const CAROL: &str = "mailto:carol@example.com";
/// Opted out (a mapping was given for it too: an opted-out CPI is stored with its opt-out only).
const DAVE: &str = "tel:+14155550142";
/// In no statement.
const NOBODY: &str = "tel:+14155550199";

const ALL: [&str; 5] = [ALICE, BOB, CAROL, DAVE, NOBODY];

fn cpi(s: &str) -> Cpi {
    Cpi::parse(s).unwrap()
}

/// When the fixture snapshot was built: an hour ago, so that a mapping that expired half an
/// hour ago is still in it (a build drops what has expired by its own time), while lookups,
/// which check validity against the real clock, leave it out.
fn built_at() -> u64 {
    pir_core::unix_now() - 3600
}

fn forever(cpi: &str, msp: &str) -> Mapping {
    mapping_valid(cpi, msp, None, None, (0, u64::MAX), None)
}

/// The fixture's mappings, in input order.
fn mappings() -> Vec<Mapping> {
    let now = pir_core::unix_now();
    vec![
        mapping_valid(
            ALICE,
            "chat.example",
            Some("@alice:chat.example"),
            Some("work"),
            (0, u64::MAX),
            None,
        ),
        forever(ALICE, "talk.example"),
        forever(ALICE, "ring.example"),
        forever(BOB, "chat.example"),
        forever(CAROL, "chat.example"),
        mapping_valid(CAROL, "mail.example", None, None, (0, now - 1800), None),
        mapping_valid(
            CAROL,
            "ring.example",
            None,
            None,
            (now + 365 * 86_400, u64::MAX),
            None,
        ),
        forever(DAVE, "chat.example"),
    ]
}

/// Dave's opt-out, valid for ever.
fn dave_opts_out() -> OptOut {
    OptOut::sign(cpi(DAVE), 0, u64::MAX, &issuer()).unwrap()
}

fn build_options() -> BuildOptions {
    BuildOptions {
        epoch: 1,
        now: built_at(),
        salt: Some([6; 32]),
        scheme: Some(small_scheme().into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    }
}

/// The fixture snapshot, keyed by the fixture OPRF key. The same every time it is built.
fn snapshot() -> Snapshot {
    build_records(mappings(), vec![dave_opts_out()], &build_options())
}

/// The same mappings keyed by another OPRF key: another DP's snapshot.
fn foreign_snapshot(key: &OprfKey) -> Snapshot {
    Snapshot::build(mappings(), &trust(), key, &build_options())
        .unwrap()
        .0
}

fn stranger_oprf_key() -> OprfKey {
    OprfKey::derive(&[0x33; 32], b"another DP's OPRF key").unwrap()
}

/// A server of `snapshot` on a free loopback port, answering evaluations with `oprf_key`.
async fn start(snapshot: Snapshot, oprf_key: Option<OprfKey>) -> RunningServer {
    start_with(snapshot, ServeOptions::default(), oprf_key).await
}

async fn start_with(
    snapshot: Snapshot,
    options: ServeOptions,
    oprf_key: Option<OprfKey>,
) -> RunningServer {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(snapshot, addr, options, oprf_key)
        .await
        .unwrap()
}

/// Test shapes are not vetted presets.
fn options() -> ClientOptions {
    ClientOptions::new(trust()).allowing_custom_params()
}

/// [`options`] with the DP's evaluator at `url`.
fn with_evaluator(url: &str) -> ClientOptions {
    ClientOptions {
        evaluator: Some(url.to_owned()),
        ..options()
    }
}

/// Every CPI of [`ALL`] looked up in one batch; each must succeed.
async fn look_up_all(client: &mut PirClient) -> Vec<LookupOutcome> {
    let cpis: Vec<Cpi> = ALL.into_iter().map(cpi).collect();
    client
        .lookup_many(&cpis)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

fn results(outcomes: &[LookupOutcome]) -> Vec<LookupResult> {
    outcomes.iter().map(|o| o.result.clone()).collect()
}

/// A server's counter, from its metrics text.
fn counter(server: &RunningServer, name: &str) -> u64 {
    let text = server.service().metrics_text();
    let line = text
        .lines()
        .find(|l| l.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in the metrics"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

// ------------------------------------------------------------------------------- the CLI

/// `pir-client lookup` with `args`, trusting the fixture issuer (its public key written to
/// `dir`), on a blocking thread (the servers run on this test's runtime).
async fn cli_lookup(dir: &Path, args: Vec<String>) -> Output {
    let trust_file = dir.join("issuer.pub");
    std::fs::write(&trust_file, issuer().to_public_text()).unwrap();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pir-client"))
            .arg("lookup")
            .arg("--trust")
            .arg(&trust_file)
            .args(["--allow-custom-params", "--timeout", "60"])
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(server: &str, evaluator: Option<&str>, json: bool, cpis: &[&str]) -> Vec<String> {
    let mut v = vec!["--server".to_owned(), server.to_owned()];
    if let Some(evaluator) = evaluator {
        v.extend(["--evaluator".to_owned(), evaluator.to_owned()]);
    }
    if json {
        v.push("--json".to_owned());
    }
    v.extend(cpis.iter().map(|c| (*c).to_owned()));
    v
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// `lookup --json` lines without what changes from run to run (bytes, time).
fn json_lines(output: &Output) -> Vec<Value> {
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    text(&output.stdout)
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            let object = v.as_object_mut().unwrap();
            for key in ["bytes_sent", "bytes_received", "millis"] {
                assert!(object.remove(key).is_some(), "{key} in {line}");
            }
            v
        })
        .collect()
}

// ---------------------------------------------------------------------------------- tests

/// Through the real client and server, each CPI gets exactly what was signed for it: Alice her
/// three mappings (with PSI and context), Bob his one, Carol her one valid mapping with the
/// expired and the not-yet-valid ones counted, Dave his opt-out and none of his mappings,
/// nobody nothing. The results are those of an in-process lookup of the same snapshot, and
/// looking CPIs up one by one gives the same as in one batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_return_the_signed_mappings_opt_outs_and_absences() {
    let server = start(snapshot(), Some(oprf_key())).await;
    let mut client = PirClient::connect(&server.url(), options()).await.unwrap();
    let outcomes = look_up_all(&mut client).await;
    let [alice, bob, carol, dave, nobody] = &results(&outcomes)[..] else {
        panic!("five outcomes");
    };
    let input = mappings();

    // Several MSPs: the signed mappings themselves, PSI and context included.
    let mut got = alice.mappings.clone();
    got.sort_by(|a, b| a.fields.msp.cmp(&b.fields.msp));
    assert_eq!(got, [input[0].clone(), input[2].clone(), input[1].clone()]);
    assert_eq!(got[0].fields.psi.as_deref(), Some("@alice:chat.example"));
    assert_eq!(got[0].fields.context.as_deref(), Some("work"));
    assert!(!alice.opted_out() && alice.outside_validity == 0);
    assert_eq!(bob.mappings, [input[3].clone()]);

    // Outside validity: left out and counted.
    assert_eq!(carol.mappings, [input[4].clone()]);
    assert_eq!(carol.outside_validity, 2);

    // Opted out: the opt-out as signed, no mapping, not "found".
    assert!(dave.opted_out() && !dave.found());
    assert_eq!(dave.opt_out, Some(dave_opts_out()));
    assert!(dave.mappings.is_empty());
    assert_eq!(dave.outside_validity, 0);

    // Absent.
    assert!(!nobody.found() && !nobody.opted_out());
    assert_eq!(nobody.outside_validity, 0);
    assert!(nobody.untrusted.is_empty());

    // What an in-process lookup of the same snapshot (no gRPC, no server) finds.
    let local = snapshot();
    let now = pir_core::unix_now();
    for (result, name) in results(&outcomes).iter().zip(ALL) {
        let expected = pir_core::testing::lookup_result(&local, trust(), name, now).unwrap();
        assert_eq!(*result, expected, "{name}");
    }

    // Every lookup of the batch costs the same bytes (its share of the one evaluation, its
    // query and answer); one by one, the results are the same, and so are the costs.
    let cost = |o: &LookupOutcome| (o.bytes_sent, o.bytes_received);
    assert!(outcomes.iter().all(|o| cost(o) == cost(&outcomes[0])));
    let mut single_costs = Vec::new();
    for (outcome, name) in outcomes.iter().zip(ALL) {
        let single = client.lookup(&cpi(name)).await.unwrap();
        assert_eq!(single.result, outcome.result, "{name}");
        single_costs.push(cost(&single));
    }
    assert!(single_costs.iter().all(|c| *c == single_costs[0]));
    server.stop().await.unwrap();
}

/// The CLI shows each kind of answer: mappings, the ignored ones, the opt-out with its issuer,
/// not found; and in `--json`, `opted_out` and `opt_out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_mappings_opt_outs_and_absences() {
    let server = start(snapshot(), Some(oprf_key())).await;
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();

    let output = cli_lookup(dir.path(), args(&url, None, false, &ALL)).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let issuer_id = issuer().id().to_string();
    for expected in [
        format!("{ALICE}: 3 mappings ("),
        "  chat.example  psi @alice:chat.example  context work  valid".to_owned(),
        format!("{BOB}: 1 mapping ("),
        format!("{CAROL}: 1 mapping ("),
        "  (2 signed mapping(s) ignored: expired or not yet valid)".to_owned(),
        format!("{DAVE}: opted out of discovery, signed by issuer {issuer_id} (valid "),
        format!("{NOBODY}: not found ("),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains(&format!("{DAVE}: not found")), "{stdout}");

    let lines = json_lines(&cli_lookup(dir.path(), args(&url, None, true, &ALL)).await);
    let by_cpi = |c: &str| lines.iter().find(|l| l["cpi"] == c).unwrap().clone();
    let dave = by_cpi(DAVE);
    assert_eq!(dave["opted_out"], Value::Bool(true));
    assert_eq!(dave["found"], Value::Bool(false));
    assert_eq!(dave["mappings"], serde_json::json!([]));
    assert_eq!(
        dave["opt_out"],
        serde_json::json!({"issuer": issuer_id, "not_before": 0, "not_after": u64::MAX})
    );
    for name in [ALICE, BOB, CAROL, NOBODY] {
        let line = by_cpi(name);
        assert_eq!(line["opted_out"], Value::Bool(false), "{line}");
        assert_eq!(line["opt_out"], Value::Null, "{line}");
        assert_eq!(line["found"], Value::Bool(name != NOBODY), "{line}");
    }
    assert_eq!(by_cpi(ALICE)["mappings"].as_array().unwrap().len(), 3);
    assert_eq!(by_cpi(CAROL)["outside_validity"], 2);
    server.stop().await.unwrap();
}

/// A PIR host without the OPRF key and the DP's evaluator, both serving the snapshot: with
/// `ClientOptions::evaluator` the client registers its keys with both, evaluates at the
/// evaluator only and queries the host only, and gets the results a server holding both roles
/// gives. Each side heals its own evicted keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_less_host_with_an_evaluator_gives_the_same_results() {
    let host = start(snapshot(), None).await;
    let evaluator = start(snapshot(), Some(oprf_key())).await;
    let mut split = PirClient::connect(&host.url(), with_evaluator(&evaluator.url()))
        .await
        .unwrap();
    assert!(host.service().has_keys(&split.key_id().unwrap()));
    assert!(evaluator.service().has_keys(&split.key_id().unwrap()));
    let outcomes = look_up_all(&mut split).await;
    // Evaluations at the evaluator, queries at the host, and nothing else.
    assert_eq!(
        counter(&evaluator, "pir_evaluations_total"),
        ALL.len() as u64
    );
    assert_eq!(counter(&evaluator, "pir_lookups_total"), 0);
    assert_eq!(counter(&host, "pir_evaluations_total"), 0);
    assert_eq!(counter(&host, "pir_lookups_total"), ALL.len() as u64);

    // The evaluator serves the same snapshot and holds both roles: the reference.
    let mut whole = PirClient::connect(&evaluator.url(), options())
        .await
        .unwrap();
    assert_eq!(results(&outcomes), results(&look_up_all(&mut whole).await));

    // Evicted keys: at the evaluator the evaluation heals, at the host the query.
    evaluator.service().evict_all_keys();
    host.service().evict_all_keys();
    let healed = look_up_all(&mut split).await;
    assert_eq!(results(&healed), results(&outcomes));
    assert!(evaluator.service().has_keys(&split.key_id().unwrap()));
    assert!(host.service().has_keys(&split.key_id().unwrap()));
    host.stop().await.unwrap();
    evaluator.stop().await.unwrap();
}

/// Against the key-less host alone, every lookup fails with the host's UNIMPLEMENTED turned
/// into an error that names `--evaluator`, and no query is sent; an evaluator whose snapshot is
/// keyed by another OPRF key (another DP's) is refused at connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_less_host_alone_names_the_evaluator_option() {
    let host = start(snapshot(), None).await;
    let mut client = PirClient::connect(&host.url(), options()).await.unwrap();
    let cpis = [cpi(ALICE), cpi(NOBODY)];
    for (outcome, cpi) in client.lookup_many(&cpis).await.into_iter().zip(&cpis) {
        match outcome {
            Err(ClientError::BatchEvaluation { cpi: got, source }) => {
                assert_eq!(got, cpi.as_str());
                assert!(
                    matches!(*source, ClientError::NoEvaluator { .. }),
                    "{source}"
                );
                let reason = source.to_string();
                assert!(
                    reason.starts_with("the server answers no OPRF evaluations (")
                        && reason.ends_with("give --evaluator URL, the DP's evaluator"),
                    "{reason}"
                );
            }
            other => panic!("{cpi}: {other:?}"),
        }
    }
    assert_eq!(counter(&host, "pir_lookups_total"), 0);

    let stranger = stranger_oprf_key();
    let foreign = start(foreign_snapshot(&stranger), Some(stranger.clone())).await;
    let err = PirClient::connect(&host.url(), with_evaluator(&foreign.url()))
        .await
        .unwrap_err();
    let ClientError::BadConfig(message) = &err else {
        panic!("{err:?}");
    };
    assert!(
        message.contains(&stranger.public().to_string())
            && message.contains(&oprf_key().public().to_string())
            && message.ends_with("they are not the same DP's"),
        "{message}"
    );
    host.stop().await.unwrap();
    foreign.stop().await.unwrap();
}

/// The CLI in split roles: `--evaluator` against the key-less host prints what the server with
/// both roles prints; without it, each lookup fails (exit 1) with an error naming
/// `--evaluator`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_takes_an_evaluator() {
    let host = start(snapshot(), None).await;
    let evaluator = start(snapshot(), Some(oprf_key())).await;
    let dir = tempfile::tempdir().unwrap();
    let (host_url, evaluator_url) = (host.url(), evaluator.url());

    let split = cli_lookup(
        dir.path(),
        args(&host_url, Some(&evaluator_url), true, &ALL),
    )
    .await;
    let whole = cli_lookup(dir.path(), args(&evaluator_url, None, true, &ALL)).await;
    let split = json_lines(&split);
    assert_eq!(split.len(), ALL.len());
    assert_eq!(split, json_lines(&whole));
    assert_eq!(split[3]["opted_out"], Value::Bool(true));

    let alone = cli_lookup(dir.path(), args(&host_url, None, false, &[ALICE, NOBODY])).await;
    assert_eq!(alone.status.code(), Some(1));
    assert!(alone.stdout.is_empty());
    let stderr = text(&alone.stderr);
    for name in [ALICE, NOBODY] {
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&format!("error: lookup of {name}: ")))
            .unwrap_or_else(|| panic!("no error line for {name}:\n{stderr}"));
        assert!(line.contains("give --evaluator URL"), "{line}");
        // The CPI is named once.
        assert_eq!(line.matches(name).count(), 1, "{line}");
    }
    assert!(stderr.contains("error: 2 of 2 lookups failed"), "{stderr}");
    host.stop().await.unwrap();
    evaluator.stop().await.unwrap();
}

/// Evaluations are split by the evaluator's own batch limit, not the PIR host's: an evaluator
/// that takes one element a request still serves a batch of every CPI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_follow_the_evaluators_batch_limit() {
    let host = start(snapshot(), None).await;
    let one_at_a_time = ServeOptions {
        max_queries_per_request: 1,
        ..ServeOptions::default()
    };
    let evaluator = start_with(snapshot(), one_at_a_time, Some(oprf_key())).await;
    let mut split = PirClient::connect(&host.url(), with_evaluator(&evaluator.url()))
        .await
        .unwrap();
    let outcomes = look_up_all(&mut split).await;
    assert_eq!(outcomes.len(), ALL.len());
    assert_eq!(
        counter(&evaluator, "pir_evaluations_total"),
        ALL.len() as u64
    );
}
