//! [`Started`]: an enrollment the prover started, what it will issue, and its file.
//!
//! It is made in one of two ways only: from the prover's answer to `StartEnrollment`, checked
//! against what was asked, or from its file, checked again. The mapping the prover issues at
//! completion is checked against it, field by field.

use std::path::Path;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use pir_core::{
    Cpi, Mapping, MappingFields,
    fs::write_atomic,
    identity::{ENROLLMENT_ID_LEN, IssuerId},
};
use pir_proto::issuer_v1::StartEnrollmentResponse;
use serde::{Deserialize, Serialize};

use super::error::{EnrollError, FileProblem, MappingField, ProtocolProblem};

/// The version of the enrollment file's JSON form.
pub const ENROLLMENT_FILE_VERSION: u32 = 1;

/// An enrollment an ID prover started: a code is on its way to the CPI.
///
/// It holds what the mapping will say (CPI, MSP, PSI, context, validity window, issuer key id,
/// user key) and what completing it needs (the enrollment id, the code's expiry and attempts).
/// The prover's answer was checked against the request: same CPI, and, with a user key, bytes
/// for the user to sign that are exactly this mapping's.
///
/// It serialises (serde) to the JSON object of the enrollment file, binary fields base64url
/// without padding:
///
/// ```json
/// {"version":1,"enrollment":"AAECAwQFBgcICQoLDA0ODw","cpi":"tel:+14155550100",
///  "msp":"chat.example","psi":"@alice:chat.example","context":"work",
///  "not_before":1767225600,"not_after":1798761600,"issuer":"q5Ezd9Hcv2w",
///  "user_key":"...","user_signed_bytes":"...","code_expires_at":1767226200,"attempts":3}
/// ```
///
/// `psi`, `context`, `user_key` and `user_signed_bytes` may be absent (the last two go
/// together); unknown fields are refused, and so is a file whose fields disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StartedJson", into = "StartedJson")]
pub struct Started {
    enrollment: [u8; ENROLLMENT_ID_LEN],
    fields: MappingFields,
    issuer: IssuerId,
    user_key: Option<[u8; 32]>,
    code_expires_at: u64,
    attempts: u32,
}

/// What a start asked for, with the MSP domain normalised.
#[derive(Clone, Debug)]
pub(super) struct Asked {
    /// The fields, with a window of zero until the prover fixes it.
    pub(super) fields: MappingFields,
    pub(super) user_key: Option<[u8; 32]>,
}

impl Asked {
    /// Checks the request's fields as a mapping's (so that nothing the prover would refuse is
    /// sent) and normalises the MSP's domain.
    pub(super) fn new(
        cpi: &Cpi,
        msp: &str,
        psi: Option<&str>,
        context: Option<&str>,
        user_key: Option<[u8; 32]>,
    ) -> Result<Self, EnrollError> {
        let fields = MappingFields::new(cpi.clone(), msp, psi, context, 0, 0)
            .map_err(EnrollError::InvalidRequest)?;
        Ok(Self { fields, user_key })
    }
}

const START: &str = "StartEnrollment";
const COMPLETE: &str = "CompleteEnrollment";

fn protocol(rpc: &'static str, problem: ProtocolProblem) -> EnrollError {
    EnrollError::Protocol { rpc, problem }
}

fn mismatch(rpc: &'static str, field: MappingField) -> EnrollError {
    EnrollError::Mismatch { rpc, field }
}

