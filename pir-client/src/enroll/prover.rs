//! [`ProverClient`]: the channel to an ID prover and its three RPCs, each signed by the MSP and
//! under a deadline.

use std::{
    future::Future,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use pir_core::{
    Cpi, Mapping,
    identity::{MspKey, MspRequest, UserKey, normalise_msp},
};
use pir_proto::issuer_v1::{
    CompleteEnrollmentRequest, MspAuth, RevokeMappingRequest, StartEnrollmentRequest,
    issuer_client::IssuerClient,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::{
    error::{EnrollError, UserKeyProblem},
    started::{Asked, Started},
};
use crate::{address::ServerAddress, error::ClientError};

/// How long to wait for the connection (TCP and TLS) by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach an ID prover.
#[derive(Clone, Debug)]
pub struct ProverOptions {
    /// PEM CA certificate for an `https://` prover (default: the system's roots).
    pub tls_ca: Option<PathBuf>,
    /// Allow plaintext `http://` to an address that is not loopback.
    pub insecure_plaintext: bool,
    /// Limit on the connection (TCP and TLS handshake); `None` waits as long as the OS does.
    pub connect_timeout: Option<Duration>,
    /// Deadline of each RPC (sending the code takes the prover a mail or an SMS gateway's
    /// answer); `None` for none.
    pub request_timeout: Option<Duration>,
}

impl Default for ProverOptions {
    /// TLS with the system's roots, [`DEFAULT_CONNECT_TIMEOUT`], and
    /// [`DEFAULT_REQUEST_TIMEOUT`](crate::DEFAULT_REQUEST_TIMEOUT) for each RPC.
    fn default() -> Self {
        Self {
            tls_ca: None,
            insecure_plaintext: false,
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            request_timeout: Some(crate::DEFAULT_REQUEST_TIMEOUT),
        }
    }
}

/// A connection to an ID prover (`pir.issuer.v1.Issuer`), as an MSP.
///
/// ```no_run
/// # async fn demo() -> Result<(), pir_client::enroll::EnrollError> {
/// use pir_client::enroll::{ProverClient, ProverOptions, read_msp_key};
/// use pir_core::Cpi;
///
/// let key = read_msp_key("chat.example.key".as_ref())?;
/// let prover = ProverClient::connect("https://prover.example:50061", &ProverOptions::default())
///     .await?;
/// let cpi = Cpi::parse("tel:+14155550100").map_err(pir_client::enroll::EnrollError::InvalidRequest)?;
/// let started = prover.start("chat.example", &key, &cpi, Some("@alice"), None, None).await?;
/// // ... the user reads the code sent to the CPI ...
/// let mapping = prover.complete("chat.example", &key, &started, "123456", None).await?;
/// println!("{}", mapping.to_json_line());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ProverClient {
    grpc: IssuerClient<Channel>,
    address: ServerAddress,
    request_timeout: Option<Duration>,
}

const START: &str = "StartEnrollment";
const COMPLETE: &str = "CompleteEnrollment";
const REVOKE: &str = "RevokeMapping";

/// Unix seconds now, as the MSP's signatures carry it.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn auth(timestamp: u64, signature: [u8; 64]) -> Option<MspAuth> {
    Some(MspAuth {
        timestamp,
        signature: signature.to_vec(),
    })
}

