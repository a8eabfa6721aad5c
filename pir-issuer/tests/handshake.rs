//! The whole of issue 16's flow, each part real: an ID prover on loopback sends its codes
//! through a real SMTP server (Python's aiosmtpd) and a real SMS webhook receiver; MSPs enroll
//! their users with the client library (`pir_client::enroll`), one with the user's
//! self-signature; the DP builds a snapshot from synthetic mappings plus the prover's delta
//! feed, serves it with the real server, and the real client looks the issued mappings up.
//! Then a revocation and a new enrollment reach the DP as the feed's new lines, through
//! `update`, and the lookups follow.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::http::StatusCode;
use common::{Seen, SmtpServer, quoted_printable, start_receiver};
use pir_client::{
    ClientOptions, PirClient,
    enroll::{ProverClient, ProverOptions},
};
use pir_core::{
    Cpi, IssuerKey, Snapshot, TrustStore,
    identity::{MspKey, UserKey},
    testing,
};
use pir_issuer::{
    IssuerConfig, Policy, RunningIssuer,
    sender::{CodeSender, Senders, SmtpSender, WebhookSender},
};
use pir_server::{RunningServer, ServeOptions};

const CHAT: &str = "chat.example";
const MAIL: &str = "mail.example";
const ALICE_TEL: &str = "tel:+1 415 555 0170";
const CAROL_TEL: &str = "tel:+14155550171";
const ALICE_MAIL: &str = "mailto:Alice@Example.org";
const BOB_MAIL: &str = "mailto:bob.new@example.org";

/// The leading digits of a notice's text: the code.
fn code_in(text: &str) -> String {
    let code: String = text.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "a code opens the message: {text:?}");
    code
}