impl Started {
    /// The prover's answer to the start of `asked`, checked against it.
    pub(super) fn from_response(
        asked: Asked,
        response: StartEnrollmentResponse,
    ) -> Result<Self, EnrollError> {
        let enrollment: [u8; ENROLLMENT_ID_LEN] =
            response.enrollment_id.as_slice().try_into().map_err(|_| {
                protocol(
                    START,
                    ProtocolProblem::EnrollmentIdLength(response.enrollment_id.len()),
                )
            })?;
        let issuer = IssuerId(response.issuer.as_slice().try_into().map_err(|_| {
            protocol(
                START,
                ProtocolProblem::IssuerIdLength(response.issuer.len()),
            )
        })?);
        let cpi =
            Cpi::parse(&response.cpi).map_err(|e| protocol(START, ProtocolProblem::Cpi(e)))?;
        if cpi != asked.fields.cpi {
            return Err(mismatch(START, MappingField::Cpi));
        }
        let fields = MappingFields {
            not_before: response.not_before,
            not_after: response.not_after,
            ..asked.fields
        };
        fields
            .validate()
            .map_err(|e| protocol(START, ProtocolProblem::Window(e)))?;
        let started = Self {
            enrollment,
            fields,
            issuer,
            user_key: asked.user_key,
            code_expires_at: response.code_expires_at,
            attempts: response.attempts,
        };
        // The user signs these bytes: they must be this mapping's, whatever else the prover says.
        // (Bytes sent without a user key are not used.)
        if let Some(expected) = started.user_signed_bytes() {
            if response.user_signed_bytes.is_empty() {
                return Err(protocol(START, ProtocolProblem::NoUserSignedBytes));
            }
            if response.user_signed_bytes != expected {
                return Err(mismatch(START, MappingField::UserSignedBytes));
            }
        }
        Ok(started)
    }

    /// The enrollment id, which names it to the prover.
    pub fn enrollment_id(&self) -> &[u8; ENROLLMENT_ID_LEN] {
        &self.enrollment
    }

    /// The fields of the mapping it will issue: CPI, MSP, PSI, context, validity window.
    pub fn fields(&self) -> &MappingFields {
        &self.fields
    }

    /// The CPI (normalised), to which the code was sent.
    pub fn cpi(&self) -> &Cpi {
        &self.fields.cpi
    }

    /// The MSP's domain (normalised) that started it.
    pub fn msp(&self) -> &str {
        &self.fields.msp
    }

    /// The key id of the issuer key that will sign the mapping.
    pub fn issuer(&self) -> IssuerId {
        self.issuer
    }

    /// The user's public key, when the user counter-signs the mapping.
    pub fn user_key(&self) -> Option<&[u8; 32]> {
        self.user_key.as_ref()
    }

    /// When the code expires, unix seconds (the prover's clock).
    pub fn code_expires_at(&self) -> u64 {
        self.code_expires_at
    }

    /// Wrong codes allowed before the enrollment dies.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// With a user key: the exact bytes the user signs (`USER_SIG_CONTEXT || canonical body`
    /// of the mapping to be issued), for example on the user's device.
    pub fn user_signed_bytes(&self) -> Option<Vec<u8>> {
        self.user_key
            .as_ref()
            .map(|key| self.fields.user_signed_bytes(&self.issuer, key))
    }

    /// Checks that `mapping`, issued at completion, is the one this enrollment asked for: the
    /// same fields, issuer key id and user key, and (when the user signed) the user's own
    /// signature `user_sig`. The first field that differs is returned.
    pub fn check_mapping(
        &self,
        mapping: &Mapping,
        user_sig: Option<&[u8; 64]>,
    ) -> Result<(), MappingField> {
        let (want, got) = (&self.fields, &mapping.fields);
        let checks = [
            (got.cpi == want.cpi, MappingField::Cpi),
            (got.msp == want.msp, MappingField::Msp),
            (got.psi == want.psi, MappingField::Psi),
            (got.context == want.context, MappingField::Context),
            (
                (got.not_before, got.not_after) == (want.not_before, want.not_after),
                MappingField::Window,
            ),
            (mapping.issuer == self.issuer, MappingField::Issuer),
            (
                mapping.user.as_ref().map(|u| u.key) == self.user_key,
                MappingField::UserKey,
            ),
            (
                match (&mapping.user, user_sig) {
                    (Some(u), Some(sig)) => u.sig == *sig,
                    (None, None) => true,
                    _ => false,
                },
                MappingField::UserSig,
            ),
        ];
        for (same, field) in checks {
            if !same {
                return Err(field);
            }
        }
        Ok(())
    }

    /// Parses the prover's mapping line and checks it ([`Started::check_mapping`]).
    pub(super) fn issued(
        &self,
        line: &str,
        user_sig: Option<&[u8; 64]>,
    ) -> Result<Mapping, EnrollError> {
        let mapping = Mapping::from_json_line(line.trim_end())
            .map_err(|e| protocol(COMPLETE, ProtocolProblem::Mapping(e)))?;
        self.check_mapping(&mapping, user_sig)
            .map_err(|field| mismatch(COMPLETE, field))?;
        Ok(mapping)
    }