impl ProverClient {
    /// Connects to the prover at `url` (`https://HOST:PORT`, or a bare `HOST:PORT`, is TLS;
    /// `http://` only to a loopback address unless [`ProverOptions::insecure_plaintext`]).
    pub async fn connect(url: &str, options: &ProverOptions) -> Result<Self, EnrollError> {
        let address = ServerAddress::parse(url).map_err(|reason| EnrollError::InvalidAddress {
            url: url.to_owned(),
            reason,
        })?;
        if !address.tls() && !address.is_loopback() && !options.insecure_plaintext {
            return Err(EnrollError::PlaintextRefused {
                url: address.to_string(),
            });
        }
        let mut endpoint = Endpoint::from(address.uri().clone());
        if address.tls() {
            let tls = match &options.tls_ca {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|source| {
                        EnrollError::Connect(ClientError::CaFile {
                            path: path.clone(),
                            source,
                        })
                    })?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint.tls_config(tls).map_err(|source| {
                EnrollError::Connect(ClientError::Transport {
                    url: address.to_string(),
                    source,
                })
            })?;
        } else if options.tls_ca.is_some() {
            return Err(EnrollError::CaWithoutTls {
                url: address.to_string(),
            });
        }
        if let Some(t) = options.connect_timeout {
            endpoint = endpoint.connect_timeout(t);
        }
        let connect = endpoint.connect();
        let channel =
            match options.connect_timeout {
                // The connect timeout bounds the TCP connect; this bounds the TLS handshake too.
                Some(after) => tokio::time::timeout(after, connect).await.map_err(|_| {
                    EnrollError::Deadline {
                        rpc: "connect",
                        after,
                    }
                })?,
                None => connect.await,
            }
            .map_err(|source| EnrollError::Connect(ClientError::transport(&address, source)))?;
        Ok(Self {
            grpc: IssuerClient::new(channel),
            address,
            request_timeout: options.request_timeout,
        })
    }

    /// The prover's address, normalised.
    pub fn address(&self) -> &ServerAddress {
        &self.address
    }

    /// Starts an enrollment of `cpi` at `msp` (the MSP's domain, signed with its `key`): the
    /// prover sends a one-time code to the CPI. With `user`, the mapping will carry the user's
    /// consent, signed at completion with that key. The fields are checked as a mapping's
    /// before anything is sent, and the prover's answer against them.
    pub async fn start(
        &self,
        msp: &str,
        key: &MspKey,
        cpi: &Cpi,
        psi: Option<&str>,
        context: Option<&str>,
        user: Option<&UserKey>,
    ) -> Result<Started, EnrollError> {
        let asked = Asked::new(cpi, msp, psi, context, user.map(UserKey::public_bytes))?;
        let msp = asked.fields.msp.clone();
        let timestamp = now();
        let signature = MspRequest::Start {
            cpi,
            psi,
            context,
            user_key: asked.user_key.as_ref(),
        }
        .sign(key, &msp, timestamp);
        let message = StartEnrollmentRequest {
            cpi: cpi.as_str().to_owned(),
            msp: msp.clone(),
            psi: psi.map(str::to_owned),
            context: context.map(str::to_owned),
            user_key: asked.user_key.map(|k| k.to_vec()),
            auth: auth(timestamp, signature),
        };
        let mut grpc = self.grpc.clone();
        let response = self
            .within(START, grpc.start_enrollment(self.request(message)))
            .await?
            .map_err(|s| EnrollError::from_status(START, &msp, s))?;
        Started::from_response(asked, response)
    }