/// The code of the `n`th SMS the webhook received (waiting a little for it).
async fn sms_code(seen: &Arc<Mutex<Vec<Seen>>>, n: usize, to: &str) -> String {
    for _ in 0..100 {
        if let Some(request) = seen.lock().unwrap().get(n) {
            assert_eq!(request.body["to"], to);
            assert_eq!(request.body["kind"], "code");
            return code_in(request.body["text"].as_str().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no SMS number {n}");
}

/// The code in the `n`th email the SMTP server received, checking its recipient.
fn mail_code(smtp: &SmtpServer, n: usize, to: &str) -> String {
    let message = smtp.messages(n + 1)[n].clone();
    assert!(
        common::header_value(&message, "To").unwrap().contains(to),
        "{message}"
    );
    let (_, body) = message
        .split_once("\r\n\r\n")
        .or_else(|| message.split_once("\n\n"))
        .unwrap();
    code_in(quoted_printable(body).trim_start())
}

struct Dp {
    dir: PathBuf,
    trust: TrustStore,
}

impl Dp {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn build(&self, input: &Path, out: &str) -> Snapshot {
        pir_dp::build(&pir_dp::BuildArgs {
            mappings: input.to_owned(),
            trust: self.path("trust.pub"),
            out: self.path(out),
            skip_invalid: false,
            epoch: Some(1),
            replaces: None,
            scheme: Some(testing::small_scheme().into()),
            engine: pir_core::Engine::Spiral,
            progress: false,
            dp_key: None,
            oprf_key: self.path("oprf.key"),
            fill_percent: None,
        })
        .unwrap();
        Snapshot::load(&self.path(out)).unwrap()
    }

    fn update(&self, base: &str, delta: &Path, out: &str) -> Snapshot {
        pir_dp::update(&pir_dp::UpdateArgs {
            snapshot: self.path(base),
            delta: delta.to_owned(),
            trust: self.path("trust.pub"),
            out: self.path(out),
            skip_invalid: false,
            epoch: Some(2),
            dp_key: None,
            full: false,
            oprf_key: self.path("oprf.key"),
        })
        .unwrap();
        Snapshot::load(&self.path(out)).unwrap()
    }
}

async fn serve(snapshot: Snapshot) -> RunningServer {
    RunningServer::start(
        snapshot,
        "127.0.0.1:0".parse().unwrap(),
        ServeOptions::default(),
        Some(testing::oprf_key()),
    )
    .await
    .unwrap()
}

/// Looks each CPI up through the real server and returns the MSPs found.
async fn lookup(server: &RunningServer, trust: &TrustStore, cpis: &[&str]) -> Vec<Vec<String>> {
    let mut client = PirClient::connect(
        &server.url(),
        ClientOptions::new(trust.clone()).allowing_custom_params(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    for cpi in cpis {
        let outcome = client.lookup(&Cpi::parse(cpi).unwrap()).await.unwrap();
        out.push(
            outcome
                .result
                .msps()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        );
    }
    out
}

fn feed_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolled_mappings_are_built_updated_and_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start();
    let (webhook, sms) = start_receiver(StatusCode::OK, false).await;

    // The prover, its MSPs registered.
    let issuer = IssuerKey::from_seed(&[42; 32]);
    let chat = MspKey::generate();
    let mail = MspKey::generate();
    std::fs::create_dir(dir.path().join("msps")).unwrap();
    for (name, key) in [(CHAT, &chat), (MAIL, &mail)] {
        std::fs::write(
            dir.path().join("msps").join(format!("{name}.pub")),
            key.to_public_text(),
        )
        .unwrap();
    }
    let feed = dir.path().join("feed.jsonl");
    let timeout = Duration::from_secs(10);
    let prover: RunningIssuer = pir_issuer::start(IssuerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        issuer_key: issuer.clone(),
        msp_keys: dir.path().join("msps"),
        state: dir.path().join("state.redb"),
        feed: feed.clone(),
        name: "Example Prover".into(),
        senders: Senders {
            email: Some(Arc::new(
                SmtpSender::from_url(&smtp.url(), "codes@prover.example", timeout).unwrap(),
            ) as Arc<dyn CodeSender>),
            phone: Some(Arc::new(
                WebhookSender::new(&format!("http://{webhook}/sms"), None, timeout).unwrap(),
            ) as Arc<dyn CodeSender>),
        },
        operator: None,
        policy: Policy::default(),
        tls: None,
        sweep_interval: Duration::from_secs(3600),
    })
    .await
    .unwrap();
    let msp_side = ProverClient::connect(
        &format!("http://{}", prover.addr()),
        &ProverOptions::default(),
    )
    .await
    .unwrap();

    // Alice's phone at chat.example, counter-signed by her own key; her email at
    // mail.example; Carol's phone at chat.example.
    let alice = UserKey::generate();
    let tel = Cpi::parse(ALICE_TEL).unwrap();
    let started = msp_side
        .start(
            CHAT,
            &chat,
            &tel,
            Some("@alice:chat.example"),
            Some("personal"),
            Some(&alice),
        )
        .await
        .unwrap();
    let code = sms_code(&sms, 0, "+14155550170").await;
    let issued = msp_side
        .complete(CHAT, &chat, &started, &code, Some(&alice))
        .await
        .unwrap();
    assert_eq!(issued.user.as_ref().unwrap().key, alice.public_bytes());

    let email = Cpi::parse(ALICE_MAIL).unwrap();
    let started = msp_side
        .start(MAIL, &mail, &email, None, None, None)
        .await
        .unwrap();
    let code = mail_code(&smtp, 0, "Alice@example.org");
    msp_side
        .complete(MAIL, &mail, &started, &code, None)
        .await
        .unwrap();

    let carol = Cpi::parse(CAROL_TEL).unwrap();
    let started = msp_side
        .start(CHAT, &chat, &carol, None, None, None)
        .await
        .unwrap();
    let code = sms_code(&sms, 1, "+14155550171").await;
    msp_side
        .complete(CHAT, &chat, &started, &code, None)
        .await
        .unwrap();
    let first = feed_lines(&feed);
    assert_eq!(first.len(), 3);

    // The DP trusts the synthetic issuer and the prover, and builds from both.
    let dp = Dp {
        dir: dir.path().to_owned(),
        trust: {
            let mut trust = testing::trust();
            trust.add(issuer.verifying_key()).unwrap();
            trust
        },
    };
    std::fs::write(
        dp.path("trust.pub"),
        format!(
            "{}{}",
            testing::issuer().to_public_text(),
            issuer.to_public_text()
        ),
    )
    .unwrap();
    testing::write_secret(&dp.path("oprf.key"), testing::oprf_key().to_secret_text());
    let mut input: String = testing::bulk_mappings(50)
        .iter()
        .map(|m| m.to_json_line() + "\n")
        .collect();
    for line in &first {
        input.push_str(line);
        input.push('\n');
    }
    std::fs::write(dp.path("input.jsonl"), input).unwrap();
    let snapshot = dp.build(&dp.path("input.jsonl"), "one.pirsnap");
    let server = serve(snapshot).await;
    let synthetic = testing::bulk_mappings(8)[7].fields.cpi.as_str().to_owned();
    let found = lookup(
        &server,
        &dp.trust,
        &[ALICE_TEL, ALICE_MAIL, CAROL_TEL, BOB_MAIL, &synthetic],
    )
    .await;
    assert_eq!(found[0], vec![CHAT]);
    assert_eq!(found[1], vec![MAIL]);
    assert_eq!(found[2], vec![CHAT]);
    assert!(found[3].is_empty(), "not enrolled yet");
    assert!(
        !found[4].is_empty(),
        "the synthetic mappings are served beside"
    );
    server.stop().await.unwrap();

    // Carol leaves chat.example; Bob enrolls. The DP applies the feed's new lines.
    assert!(msp_side.revoke(CHAT, &chat, &carol).await.unwrap());
    let bob = Cpi::parse(BOB_MAIL).unwrap();
    let started = msp_side
        .start(MAIL, &mail, &bob, None, None, None)
        .await
        .unwrap();
    let code = mail_code(&smtp, 1, "bob.new@example.org");
    msp_side
        .complete(MAIL, &mail, &started, &code, None)
        .await
        .unwrap();
    let all = feed_lines(&feed);
    assert_eq!(all.len(), 5);
    std::fs::write(dp.path("delta.jsonl"), all[first.len()..].join("\n") + "\n").unwrap();
    let updated = dp.update("one.pirsnap", &dp.path("delta.jsonl"), "two.pirsnap");
    let server = serve(updated).await;
    let found = lookup(
        &server,
        &dp.trust,
        &[ALICE_TEL, ALICE_MAIL, CAROL_TEL, BOB_MAIL],
    )
    .await;
    assert_eq!(found, vec![vec![CHAT], vec![MAIL], vec![], vec![MAIL]]);
    server.stop().await.unwrap();

    // Replaying the whole feed onto the first snapshot gives the same answers.
    let replayed = dp.update("one.pirsnap", &feed, "replayed.pirsnap");
    let server = serve(replayed).await;
    let again = lookup(
        &server,
        &dp.trust,
        &[ALICE_TEL, ALICE_MAIL, CAROL_TEL, BOB_MAIL],
    )
    .await;
    assert_eq!(again, found);
    server.stop().await.unwrap();
    prover.stop().await;
}