    /// The enrollment file's JSON text (one line).
    pub fn to_json(&self) -> String {
        // A struct of strings and integers: serde_json cannot fail on it.
        serde_json::to_string(&StartedJson::from(self.clone()))
            .unwrap_or_else(|_| unreachable!("StartedJson serialises"))
    }

    /// Parses an enrollment file's JSON text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Writes the enrollment file (mode 0600: it names the CPI), atomically, replacing any file
    /// at `path`.
    pub fn save(&self, path: &Path) -> Result<(), EnrollError> {
        super::files::check_output_dir(path)?;
        let text = format!("{}\n", self.to_json());
        write_atomic(path, 0o600, EnrollError::io, |w| {
            std::io::Write::write_all(w, text.as_bytes()).map_err(|e| EnrollError::io(path, e))
        })
    }

    /// Reads an enrollment file written by [`Started::save`].
    pub fn load(path: &Path) -> Result<Self, EnrollError> {
        let text = std::fs::read_to_string(path).map_err(|e| EnrollError::io(path, e))?;
        Self::from_json(&text).map_err(|e| EnrollError::file(path, FileProblem::NotEnrollment(e)))
    }
}

/// The enrollment file's JSON form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartedJson {
    version: u32,
    enrollment: String,
    cpi: String,
    msp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    psi: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<String>,
    not_before: u64,
    not_after: u64,
    issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_signed_bytes: Option<String>,
    code_expires_at: u64,
    attempts: u32,
}

impl From<Started> for StartedJson {
    fn from(s: Started) -> Self {
        let user_signed_bytes = s.user_signed_bytes().map(|b| URL_SAFE_NO_PAD.encode(b));
        Self {
            version: ENROLLMENT_FILE_VERSION,
            enrollment: URL_SAFE_NO_PAD.encode(s.enrollment),
            cpi: s.fields.cpi.as_str().to_owned(),
            msp: s.fields.msp,
            psi: s.fields.psi,
            context: s.fields.context,
            not_before: s.fields.not_before,
            not_after: s.fields.not_after,
            issuer: URL_SAFE_NO_PAD.encode(s.issuer.0),
            user_key: s.user_key.map(|k| URL_SAFE_NO_PAD.encode(k)),
            user_signed_bytes,
            code_expires_at: s.code_expires_at,
            attempts: s.attempts,
        }
    }
}

/// Why an enrollment file's JSON does not make a [`Started`].
#[derive(Debug, thiserror::Error)]
enum StartedJsonError {
    #[error("version {0} (this pir-client reads version {ENROLLMENT_FILE_VERSION})")]
    Version(u32),
    #[error("`{field}`: not base64url of {len} bytes")]
    Binary { field: &'static str, len: usize },
    #[error("{0}")]
    Fields(pir_core::CoreError),
    #[error("`user_signed_bytes` {0}")]
    UserSignedBytes(&'static str),
}

fn binary<const N: usize>(field: &'static str, text: &str) -> Result<[u8; N], StartedJsonError> {
    let bad = || StartedJsonError::Binary { field, len: N };
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())
}

impl TryFrom<StartedJson> for Started {
    type Error = StartedJsonError;