    /// Completes `started` with the `code` the user received, as `msp` (the MSP that started
    /// it) with its `key`. When the start named a user key, `user` must be that key: it signs
    /// the user's consent to the mapping (the start's user-signed bytes). Returns the issued
    /// mapping once it is checked to be the one the start asked for.
    pub async fn complete(
        &self,
        msp: &str,
        key: &MspKey,
        started: &Started,
        code: &str,
        user: Option<&UserKey>,
    ) -> Result<Mapping, EnrollError> {
        let given = normalise_msp(msp).map_err(EnrollError::InvalidRequest)?;
        if given != started.msp() {
            return Err(EnrollError::OtherMsp {
                started: started.msp().to_owned(),
                given,
            });
        }
        let msp = started.msp();
        let user_sig = match (started.user_key(), user, started.user_signed_bytes()) {
            (None, None, _) => None,
            (None, Some(_), _) => return Err(EnrollError::UserKey(UserKeyProblem::Unexpected)),
            (Some(_), None, _) => return Err(EnrollError::UserKey(UserKeyProblem::Missing)),
            (Some(expected), Some(user), Some(bytes)) => {
                if user.public_bytes() != *expected {
                    return Err(EnrollError::UserKey(UserKeyProblem::Other));
                }
                Some(user.sign_consent(&bytes).map_err(|e| {
                    EnrollError::Internal(format!("the user-signed bytes were refused: {e}"))
                })?)
            }
            (Some(_), Some(_), None) => {
                return Err(EnrollError::Internal(
                    "an enrollment with a user key has bytes for the user to sign".into(),
                ));
            }
        };
        let timestamp = now();
        let signature = MspRequest::Complete {
            enrollment: started.enrollment_id(),
            code,
            user_sig: user_sig.as_ref(),
        }
        .sign(key, msp, timestamp);
        let message = CompleteEnrollmentRequest {
            enrollment_id: started.enrollment_id().to_vec(),
            code: code.to_owned(),
            user_sig: user_sig.map(|s| s.to_vec()),
            msp: msp.to_owned(),
            auth: auth(timestamp, signature),
        };
        let mut grpc = self.grpc.clone();
        let response = self
            .within(COMPLETE, grpc.complete_enrollment(self.request(message)))
            .await?
            .map_err(|s| EnrollError::from_status(COMPLETE, msp, s))?;
        started.issued(&response.mapping, user_sig.as_ref())
    }

    /// Withdraws `msp`'s mapping of `cpi`: the prover appends a removal to the DP's feed.
    /// Returns whether an issued mapping was withdrawn (the removal is appended either way).
    pub async fn revoke(&self, msp: &str, key: &MspKey, cpi: &Cpi) -> Result<bool, EnrollError> {
        self.send_revoke(msp, cpi, |msp, timestamp| RevokeMappingRequest {
            auth: auth(
                timestamp,
                MspRequest::Revoke { cpi }.sign(key, msp, timestamp),
            ),
            ..Default::default()
        })
        .await
    }

    /// Withdraws the user's own mapping of `cpi` at `msp`, signed with the user's key (the one
    /// the mapping carries), without the MSP: the prover appends a removal to its feed. Only a
    /// mapping issued with the user's consent can be withdrawn this way.
    pub async fn withdraw(
        &self,
        msp: &str,
        cpi: &Cpi,
        user: &UserKey,
    ) -> Result<bool, EnrollError> {
        self.send_revoke(msp, cpi, |msp, timestamp| RevokeMappingRequest {
            user_auth: Some(pir_proto::issuer_v1::UserAuth {
                timestamp,
                signature: user.sign_withdrawal(cpi, msp, timestamp).to_vec(),
            }),
            ..Default::default()
        })
        .await
    }

    /// Sends a RevokeMapping of `cpi` at `msp` (normalised), signed by `signed` over the
    /// normalised MSP at the time it is given; whether an issued mapping was withdrawn.
    async fn send_revoke(
        &self,
        msp: &str,
        cpi: &Cpi,
        signed: impl FnOnce(&str, u64) -> RevokeMappingRequest,
    ) -> Result<bool, EnrollError> {
        let msp = normalise_msp(msp).map_err(EnrollError::InvalidRequest)?;
        let message = RevokeMappingRequest {
            cpi: cpi.as_str().to_owned(),
            msp: msp.clone(),
            ..signed(&msp, now())
        };
        let mut grpc = self.grpc.clone();
        let response = self
            .within(REVOKE, grpc.revoke_mapping(self.request(message)))
            .await?
            .map_err(|s| EnrollError::from_status(REVOKE, &msp, s))?;
        Ok(response.revoked)
    }

