//! The prover's rules through its real gRPC port, with the file code sender: the handshake,
//! and every way it refuses (wrong, reused and expired codes, an MSP enrolling for another MSP,
//! a missing or forged user signature, skewed clocks, unknown MSPs, rate limits), a restart in
//! the middle of an enrollment, revocation by the MSP and by the operator, and the sweeper's
//! reminders and expiries, each checked against the delta feed the DP reads.

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use pir_core::{
    Cpi, IssuerKey, Mapping, TrustStore,
    identity::{DeltaLine, MspKey, MspRequest, UserKey},
};
use pir_issuer::{
    IssuerConfig, OperatorToken, Policy, RunningIssuer,
    sender::{CodeSender, FileSender, Senders},
};
use pir_proto::issuer_v1::{
    CompleteEnrollmentRequest, MspAuth, RevokeMappingRequest, StartEnrollmentRequest,
    StartEnrollmentResponse, issuer_client::IssuerClient,
};
use tonic::{Code, transport::Channel};

const MSP: &str = "chat.example";
const OTHER: &str = "other.example";
const TOKEN: &str = "operator-token-0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Prover {
    dir: tempfile::TempDir,
    issuer: IssuerKey,
    msp: MspKey,
    other: MspKey,
    running: Option<RunningIssuer>,
    policy: Policy,
}