    fn try_from(j: StartedJson) -> Result<Self, Self::Error> {
        if j.version != ENROLLMENT_FILE_VERSION {
            return Err(StartedJsonError::Version(j.version));
        }
        let cpi = Cpi::parse(&j.cpi).map_err(StartedJsonError::Fields)?;
        let fields = MappingFields::new(
            cpi,
            &j.msp,
            j.psi.as_deref(),
            j.context.as_deref(),
            j.not_before,
            j.not_after,
        )
        .map_err(StartedJsonError::Fields)?;
        let started = Self {
            enrollment: binary("enrollment", &j.enrollment)?,
            fields,
            issuer: IssuerId(binary("issuer", &j.issuer)?),
            user_key: j
                .user_key
                .as_deref()
                .map(|k| binary("user_key", k))
                .transpose()?,
            code_expires_at: j.code_expires_at,
            attempts: j.attempts,
        };
        // Redundant in the file, for whoever carries it to the user's device; it must agree.
        let expected = started.user_signed_bytes();
        match (j.user_signed_bytes, expected) {
            (None, None) => {}
            (Some(_), None) => return Err(StartedJsonError::UserSignedBytes("without `user_key`")),
            (None, Some(_)) => return Err(StartedJsonError::UserSignedBytes("missing")),
            (Some(text), Some(expected)) => {
                if URL_SAFE_NO_PAD.decode(text).ok() != Some(expected) {
                    return Err(StartedJsonError::UserSignedBytes(
                        "are not the mapping's described by the other fields",
                    ));
                }
            }
        }
        Ok(started)
    }
}

#[cfg(test)]
mod tests {
    use pir_core::{
        identity::UserKey,
        testing::{issuer, mapping_valid, other_issuer, user_key},
    };

    use super::*;

    const WINDOW: (u64, u64) = (1_000, 2_000);

    fn user() -> UserKey {
        UserKey::from_seed(&user_key().to_bytes())
    }

    /// The start of tel:+14155550100 at chat.example as @alice, work, with or without the
    /// fixture user key, answered honestly by the fixture issuer.
    fn started(with_user: bool) -> Started {
        let cpi = Cpi::parse("tel:+1 415 555 0100").unwrap();
        let user_key = with_user.then(|| user().public_bytes());
        let asked =
            Asked::new(&cpi, "Chat.Example", Some("@alice"), Some("work"), user_key).unwrap();
        let response = honest_response(&asked);
        Started::from_response(asked, response).unwrap()
    }

    fn honest_response(asked: &Asked) -> StartEnrollmentResponse {
        let fields = MappingFields {
            not_before: WINDOW.0,
            not_after: WINDOW.1,
            ..asked.fields.clone()
        };
        StartEnrollmentResponse {
            enrollment_id: vec![7; 16],
            code_expires_at: 1_600,
            attempts: 3,
            not_before: WINDOW.0,
            not_after: WINDOW.1,
            issuer: issuer().id().0.to_vec(),
            cpi: asked.fields.cpi.as_str().to_owned(),
            user_signed_bytes: asked
                .user_key
                .map(|k| fields.user_signed_bytes(&issuer().id(), &k))
                .unwrap_or_default(),
        }
    }

    /// What the honest prover issues for `started`, and the user's signature in it.
    fn honest_mapping(started: &Started) -> (Mapping, Option<[u8; 64]>) {
        let user_key = user_key();
        let user = started.user_key().map(|_| &user_key);
        let m = mapping_valid(
            "tel:+14155550100",
            "chat.example",
            Some("@alice"),
            Some("work"),
            WINDOW,
            user,
        );
        let sig = m.user.as_ref().map(|u| u.sig);
        (m, sig)
    }

    #[test]
    fn the_honest_mapping_is_accepted() {
        for with_user in [false, true] {
            let s = started(with_user);
            let (m, sig) = honest_mapping(&s);
            assert_eq!(s.check_mapping(&m, sig.as_ref()), Ok(()));
            assert_eq!(s.issued(&m.to_json_line(), sig.as_ref()).unwrap(), m);
            if with_user {
                // The bytes the user signs are the issued mapping's.
                assert_eq!(s.user_signed_bytes().unwrap(), m.user_signed_bytes());
                let signed = user()
                    .sign_consent(&s.user_signed_bytes().unwrap())
                    .unwrap();
                assert_eq!(Some(signed), sig);
            }
        }
    }