    /// A request carrying the deadline to the prover (`grpc-timeout`), so it can give up too.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(d) = self.request_timeout {
            request.set_timeout(d);
        }
        request
    }

    /// Runs one RPC under the deadline: `Err` when it passed, else the prover's answer. The
    /// whole call is bounded, so a prover that sends headers and then stalls is cut off too.
    async fn within<R>(
        &self,
        rpc: &'static str,
        call: impl Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    ) -> Result<Result<R, tonic::Status>, EnrollError> {
        let Some(after) = self.request_timeout else {
            return Ok(call.await.map(tonic::Response::into_inner));
        };
        match tokio::time::timeout(after, call).await {
            Err(_) => Err(EnrollError::Deadline { rpc, after }),
            Ok(Err(status)) if channel_timed_out(&status) => {
                Err(EnrollError::Deadline { rpc, after })
            }
            Ok(response) => Ok(response.map(tonic::Response::into_inner)),
        }
    }
}

/// Whether a status is the channel's own `grpc-timeout` expiring.
fn channel_timed_out(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use pir_core::{
        MappingFields,
        identity::UserConsent,
        testing::{issuer, user_key},
    };
    use pir_proto::issuer_v1::{
        CompleteEnrollmentResponse, RevokeMappingResponse, StartEnrollmentResponse,
        issuer_server::{Issuer, IssuerServer},
    };
    use tonic::{Request, Response, Status, transport::server::TcpIncoming};

    use super::*;
    use crate::enroll::MappingField;

    const CODE: &str = "123456";
    const WINDOW: (u64, u64) = (1_000, 2_000);

    fn msp_key() -> MspKey {
        MspKey::from_seed(&[21; 32])
    }

    fn user() -> UserKey {
        UserKey::from_seed(&user_key().to_bytes())
    }

    /// A prover in miniature: it knows chat.example's key, checks every signature, takes
    /// [`CODE`] within three attempts, and can be told to issue another PSI than asked.
    #[derive(Clone, Default)]
    struct FakeProver {
        state: Arc<Mutex<State>>,
    }

    #[derive(Default)]
    struct State {
        enrollment: Option<(MappingFields, Option<[u8; 32]>)>,
        attempts_left: u32,
        hostile_psi: bool,
        stall: bool,
    }

    fn verify(request: &MspRequest<'_>, msp: &str, auth: Option<&MspAuth>) -> Result<(), Status> {
        let auth = auth.ok_or_else(|| Status::unauthenticated("no auth"))?;
        if msp != "chat.example" {
            return Err(Status::unauthenticated("unknown MSP"));
        }
        let sig: [u8; 64] = auth
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| Status::unauthenticated("sig"))?;
        if now().abs_diff(auth.timestamp) > 60 {
            return Err(Status::unauthenticated("clock"));
        }
        request
            .verify(&msp_key().verifying_key(), msp, auth.timestamp, &sig)
            .map_err(|_| Status::unauthenticated("bad signature"))
    }

    #[tonic::async_trait]
    impl Issuer for FakeProver {
        async fn start_enrollment(
            &self,
            request: Request<StartEnrollmentRequest>,
        ) -> Result<Response<StartEnrollmentResponse>, Status> {
            let r = request.into_inner();
            let cpi = Cpi::parse(&r.cpi).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let user_key: Option<[u8; 32]> = r.user_key.as_deref().map(|k| k.try_into().unwrap());
            let signed = MspRequest::Start {
                cpi: &cpi,
                psi: r.psi.as_deref(),
                context: r.context.as_deref(),
                user_key: user_key.as_ref(),
            };
            verify(&signed, &r.msp, r.auth.as_ref())?;
            let fields = MappingFields::new(
                cpi,
                &r.msp,
                r.psi.as_deref(),
                r.context.as_deref(),
                WINDOW.0,
                WINDOW.1,
            )
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let user_signed_bytes = user_key
                .map(|k| fields.user_signed_bytes(&issuer().id(), &k))
                .unwrap_or_default();
            let response = StartEnrollmentResponse {
                enrollment_id: vec![9; 16],
                code_expires_at: now() + 600,
                attempts: 3,
                not_before: WINDOW.0,
                not_after: WINDOW.1,
                issuer: issuer().id().0.to_vec(),
                cpi: fields.cpi.as_str().to_owned(),
                user_signed_bytes,
            };
            let mut state = self.state.lock().unwrap();
            state.enrollment = Some((fields, user_key));
            state.attempts_left = 3;
            Ok(Response::new(response))
        }

        async fn complete_enrollment(
            &self,
            request: Request<CompleteEnrollmentRequest>,
        ) -> Result<Response<CompleteEnrollmentResponse>, Status> {
            let r = request.into_inner();
            let enrollment: [u8; 16] = r.enrollment_id.as_slice().try_into().unwrap();
            let user_sig: Option<[u8; 64]> = r.user_sig.as_deref().map(|s| s.try_into().unwrap());
            let signed = MspRequest::Complete {
                enrollment: &enrollment,
                code: &r.code,
                user_sig: user_sig.as_ref(),
            };
            verify(&signed, &r.msp, r.auth.as_ref())?;
            let (stall, hostile) = {
                let state = self.state.lock().unwrap();
                (state.stall, state.hostile_psi)
            };
            if stall {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            let mut state = self.state.lock().unwrap();
            let Some((mut fields, user_key)) = state.enrollment.clone() else {
                return Err(Status::not_found("no such enrollment"));
            };
            if r.code != CODE {
                state.attempts_left -= 1;
                if state.attempts_left == 0 {
                    state.enrollment = None;
                }
                let mut status = Status::failed_precondition("wrong code");
                status.metadata_mut().insert(
                    pir_proto::ATTEMPTS_LEFT_KEY,
                    state.attempts_left.to_string().parse().unwrap(),
                );
                return Err(status);
            }
            state.enrollment = None;
            if hostile {
                fields.psi = Some("@mallory".into());
            }
            let mapping = match (user_key, user_sig) {
                (Some(key), Some(sig)) if !hostile => fields
                    .sign_with_consent(&issuer(), UserConsent { key, sig })
                    .map_err(|e| Status::failed_precondition(e.to_string()))?,
                (Some(_), None) => return Err(Status::failed_precondition("user_sig missing")),
                _ => fields.sign(&issuer(), None).unwrap(),
            };
            Ok(Response::new(CompleteEnrollmentResponse {
                mapping: mapping.to_json_line(),
            }))
        }

        async fn revoke_mapping(
            &self,
            request: Request<RevokeMappingRequest>,
        ) -> Result<Response<RevokeMappingResponse>, Status> {
            let r = request.into_inner();
            let cpi = Cpi::parse(&r.cpi).map_err(|e| Status::invalid_argument(e.to_string()))?;
            verify(&MspRequest::Revoke { cpi: &cpi }, &r.msp, r.auth.as_ref())?;
            Ok(Response::new(RevokeMappingResponse { revoked: true }))
        }
    }

    async fn serve(prover: FakeProver) -> (ProverClient, tokio::task::JoinHandle<()>) {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(IssuerServer::new(prover))
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        let options = ProverOptions {
            request_timeout: Some(Duration::from_secs(2)),
            ..ProverOptions::default()
        };
        let client = ProverClient::connect(&format!("http://{addr}"), &options)
            .await
            .unwrap();
        (client, task)
    }

    /// The whole exchange over the wire: signatures the prover checks, a wrong code with its
    /// attempts, the user's consent, the issued mapping checked, a revocation.
    #[tokio::test]
    async fn an_enrollment_over_the_wire() {
        let prover = FakeProver::default();
        let (client, task) = serve(prover.clone()).await;
        let cpi = Cpi::parse("tel:+14155550100").unwrap();
        let key = msp_key();
        let user = user();
        let started = client
            .start(
                "Chat.Example",
                &key,
                &cpi,
                Some("@alice"),
                Some("work"),
                Some(&user),
            )
            .await
            .unwrap();
        assert_eq!(started.msp(), "chat.example");
        assert_eq!(started.attempts(), 3);
        let wrong = client
            .complete("chat.example", &key, &started, "000000", Some(&user))
            .await
            .unwrap_err();
        assert_eq!(wrong.attempts_left(), Some(2), "{wrong}");
        // Consent is the user's to give, with the key the start named.
        let missing = client
            .complete("chat.example", &key, &started, CODE, None)
            .await
            .unwrap_err();
        assert!(
            matches!(missing, EnrollError::UserKey(UserKeyProblem::Missing)),
            "{missing}"
        );
        let other = UserKey::from_seed(&[77; 32]);
        let err = client
            .complete("chat.example", &key, &started, CODE, Some(&other))
            .await
            .unwrap_err();
        assert!(
            matches!(err, EnrollError::UserKey(UserKeyProblem::Other)),
            "{err}"
        );
        let err = client
            .complete("mail.example", &key, &started, CODE, Some(&user))
            .await
            .unwrap_err();
        assert!(matches!(err, EnrollError::OtherMsp { .. }), "{err}");
        let mapping = client
            .complete("chat.example", &key, &started, CODE, Some(&user))
            .await
            .unwrap();
        mapping.verify(&pir_core::testing::trust(), 1_500).unwrap();
        assert_eq!(mapping.fields.psi.as_deref(), Some("@alice"));
        assert_eq!(mapping.user.as_ref().unwrap().key, user.public_bytes());
        // Used: the prover forgets it.
        let gone = client
            .complete("chat.example", &key, &started, CODE, Some(&user))
            .await
            .unwrap_err();
        assert!(matches!(gone, EnrollError::EnrollmentGone { .. }), "{gone}");
        assert!(client.revoke("chat.example", &key, &cpi).await.unwrap());

        // Another MSP's key, or a domain the prover does not know: UNAUTHENTICATED, explained.
        let stranger = MspKey::from_seed(&[22; 32]);
        let err = client
            .start("chat.example", &stranger, &cpi, None, None, None)
            .await
            .unwrap_err();
        assert!(matches!(err, EnrollError::NotAuthenticated { .. }), "{err}");
        let err = client
            .revoke("other.example", &key, &cpi)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("other.example.pub"), "{err}");
        task.abort();
    }

    #[tokio::test]
    async fn a_prover_that_issues_another_mapping_or_stalls_is_refused() {
        let prover = FakeProver::default();
        let (client, task) = serve(prover.clone()).await;
        let cpi = Cpi::parse("mailto:alice@example.org").unwrap();
        let key = msp_key();
        let started = client
            .start("chat.example", &key, &cpi, Some("@alice"), None, None)
            .await
            .unwrap();
        prover.state.lock().unwrap().hostile_psi = true;
        let err = client
            .complete("chat.example", &key, &started, CODE, None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                EnrollError::Mismatch {
                    field: MappingField::Psi,
                    ..
                }
            ),
            "{err}"
        );
        let started = client
            .start("chat.example", &key, &cpi, None, None, None)
            .await
            .unwrap();
        prover.state.lock().unwrap().stall = true;
        let err = client
            .complete("chat.example", &key, &started, CODE, None)
            .await
            .unwrap_err();
        assert!(matches!(err, EnrollError::Deadline { .. }), "{err}");
        task.abort();
    }

    #[tokio::test]
    async fn addresses_are_checked_before_connecting() {
        let options = ProverOptions::default();
        let err = ProverClient::connect("http://prover.example:50061", &options)
            .await
            .unwrap_err();
        assert!(matches!(err, EnrollError::PlaintextRefused { .. }), "{err}");
        assert!(err.to_string().contains("--insecure-plaintext"), "{err}");
        let err = ProverClient::connect("ftp://prover.example:1", &options)
            .await
            .unwrap_err();
        assert!(matches!(err, EnrollError::InvalidAddress { .. }), "{err}");
        let with_ca = ProverOptions {
            tls_ca: Some("ca.pem".into()),
            ..ProverOptions::default()
        };
        let err = ProverClient::connect("http://127.0.0.1:9", &with_ca)
            .await
            .unwrap_err();
        assert!(matches!(err, EnrollError::CaWithoutTls { .. }), "{err}");
    }
}