impl Prover {
    async fn start(policy: Policy) -> Prover {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("msps")).unwrap();
        let msp = MspKey::from_seed(&[1; 32]);
        let other = MspKey::from_seed(&[2; 32]);
        for (name, key) in [(MSP, &msp), (OTHER, &other)] {
            std::fs::write(
                dir.path().join("msps").join(format!("{name}.pub")),
                key.to_public_text(),
            )
            .unwrap();
        }
        let mut prover = Prover {
            dir,
            issuer: IssuerKey::from_seed(&[3; 32]),
            msp,
            other,
            running: None,
            policy,
        };
        prover.restart().await;
        prover
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn restart(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
        let sender = Arc::new(FileSender::new(self.path("codes.jsonl"))) as Arc<dyn CodeSender>;
        self.running = Some(
            pir_issuer::start(IssuerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                issuer_key: self.issuer.clone(),
                msp_keys: self.path("msps"),
                state: self.path("state.redb"),
                feed: self.path("feed.jsonl"),
                name: "Test Prover".into(),
                senders: Senders {
                    email: Some(sender.clone()),
                    phone: Some(sender),
                },
                operator: Some(OperatorToken::new(TOKEN)),
                policy: self.policy.clone(),
                tls: None,
                sweep_interval: Duration::from_secs(3600),
            })
            .await
            .unwrap(),
        );
    }

    fn running(&self) -> &RunningIssuer {
        self.running.as_ref().unwrap()
    }

    async fn client(&self) -> IssuerClient<Channel> {
        IssuerClient::connect(format!("http://{}", self.running().addr()))
            .await
            .unwrap()
    }

    fn code(&self, cpi: &str) -> String {
        FileSender::latest_code(&self.path("codes.jsonl"), cpi)
            .unwrap()
            .expect("a code was sent")
    }

    fn feed(&self) -> Vec<DeltaLine> {
        std::fs::read_to_string(self.path("feed.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| DeltaLine::from_json_line(l).unwrap())
            .collect()
    }

    fn trust(&self) -> TrustStore {
        pir_core::testing::trust_of(&self.issuer)
    }
}

fn start_request(
    key: &MspKey,
    msp: &str,
    cpi: &str,
    user: Option<&UserKey>,
    at: u64,
) -> StartEnrollmentRequest {
    let parsed = Cpi::parse(cpi).unwrap();
    let user_key = user.map(UserKey::public_bytes);
    let signature = MspRequest::Start {
        cpi: &parsed,
        psi: Some("@alice"),
        context: None,
        user_key: user_key.as_ref(),
    }
    .sign(key, msp, at);
    StartEnrollmentRequest {
        cpi: cpi.into(),
        msp: msp.into(),
        psi: Some("@alice".into()),
        context: None,
        user_key: user_key.map(|k| k.to_vec()),
        auth: Some(MspAuth {
            timestamp: at,
            signature: signature.to_vec(),
        }),
    }
}

fn complete_request(
    key: &MspKey,
    msp: &str,
    started: &StartEnrollmentResponse,
    code: &str,
    user_sig: Option<[u8; 64]>,
) -> CompleteEnrollmentRequest {
    let id: [u8; 16] = started.enrollment_id.as_slice().try_into().unwrap();
    let signature = MspRequest::Complete {
        enrollment: &id,
        code,
        user_sig: user_sig.as_ref(),
    }
    .sign(key, msp, now());
    CompleteEnrollmentRequest {
        enrollment_id: id.to_vec(),
        code: code.into(),
        user_sig: user_sig.map(|s| s.to_vec()),
        msp: msp.into(),
        auth: Some(MspAuth {
            timestamp: now(),
            signature: signature.to_vec(),
        }),
    }
}

fn revoke_request(key: Option<&MspKey>, msp: &str, cpi: &str) -> RevokeMappingRequest {
    let parsed = Cpi::parse(cpi).unwrap();
    RevokeMappingRequest {
        cpi: cpi.into(),
        msp: msp.into(),
        user_auth: None,
        auth: key.map(|key| MspAuth {
            timestamp: now(),
            signature: MspRequest::Revoke { cpi: &parsed }
                .sign(key, msp, now())
                .to_vec(),
        }),
    }
}

fn wrong(code: &str) -> String {
    let mut bytes = code.as_bytes().to_vec();
    bytes[0] = if bytes[0] == b'9' { b'0' } else { bytes[0] + 1 };
    String::from_utf8(bytes).unwrap()
}

fn attempts_left(status: &tonic::Status) -> u32 {
    status
        .metadata()
        .get(pir_proto::ATTEMPTS_LEFT_KEY)
        .expect("the attempts-left trailer")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_handshake_issues_a_mapping_once_and_feeds_it_to_the_dp() {
    let prover = Prover::start(Policy::default()).await;
    let mut client = prover.client().await;
    let user = UserKey::from_seed(&[9; 32]);
    let started = client
        .start_enrollment(start_request(
            &prover.msp,
            MSP,
            "tel:+1 (415) 555-0100",
            Some(&user),
            now(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.cpi, "tel:+14155550100", "normalised");
    assert_eq!(started.issuer, prover.issuer.id().0.to_vec());
    assert_eq!(
        started.not_after - started.not_before,
        Policy::default().validity.as_secs()
    );
    let code = prover.code("tel:+14155550100");
    assert_eq!(code.len(), 6);

    // Without the user's signature, then with a forged one: refused, the code stays good.
    let err = client
        .complete_enrollment(complete_request(&prover.msp, MSP, &started, &code, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let forged = UserKey::from_seed(&[8; 32])
        .sign_consent(&started.user_signed_bytes)
        .unwrap();
    let err = client
        .complete_enrollment(complete_request(
            &prover.msp,
            MSP,
            &started,
            &code,
            Some(forged),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let sig = user.sign_consent(&started.user_signed_bytes).unwrap();
    let issued = client
        .complete_enrollment(complete_request(
            &prover.msp,
            MSP,
            &started,
            &code,
            Some(sig),
        ))
        .await
        .unwrap()
        .into_inner();
    let mapping = Mapping::from_json_line(&issued.mapping).unwrap();
    mapping.verify(&prover.trust(), now()).unwrap();
    assert_eq!(mapping.fields.msp, MSP);
    assert_eq!(mapping.fields.psi.as_deref(), Some("@alice"));
    assert_eq!(mapping.user.as_ref().unwrap().key, user.public_bytes());
    assert_eq!(prover.feed(), vec![DeltaLine::Upsert(Box::new(mapping))]);

    // The code is single-use.
    let err = client
        .complete_enrollment(complete_request(
            &prover.msp,
            MSP,
            &started,
            &code,
            Some(sig),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(prover.feed().len(), 1);
}

#[tokio::test]
async fn wrong_codes_count_and_the_last_one_kills_the_enrollment() {
    let policy = Policy {
        code_attempts: 3,
        ..Policy::default()
    };
    let prover = Prover::start(policy).await;
    let mut client = prover.client().await;
    let cpi = "mailto:alice@example.org";
    let started = client
        .start_enrollment(start_request(&prover.msp, MSP, cpi, None, now()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.attempts, 3);
    let code = prover.code(cpi);
    for left in [2, 1, 0] {
        let err = client
            .complete_enrollment(complete_request(
                &prover.msp,
                MSP,
                &started,
                &wrong(&code),
                None,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert_eq!(attempts_left(&err), left);
    }
    // Dead: the right code no longer works, and nothing was issued.
    let err = client
        .complete_enrollment(complete_request(&prover.msp, MSP, &started, &code, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(prover.feed().is_empty());
}

#[tokio::test]
async fn an_expired_code_is_refused_and_swept() {
    let policy = Policy {
        code_ttl: Duration::from_secs(30),
        ..Policy::default()
    };
    let prover = Prover::start(policy).await;
    let mut client = prover.client().await;
    let cpi = "mailto:late@example.org";
    let started = client
        .start_enrollment(start_request(&prover.msp, MSP, cpi, None, now()))
        .await
        .unwrap()
        .into_inner();
    assert!(started.code_expires_at <= now() + 30);
    // The sweeper, run as of a minute later, drops it; the code then finds nothing.
    let report = prover.running().sweep_at(now() + 60).await.unwrap();
    assert_eq!(report.dropped_pending, 1);
    let err = client
        .complete_enrollment(complete_request(
            &prover.msp,
            MSP,
            &started,
            &prover.code(cpi),
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn an_msp_cannot_enroll_complete_or_revoke_for_another() {
    let prover = Prover::start(Policy::default()).await;
    let mut client = prover.client().await;
    let cpi = "tel:+14155550111";
    // Naming another MSP, signed with its own key: the signature is checked under the named
    // MSP's key, and fails.
    let err = client
        .start_enrollment(start_request(&prover.other, MSP, cpi, None, now()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains("an MSP may only name itself"),
        "{err:?}"
    );
    // An MSP nobody registered.
    let err = client
        .start_enrollment(start_request(
            &prover.other,
            "nobody.example",
            cpi,
            None,
            now(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("no key is registered"), "{err:?}");
    // Unsigned.
    let mut unsigned = start_request(&prover.msp, MSP, cpi, None, now());
    unsigned.auth = None;
    let err = client.start_enrollment(unsigned).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // Signed long ago: a replay window is bounded by the clock skew allowed.
    let err = client
        .start_enrollment(start_request(&prover.msp, MSP, cpi, None, now() - 3600))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("clock"), "{err:?}");
    assert!(
        std::fs::read_to_string(prover.path("codes.jsonl"))
            .unwrap_or_default()
            .is_empty(),
        "no code went out for a refused start"
    );

    // The other MSP, validly signed, completing this MSP's enrollment.
    let started = client
        .start_enrollment(start_request(&prover.msp, MSP, cpi, None, now()))
        .await
        .unwrap()
        .into_inner();
    let code = prover.code(cpi);
    let err = client
        .complete_enrollment(complete_request(
            &prover.other,
            OTHER,
            &started,
            &code,
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    client
        .complete_enrollment(complete_request(&prover.msp, MSP, &started, &code, None))
        .await
        .unwrap();
    // Revoking this MSP's mapping as the other MSP fails; as this MSP it works.
    let err = client
        .revoke_mapping(revoke_request(Some(&prover.other), MSP, cpi))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(prover.feed().len(), 1);
    assert!(
        client
            .revoke_mapping(revoke_request(Some(&prover.msp), MSP, cpi))
            .await
            .unwrap()
            .into_inner()
            .revoked
    );
    assert_eq!(
        prover.feed()[1],
        DeltaLine::Remove {
            cpi: Cpi::parse(cpi).unwrap(),
            msp: Some(MSP.into())
        }
    );
}

#[tokio::test]
async fn a_restart_in_the_middle_of_an_enrollment_loses_nothing() {
    let mut prover = Prover::start(Policy::default()).await;
    let cpi = "mailto:restart@example.org";
    let started = prover
        .client()
        .await
        .start_enrollment(start_request(&prover.msp, MSP, cpi, None, now()))
        .await
        .unwrap()
        .into_inner();
    let code = prover.code(cpi);
    prover.restart().await;
    let issued = prover
        .client()
        .await
        .complete_enrollment(complete_request(&prover.msp, MSP, &started, &code, None))
        .await
        .unwrap()
        .into_inner();
    Mapping::from_json_line(&issued.mapping)
        .unwrap()
        .verify(&prover.trust(), now())
        .unwrap();
    // And the issued mapping survives another restart (it is swept at expiry, below).
    prover.restart().await;
    let report = prover.running().sweep_at(now()).await.unwrap();
    assert_eq!(report, Default::default());
    let stopped = prover.running.take().unwrap();
    stopped.stop().await;
    let exported = pir_issuer::export(&prover.path("state.redb")).unwrap();
    assert_eq!(exported, vec![issued.mapping]);
}

#[tokio::test]
async fn the_operator_revokes_with_the_token_only() {
    let prover = Prover::start(Policy::default()).await;
    let mut client = prover.client().await;
    let cpi = "tel:+14155550122";
    let err = client
        .revoke_mapping(revoke_request(None, MSP, cpi))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let mut request = tonic::Request::new(revoke_request(None, MSP, cpi));
    request.metadata_mut().insert(
        "authorization",
        "Bearer wrong-token-0123456789".parse().unwrap(),
    );
    assert_eq!(
        client.revoke_mapping(request).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut request = tonic::Request::new(revoke_request(None, MSP, cpi));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let revoked = client.revoke_mapping(request).await.unwrap().into_inner();
    assert!(!revoked.revoked, "nothing was issued here");
    assert_eq!(
        prover.feed().len(),
        1,
        "the removal goes to the feed anyway"
    );
}

#[tokio::test]
async fn codes_to_one_cpi_are_rate_limited() {
    let policy = Policy {
        starts_per_cpi_per_hour: 2,
        ..Policy::default()
    };
    let prover = Prover::start(policy).await;
    let mut client = prover.client().await;
    let cpi = "tel:+14155550133";
    for _ in 0..2 {
        client
            .start_enrollment(start_request(&prover.msp, MSP, cpi, None, now()))
            .await
            .unwrap();
    }
    let err = client
        .start_enrollment(start_request(&prover.other, OTHER, cpi, None, now()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.metadata().get(pir_proto::RETRY_AFTER_MS_KEY).is_some());
    // Another CPI is not held back.
    client
        .start_enrollment(start_request(
            &prover.msp,
            MSP,
            "tel:+14155550134",
            None,
            now(),
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn malformed_fields_are_named() {
    let prover = Prover::start(Policy::default()).await;
    let mut client = prover.client().await;
    let mut bad_cpi = start_request(&prover.msp, MSP, "tel:+14155550100", None, now());
    bad_cpi.cpi = "sms:+14155550100".into();
    let err = client.start_enrollment(bad_cpi).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("cpi:"), "{err:?}");
    let mut bad_key = start_request(&prover.msp, MSP, "tel:+14155550100", None, now());
    bad_key.user_key = Some(vec![1; 31]);
    let err = client.start_enrollment(bad_key).await.unwrap_err();
    assert!(err.message().starts_with("user_key:"), "{err:?}");
    let err = client
        .complete_enrollment(CompleteEnrollmentRequest {
            enrollment_id: vec![0; 3],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("enrollment_id:"), "{err:?}");
}

#[tokio::test]
async fn the_sweeper_reminds_before_expiry_then_withdraws() {
    let policy = Policy {
        validity: Duration::from_secs(10 * 86_400),
        remind_before: Duration::from_secs(2 * 86_400),
        ..Policy::default()
    };
    let prover = Prover::start(policy).await;
    let mut client = prover.client().await;
    let cpi = "mailto:remind@example.org";
    let started = client
        .start_enrollment(start_request(&prover.msp, MSP, cpi, None, now()))
        .await
        .unwrap()
        .into_inner();
    client
        .complete_enrollment(complete_request(
            &prover.msp,
            MSP,
            &started,
            &prover.code(cpi),
            None,
        ))
        .await
        .unwrap();
    let running = prover.running();
    assert_eq!(running.sweep_at(now()).await.unwrap().reminders, 0);
    assert_eq!(
        running
            .sweep_at(started.not_after - 86_400)
            .await
            .unwrap()
            .reminders,
        1
    );
    assert_eq!(
        running
            .sweep_at(started.not_after - 3600)
            .await
            .unwrap()
            .reminders,
        0,
        "one reminder"
    );
    let notices = FileSender::read_codes(&prover.path("codes.jsonl")).unwrap();
    let reminder = notices.last().unwrap();
    assert_eq!(reminder.kind, "reminder");
    assert_eq!(reminder.not_after, Some(started.not_after));
    let report = running.sweep_at(started.not_after + 1).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(
        prover.feed().last().unwrap(),
        &DeltaLine::Remove {
            cpi: Cpi::parse(cpi).unwrap(),
            msp: Some(MSP.into())
        }
    );
}

#[tokio::test]
async fn a_user_withdraws_their_own_consented_mapping_without_the_msp() {
    let prover = Prover::start(Policy::default()).await;
    let mut client = prover.client().await;
    let user = UserKey::from_seed(&[11; 32]);
    let cpi = "tel:+14155550144";
    let parsed = Cpi::parse(cpi).unwrap();
    let withdrawal = |key: &UserKey, at: u64| RevokeMappingRequest {
        cpi: cpi.into(),
        msp: MSP.into(),
        auth: None,
        user_auth: Some(pir_proto::issuer_v1::UserAuth {
            timestamp: at,
            signature: key.sign_withdrawal(&parsed, MSP, at).to_vec(),
        }),
    };
    // Nothing issued yet: there is no user key to check against.
    let err = client
        .revoke_mapping(withdrawal(&user, now()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let started = client
        .start_enrollment(start_request(&prover.msp, MSP, cpi, Some(&user), now()))
        .await
        .unwrap()
        .into_inner();
    let sig = user.sign_consent(&started.user_signed_bytes).unwrap();
    client
        .complete_enrollment(complete_request(
            &prover.msp,
            MSP,
            &started,
            &prover.code(cpi),
            Some(sig),
        ))
        .await
        .unwrap();
    // Another key, or an old signature, is refused; nothing goes to the feed.
    let err = client
        .revoke_mapping(withdrawal(&UserKey::from_seed(&[12; 32]), now()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = client
        .revoke_mapping(withdrawal(&user, now() - 3600))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_eq!(prover.feed().len(), 1);
    // The user's own key withdraws it.
    assert!(
        client
            .revoke_mapping(withdrawal(&user, now()))
            .await
            .unwrap()
            .into_inner()
            .revoked
    );
    assert_eq!(
        prover.feed()[1],
        DeltaLine::Remove {
            cpi: parsed.clone(),
            msp: Some(MSP.into())
        }
    );
}