    /// Every field a hostile prover could change in the issued mapping is caught, and named.
    #[test]
    fn a_mapping_that_differs_in_one_field_is_refused() {
        let s = started(true);
        let (good, sig) = honest_mapping(&s);
        let fixture_user = user_key();
        let other_user = ed25519_dalek_key(9);
        let sign = |cpi: &str, msp: &str, psi, context, window, key: &IssuerKeyChoice, user| {
            let m = mapping_valid(cpi, msp, psi, context, window, user);
            match key {
                IssuerKeyChoice::Fixture => m,
                IssuerKeyChoice::Other => {
                    MappingFields::new(m.fields.cpi.clone(), msp, psi, context, window.0, window.1)
                        .unwrap()
                        .sign(&other_issuer(), user)
                        .unwrap()
                }
            }
        };
        use IssuerKeyChoice::*;
        let cases = [
            (
                sign(
                    "tel:+14155550101",
                    "chat.example",
                    Some("@alice"),
                    Some("work"),
                    WINDOW,
                    &Fixture,
                    Some(&fixture_user),
                ),
                MappingField::Cpi,
            ),
            (
                sign(
                    "tel:+14155550100",
                    "evil.example",
                    Some("@alice"),
                    Some("work"),
                    WINDOW,
                    &Fixture,
                    Some(&fixture_user),
                ),
                MappingField::Msp,
            ),
            (
                sign(
                    "tel:+14155550100",
                    "chat.example",
                    Some("@mallory"),
                    Some("work"),
                    WINDOW,
                    &Fixture,
                    Some(&fixture_user),
                ),
                MappingField::Psi,
            ),
            (
                sign(
                    "tel:+14155550100",
                    "chat.example",
                    None,
                    Some("work"),
                    WINDOW,
                    &Fixture,
                    Some(&fixture_user),
                ),
                MappingField::Psi,
            ),
            (
                sign(
                    "tel:+14155550100",
                    "chat.example",
                    Some("@alice"),
                    Some("personal"),
                    WINDOW,
                    &Fixture,
                    Some(&fixture_user),
                ),
                MappingField::Context,
            ),
            (
                sign(
                    "tel:+14155550100",
                    "chat.example",
                    Some("@alice"),
                    Some("work"),
                    (WINDOW.0, WINDOW.1 + 1),
                    &Fixture,
                    Some(&fixture_user),
                ),
                MappingField::Window,
            ),
            (
                sign(
                    "tel:+14155550100",
                    "chat.example",
                    Some("@alice"),
                    Some("work"),
                    WINDOW,
                    &Other,
                    Some(&fixture_user),
                ),
                MappingField::Issuer,
            ),
            (
                sign(
                    "tel:+14155550100",
                    "chat.example",
                    Some("@alice"),
                    Some("work"),
                    WINDOW,
                    &Fixture,
                    Some(&other_user),
                ),
                MappingField::UserKey,
            ),
            (
                sign(
                    "tel:+14155550100",
                    "chat.example",
                    Some("@alice"),
                    Some("work"),
                    WINDOW,
                    &Fixture,
                    None,
                ),
                MappingField::UserKey,
            ),
        ];
        for (bad, field) in cases {
            assert_eq!(s.check_mapping(&bad, sig.as_ref()), Err(field), "{field:?}");
            let err = s.issued(&bad.to_json_line(), sig.as_ref()).unwrap_err();
            assert!(
                matches!(err, EnrollError::Mismatch { rpc: COMPLETE, field: f } if f == field),
                "{err}"
            );
        }
        // The user's key with another signature than the user made.
        let mut forged = good.clone();
        forged.user.as_mut().unwrap().sig[0] ^= 1;
        assert_eq!(
            s.check_mapping(&forged, sig.as_ref()),
            Err(MappingField::UserSig)
        );
        // A mapping with consent for an enrollment without a user key.
        let plain = started(false);
        assert_eq!(plain.check_mapping(&good, None), Err(MappingField::UserKey));
        // A line that is not a mapping at all.
        assert!(matches!(
            s.issued("{\"cpi\":1}", sig.as_ref()).unwrap_err(),
            EnrollError::Protocol {
                problem: ProtocolProblem::Mapping(_),
                ..
            }
        ));
    }

    enum IssuerKeyChoice {
        Fixture,
        Other,
    }

    fn ed25519_dalek_key(seed: u8) -> pir_core::SigningKey {
        pir_core::SigningKey::from_bytes(&[seed; 32])
    }

    /// The start's answer is checked too: the user must never sign another mapping's bytes.
    #[test]
    fn a_start_answer_about_another_mapping_is_refused() {
        let cpi = Cpi::parse("tel:+14155550100").unwrap();
        let asked = Asked::new(
            &cpi,
            "chat.example",
            Some("@alice"),
            None,
            Some(user().public_bytes()),
        )
        .unwrap();
        let honest = honest_response(&asked);
        let start = |r| Started::from_response(asked.clone(), r);
        start(honest.clone()).unwrap();

        let other_cpi = StartEnrollmentResponse {
            cpi: "tel:+14155550101".into(),
            ..honest.clone()
        };
        assert!(matches!(
            start(other_cpi).unwrap_err(),
            EnrollError::Mismatch {
                field: MappingField::Cpi,
                ..
            }
        ));
        // Bytes of a mapping to another MSP, or for another user key.
        let mut evil = asked.fields.clone();
        evil.msp = "evil.example".into();
        (evil.not_before, evil.not_after) = WINDOW;
        for bytes in [
            evil.user_signed_bytes(&issuer().id(), &user().public_bytes()),
            {
                let mut f = asked.fields.clone();
                (f.not_before, f.not_after) = WINDOW;
                f.user_signed_bytes(&issuer().id(), &[3; 32])
            },
        ] {
            let r = StartEnrollmentResponse {
                user_signed_bytes: bytes,
                ..honest.clone()
            };
            assert!(matches!(
                start(r).unwrap_err(),
                EnrollError::Mismatch {
                    field: MappingField::UserSignedBytes,
                    ..
                }
            ));
        }
        let none = StartEnrollmentResponse {
            user_signed_bytes: Vec::new(),
            ..honest.clone()
        };
        assert!(matches!(
            start(none).unwrap_err(),
            EnrollError::Protocol {
                problem: ProtocolProblem::NoUserSignedBytes,
                ..
            }
        ));
        let short_id = StartEnrollmentResponse {
            enrollment_id: vec![1; 15],
            ..honest.clone()
        };
        assert!(matches!(
            start(short_id).unwrap_err(),
            EnrollError::Protocol {
                problem: ProtocolProblem::EnrollmentIdLength(15),
                ..
            }
        ));
        let reversed = StartEnrollmentResponse {
            not_before: 5,
            not_after: 4,
            ..honest
        };
        assert!(matches!(
            start(reversed).unwrap_err(),
            EnrollError::Protocol {
                problem: ProtocolProblem::Window(_),
                ..
            }
        ));
    }

    #[test]
    fn the_enrollment_file_round_trips_and_refuses_tampering() {
        for with_user in [false, true] {
            let s = started(with_user);
            let json = s.to_json();
            assert_eq!(Started::from_json(&json).unwrap(), s);
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(value["version"], 1);
            assert_eq!(value["msp"], "chat.example");
            assert_eq!(value["enrollment"], URL_SAFE_NO_PAD.encode([7u8; 16]));
            assert_eq!(value["issuer"], issuer().id().to_string());
            assert_eq!(value.get("user_signed_bytes").is_some(), with_user);
        }
        let json = started(true).to_json();
        let edit = |from: &str, to: &str| {
            assert!(json.contains(from), "{from}");
            Started::from_json(&json.replace(from, to))
                .unwrap_err()
                .to_string()
        };
        assert!(edit("@alice", "@mallory").contains("user_signed_bytes"));
        assert!(edit("\"version\":1", "\"version\":2").contains("version 2"));
        assert!(edit("\"attempts\"", "\"tries\"").contains("unknown field"));
        assert!(edit(&URL_SAFE_NO_PAD.encode([7u8; 16]), "AAAA").contains("enrollment"));
        assert!(edit("tel:+14155550100", "tel:12").contains("CPI"));
    }

    #[test]
    fn the_file_is_owner_only_and_named_in_errors() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enrollment.json");
        let s = started(true);
        s.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Started::load(&path).unwrap(), s);
        std::fs::write(&path, "{}").unwrap();
        let err = Started::load(&path).unwrap_err();
        assert!(
            matches!(
                &err,
                EnrollError::File {
                    problem: FileProblem::NotEnrollment(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with(&path.display().to_string()),
            "{err}"
        );
        let missing = dir.path().join("nowhere/enrollment.json");
        assert!(matches!(
            s.save(&missing).unwrap_err(),
            EnrollError::File {
                problem: FileProblem::NoSuchDirectory(_),
                ..
            }
        ));
    }
}
