//! Known-answer vectors for the signed mapping format (`docs/mapping-format.md`,
//! `test_vectors/mapping_signatures.json`). Keyword layout version 3 has its own vectors
//! (`tests/keyword_v3.rs`); versions 1's and 2's are gone with their layouts.
//!
//! The JSON file is written by `regenerate_vectors` from the implementation, never by hand:
//!
//! ```text
//! cargo test -p pir-core --release --test vectors -- --ignored regenerate
//! ```
//!
//! Every other test here reads the committed file and checks each field against the
//! implementation, and rebuilds the signed bytes, issuer ids and compact entries from the
//! documents' description without calling the implementation, so a silent change to any
//! encoding fails. The compact entries are read out of a version 3 snapshot of each case alone
//! (so its MSP and issuer are index 0 of one-name dictionaries) by following the documented
//! record and bucket formats (`src/keyword/{derive,entry,bucket}.rs`) with HKDF, SHA-256 and
//! AES-GCM-SIV directly.

mod documented;

use std::path::PathBuf;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use pir_core::{
    BuildOptions, CoreError, Cpi, IssuerKey, Mapping, MappingFields, Snapshot, TrustStore,
    identity::{
        ISSUER_ID_CONTEXT, ISSUER_SIG_CONTEXT, IssuerId, MAPPING_FORMAT_VERSION, USER_SIG_CONTEXT,
        UserConsent, canonical_body,
    },
    testing::{oprf_key, tiny_scheme},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAPPING_FILE: &str = "mapping_signatures.json";

/// RFC 8032 section 7.1 TEST 1, 2 and 3 secret keys (seeds), so key derivation can be
/// cross-checked against the RFC as well.
const SEED_RFC8032_1: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const SEED_RFC8032_2: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const SEED_RFC8032_3: &str = "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7";

/// 2026-01-01T00:00:00Z and 2027-01-01T00:00:00Z.
const JAN_2026: u64 = 1_767_225_600;
const JAN_2027: u64 = 1_798_761_600;
/// A time inside [JAN_2026, JAN_2027].
const MID: u64 = 1_780_000_000;

/// The order of the Ed25519 group, little-endian (RFC 8032 `L`).
const GROUP_ORDER_LE: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

// ---- file schema ------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingVectorFile {
    description: Vec<String>,
    format_version: u8,
    issuer_id_context_hex: String,
    issuer_sig_context_hex: String,
    user_sig_context_hex: String,
    cases: Vec<MappingCase>,
    verification_cases: Vec<VerificationCase>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingCase {
    name: String,
    comment: String,
    issuer_seed_hex: String,
    issuer_public_key_hex: String,
    issuer_public_key_b64url: String,
    issuer_id_b64url: String,
    user_seed_hex: Option<String>,
    user_public_key_hex: Option<String>,
    user_public_key_b64url: Option<String>,
    input: InputFields,
    normalised_cpi: String,
    normalised_msp: String,
    canonical_body_hex: String,
    issuer_signed_bytes_hex: String,
    user_signed_bytes_hex: Option<String>,
    issuer_sig_b64url: String,
    user_sig_b64url: Option<String>,
    json_line: String,
    compact_entry_hex: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputFields {
    cpi: String,
    msp: String,
    psi: Option<String>,
    context: Option<String>,
    not_before: u64,
    not_after: u64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerificationCase {
    name: String,
    comment: String,
    json_line: String,
    trusted_issuer_public_keys_b64url: Vec<String>,
    now: u64,
    expected: String,
}

// ---- helpers ----------------------------------------------------------------------------------

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test_vectors")
        .join(name)
}

fn load<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let text = std::fs::read_to_string(vector_path(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn to_pretty<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap();
    text.push('\n');
    text
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64<const N: usize>(text: &str) -> [u8; N] {
    URL_SAFE_NO_PAD.decode(text).unwrap().try_into().unwrap()
}

fn unhex<const N: usize>(text: &str) -> [u8; N] {
    hex::decode(text).unwrap().try_into().unwrap()
}

/// The error names used in `verification_cases[].expected`.
fn outcome(result: Result<(), CoreError>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(CoreError::InvalidCpi { .. }) => "invalid_cpi".into(),
        Err(CoreError::InvalidField { field, .. }) => format!("invalid_field:{field}"),
        Err(CoreError::MalformedJson(_)) => "malformed_json".into(),
        Err(CoreError::UnknownIssuer(_)) => "unknown_issuer".into(),
        Err(CoreError::BadIssuerSignature) => "bad_issuer_signature".into(),
        Err(CoreError::BadUserSignature) => "bad_user_signature".into(),
        Err(CoreError::NotYetValid { .. }) => "not_yet_valid".into(),
        Err(CoreError::Expired { .. }) => "expired".into(),
        Err(other) => format!("unexpected: {other}"),
    }
}

/// Parses a JSON line and verifies it, as a DP or client would.
fn parse_and_verify(line: &str, trusted: &[String], now: u64) -> String {
    let mapping = match Mapping::from_json_line(line) {
        Ok(m) => m,
        Err(e) => return outcome(Err(e)),
    };
    let mut trust = TrustStore::new();
    for key in trusted {
        trust
            .add(VerifyingKey::from_bytes(&unb64(key)).unwrap())
            .unwrap();
    }
    outcome(mapping.verify(&trust, now))
}

// ---- independent implementation of the document ----------------------------------------------

/// `u16le(len) || bytes`, as section "Canonical body" of the document says.
fn doc_put_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The canonical body, assembled from the document alone (deliberately not `canonical_body`).
/// Text fields are the case's normalised CPI and MSP and its input psi and context.
fn doc_canonical_body(
    case: &MappingCase,
    issuer_id: &[u8; 8],
    user_key: Option<&[u8; 32]>,
) -> Vec<u8> {
    let mut out = vec![0x01];
    doc_put_str(&mut out, &case.normalised_cpi);
    doc_put_str(&mut out, &case.normalised_msp);
    for opt in [&case.input.psi, &case.input.context] {
        match opt {
            None => out.push(0x00),
            Some(s) => {
                out.push(0x01);
                doc_put_str(&mut out, s);
            }
        }
    }
    out.extend_from_slice(&case.input.not_before.to_le_bytes());
    out.extend_from_slice(&case.input.not_after.to_le_bytes());
    out.extend_from_slice(issuer_id);
    match user_key {
        None => out.push(0x00),
        Some(k) => {
            out.push(0x01);
            out.extend_from_slice(k);
        }
    }
    out
}

/// `SHA-256("pir-discovery/issuer-id/v1\0" || public key)[0..8]`, from the document.
fn doc_issuer_id(public_key: &[u8; 32]) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(b"pir-discovery/issuer-id/v1\0")
        .chain_update(public_key)
        .finalize();
    digest[..8].try_into().unwrap()
}

/// The compact entry of a case, from the document's description (section 9): a head of
/// flags, the MSP's and the issuer's index (0: a snapshot of this case alone), u8 length
/// prefixes.
fn doc_compact_entry(case: &MappingCase) -> Vec<u8> {
    let psi = case.input.psi.as_deref();
    let context = case.input.context.as_deref();
    let mut flags = 0u8;
    if psi.is_some() {
        flags |= 1;
    }
    if context.is_some() {
        flags |= 2;
    }
    if case.user_public_key_hex.is_some() {
        flags |= 4;
    }
    let mut out = vec![flags, 0];
    for s in [psi, context].into_iter().flatten() {
        out.push(u8::try_from(s.len()).unwrap());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&case.input.not_before.to_le_bytes());
    out.extend_from_slice(&case.input.not_after.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&unb64::<64>(&case.issuer_sig_b64url));
    if let (Some(k), Some(sig)) = (&case.user_public_key_b64url, &case.user_sig_b64url) {
        out.extend_from_slice(&unb64::<32>(k));
        out.extend_from_slice(&unb64::<64>(sig));
    }
    out
}

/// Builds a version 3 snapshot of each of `mappings` alone and returns its compact entry as
/// the snapshot holds it, read out by following the documents (`documented::open_record`): the
/// OPRF output comes from the DP's key, everything after it is computed here.
fn compact_entries_from_snapshot(mappings: &[Mapping]) -> Vec<Vec<u8>> {
    let mut trust = TrustStore::new();
    for seed in [SEED_RFC8032_1, SEED_RFC8032_3] {
        trust.add(signing_key(seed).verifying_key()).unwrap();
    }
    let opts = BuildOptions {
        epoch: 1,
        now: JAN_2026,
        salt: Some([7; 32]),
        scheme: Some(tiny_scheme().into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    let oprf = oprf_key();
    mappings
        .iter()
        .map(|m| {
            let (snapshot, report) =
                Snapshot::build(vec![m.clone()], &trust, &oprf, &opts).unwrap();
            assert_eq!(report.stored_mappings, 1);
            // What the header publishes: the layout's salt, counts, table and dictionaries.
            let layout = &snapshot.header().layout;
            assert_eq!(layout.msps, std::slice::from_ref(&m.fields.msp));
            assert_eq!(layout.issuers, [m.issuer.0]);
            let y = oprf.evaluate(&m.fields.cpi).unwrap();
            let y = y.as_bytes();
            let bucket = documented::bucket(
                y,
                &layout.salt,
                layout.num_groups,
                &layout.choices,
                layout.num_buckets,
            );
            let item = snapshot.bucket(bucket as usize).unwrap();
            let record = documented::open_record(item, y, &layout.salt).expect("the record");
            // One mapping: the record is its compact entry, head first.
            assert_eq!(record[0] & !7, 0, "{}: a mapping's head", m.fields.cpi);
            record
        })
        .collect()
}

// ---- generator --------------------------------------------------------------------------------

struct CaseSpec {
    name: &'static str,
    comment: &'static str,
    issuer_seed: &'static str,
    user_seed: Option<&'static str>,
    cpi: &'static str,
    msp: &'static str,
    psi: Option<&'static str>,
    context: Option<&'static str>,
    not_before: u64,
    not_after: u64,
}

fn case_specs() -> Vec<CaseSpec> {
    vec![
        CaseSpec {
            name: "tel-all-fields-with-consent",
            comment: "Every field present; tel CPI in a non-normalised spelling; MSP in mixed \
                      case; the user counter-signs.",
            issuer_seed: SEED_RFC8032_1,
            user_seed: Some(SEED_RFC8032_2),
            cpi: "tel:+1 (415) 555-0100",
            msp: "Chat.Example",
            psi: Some("@alice:chat.example"),
            context: Some("work"),
            not_before: JAN_2026,
            not_after: JAN_2027,
        },
        CaseSpec {
            name: "tel-minimal-no-consent",
            comment: "No psi, no context, no user consent; upper-case scheme; a one-second \
                      window (not_before == not_after is allowed).",
            issuer_seed: SEED_RFC8032_1,
            user_seed: None,
            cpi: "TEL:+44 20 7946 0958",
            msp: "talk.example",
            psi: None,
            context: None,
            not_before: JAN_2026,
            not_after: JAN_2026,
        },
        CaseSpec {
            name: "mailto-psi-with-consent",
            comment: "Email CPI: the local part keeps its case, the domain is lower-cased; \
                      psi without context; MSP with a trailing dot; the user counter-signs.",
            issuer_seed: SEED_RFC8032_3,
            user_seed: Some(SEED_RFC8032_2),
            cpi: "mailto:Alice@Example.COM",
            msp: "mail.example.",
            psi: Some("alice"),
            context: None,
            not_before: JAN_2026,
            not_after: JAN_2027,
        },
        CaseSpec {
            name: "mailto-context-only-full-range",
            comment: "Context without psi; the widest window, 0 to 2^64-1 (JSON readers must \
                      keep not_after as an exact unsigned 64-bit integer).",
            issuer_seed: SEED_RFC8032_3,
            user_seed: None,
            cpi: "mailto:bob@example.org",
            msp: "chat.example",
            psi: None,
            context: Some("personal"),
            not_before: 0,
            not_after: u64::MAX,
        },
        CaseSpec {
            name: "tel-utf8-psi-with-consent",
            comment: "Non-ASCII psi and context: length prefixes count UTF-8 bytes, not \
                      characters; surrounding whitespace of the CPI is ignored.",
            issuer_seed: SEED_RFC8032_1,
            user_seed: Some(SEED_RFC8032_3),
            cpi: " tel:+33 6 12 34 56 78 ",
            msp: "ring.example",
            psi: Some("Ålice Dupont"),
            context: Some("privé"),
            not_before: JAN_2026,
            not_after: JAN_2027,
        },
    ]
}

fn signing_key(seed_hex: &str) -> SigningKey {
    SigningKey::from_bytes(&unhex(seed_hex))
}

fn sign_spec(spec: &CaseSpec) -> Mapping {
    let issuer = IssuerKey::from_seed(&unhex(spec.issuer_seed));
    let user = spec.user_seed.map(signing_key);
    MappingFields::new(
        Cpi::parse(spec.cpi).unwrap(),
        spec.msp,
        spec.psi,
        spec.context,
        spec.not_before,
        spec.not_after,
    )
    .unwrap()
    .sign(&issuer, user.as_ref())
    .unwrap()
}

fn generate_case(spec: &CaseSpec, compact_entry: &[u8]) -> MappingCase {
    let issuer = IssuerKey::from_seed(&unhex(spec.issuer_seed));
    let issuer_pk = issuer.verifying_key().to_bytes();
    let user_pk = spec
        .user_seed
        .map(|s| signing_key(s).verifying_key().to_bytes());
    let m = sign_spec(spec);
    MappingCase {
        name: spec.name.into(),
        comment: spec.comment.into(),
        issuer_seed_hex: spec.issuer_seed.into(),
        issuer_public_key_hex: hex::encode(issuer_pk),
        issuer_public_key_b64url: b64(&issuer_pk),
        issuer_id_b64url: b64(&issuer.id().0),
        user_seed_hex: spec.user_seed.map(str::to_owned),
        user_public_key_hex: user_pk.map(hex::encode),
        user_public_key_b64url: user_pk.map(|k| b64(&k)),
        input: InputFields {
            cpi: spec.cpi.into(),
            msp: spec.msp.into(),
            psi: spec.psi.map(str::to_owned),
            context: spec.context.map(str::to_owned),
            not_before: spec.not_before,
            not_after: spec.not_after,
        },
        normalised_cpi: m.fields.cpi.to_string(),
        normalised_msp: m.fields.msp.clone(),
        canonical_body_hex: hex::encode(m.canonical_body()),
        issuer_signed_bytes_hex: hex::encode(m.issuer_signed_bytes()),
        user_signed_bytes_hex: m.user.as_ref().map(|_| hex::encode(m.user_signed_bytes())),
        issuer_sig_b64url: b64(&m.issuer_sig),
        user_sig_b64url: m.user.as_ref().map(|u| b64(&u.sig)),
        json_line: m.to_json_line(),
        compact_entry_hex: hex::encode(compact_entry),
    }
}

/// Replaces exactly one occurrence of `from` in `line`.
fn replace_once(line: &str, from: &str, to: &str) -> String {
    assert_eq!(line.matches(from).count(), 1, "{from:?} in {line}");
    line.replacen(from, to, 1)
}

fn generate_verification_cases(specs: &[CaseSpec]) -> Vec<VerificationCase> {
    let full = sign_spec(&specs[0]);
    let minimal = sign_spec(&specs[1]);
    let email = sign_spec(&specs[2]);
    let line = full.to_json_line();
    let key = |seed| b64(signing_key(seed).verifying_key().as_bytes());
    let trust1 = vec![key(SEED_RFC8032_1)];
    let issuer_sig = b64(&full.issuer_sig);
    let user = full.user.as_ref().unwrap();
    let user_sig = b64(&user.sig);
    let user_key = b64(&user.key);
    let issuer_id = b64(&full.issuer.0);

    let mut flipped_user_sig = user.sig;
    flipped_user_sig[0] ^= 1;
    let mut flipped_issuer_sig = full.issuer_sig;
    flipped_issuer_sig[0] ^= 1;

    // S + L: the same signature with a non-reduced scalar (malleability).
    let mut malleable = full.issuer_sig;
    let mut carry = 0u16;
    for (s, l) in malleable[32..].iter_mut().zip(GROUP_ORDER_LE) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);

    // A weak (small-order) user key: the identity point, with R = identity and S = 0. The
    // cofactorless equation [S]B = R + [k]A holds for every message, so a non-strict verifier
    // accepts it; the issuer signature over a body naming that key is genuine.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut weak_sig = [0u8; 64];
    weak_sig[0] = 1;
    let issuer1 = signing_key(SEED_RFC8032_1);
    let body = canonical_body(&full.fields, &full.issuer, Some(&identity));
    let weak = Mapping {
        fields: full.fields.clone(),
        issuer: full.issuer,
        issuer_sig: issuer1
            .sign(&[ISSUER_SIG_CONTEXT, &body].concat())
            .to_bytes(),
        user: Some(UserConsent {
            key: identity,
            sig: weak_sig,
        }),
    };

    let case =
        |name: &str, comment: &str, json_line: String, trusted: &[String], now, exp: &str| {
            VerificationCase {
                name: name.into(),
                comment: comment.into(),
                json_line,
                trusted_issuer_public_keys_b64url: trusted.to_vec(),
                now,
                expected: exp.into(),
            }
        };
    vec![
        case(
            "valid",
            "Case tel-all-fields-with-consent as is.",
            line.clone(),
            &trust1,
            MID,
            "ok",
        ),
        case(
            "valid-non-normalised-json",
            "The reader normalises cpi and msp before rebuilding the signed bytes.",
            replace_once(
                &replace_once(&line, "tel:+14155550100", "tel:+1-415-555-0100"),
                "\"chat.example\"",
                "\"CHAT.Example.\"",
            ),
            &trust1,
            MID,
            "ok",
        ),
        case(
            "valid-at-not-before",
            "The window is inclusive at both ends: a one-second window at its only second.",
            minimal.to_json_line(),
            &trust1,
            JAN_2026,
            "ok",
        ),
        case(
            "valid-at-not-after",
            "The window is inclusive at not_after.",
            line.clone(),
            &trust1,
            JAN_2027,
            "ok",
        ),
        case(
            "unknown-issuer",
            "The issuer id names no trusted key.",
            line.clone(),
            &[key(SEED_RFC8032_3)],
            MID,
            "unknown_issuer",
        ),
        case(
            "unknown-issuer-before-bad-signature",
            "Issuer lookup comes before any signature check.",
            replace_once(&line, &issuer_sig, &b64(&flipped_issuer_sig)),
            &[key(SEED_RFC8032_3)],
            MID,
            "unknown_issuer",
        ),
        case(
            "tampered-msp",
            "The MSP was changed after signing.",
            replace_once(&line, "\"chat.example\"", "\"evil.example\""),
            &trust1,
            MID,
            "bad_issuer_signature",
        ),
        case(
            "tampered-cpi",
            "The same mapping presented for another number.",
            replace_once(&line, "tel:+14155550100", "tel:+14155550101"),
            &trust1,
            MID,
            "bad_issuer_signature",
        ),
        case(
            "context-removed",
            "Removing an optional field changes its presence byte.",
            replace_once(&line, ",\"context\":\"work\"", ""),
            &trust1,
            MID,
            "bad_issuer_signature",
        ),
        case(
            "consent-stripped",
            "Dropping user_key and user_sig changes the body's last byte: the issuer signature \
             fails.",
            replace_once(
                &line,
                &format!(",\"user_key\":\"{user_key}\",\"user_sig\":\"{user_sig}\""),
                "",
            ),
            &trust1,
            MID,
            "bad_issuer_signature",
        ),
        case(
            "consent-key-swapped",
            "The issuer signature covers the user key.",
            replace_once(
                &line,
                &user_key,
                &b64(signing_key(SEED_RFC8032_3).verifying_key().as_bytes()),
            ),
            &trust1,
            MID,
            "bad_issuer_signature",
        ),
        case(
            "consent-from-another-mapping",
            "A user signature is bound to its body: case mailto-psi-with-consent has the same \
             user key but another body.",
            replace_once(&line, &user_sig, &b64(&email.user.as_ref().unwrap().sig)),
            &trust1,
            MID,
            "bad_user_signature",
        ),
        case(
            "issuer-signature-non-canonical-s",
            "The issuer signature with S replaced by S + L is refused (S must be < L).",
            replace_once(&line, &issuer_sig, &b64(&malleable)),
            &trust1,
            MID,
            "bad_issuer_signature",
        ),
        case(
            "user-signature-flipped",
            "One bit of the user signature's R flipped.",
            replace_once(&line, &user_sig, &b64(&flipped_user_sig)),
            &trust1,
            MID,
            "bad_user_signature",
        ),
        case(
            "issuer-before-user",
            "Both signatures broken: the issuer's is checked first.",
            replace_once(
                &replace_once(&line, &user_sig, &b64(&flipped_user_sig)),
                &issuer_sig,
                &b64(&flipped_issuer_sig),
            ),
            &trust1,
            MID,
            "bad_issuer_signature",
        ),
        case(
            "weak-user-key",
            "User key is the identity point (small order), R = identity, S = 0: accepted by a \
             cofactorless non-strict verifier for any message, refused by strict verification.",
            weak.to_json_line(),
            &trust1,
            MID,
            "bad_user_signature",
        ),
        case(
            "not-yet-valid",
            "One second before not_before.",
            line.clone(),
            &trust1,
            JAN_2026 - 1,
            "not_yet_valid",
        ),
        case(
            "expired",
            "One second after not_after.",
            line.clone(),
            &trust1,
            JAN_2027 + 1,
            "expired",
        ),
        case(
            "signatures-before-clock",
            "Tampered and expired: signatures are checked before the validity window.",
            replace_once(&line, "\"chat.example\"", "\"evil.example\""),
            &trust1,
            JAN_2027 + 1,
            "bad_issuer_signature",
        ),
        case(
            "window-inverted",
            "not_before > not_after is refused when the line is read.",
            replace_once(
                &line,
                &format!("\"not_before\":{JAN_2026}"),
                &format!("\"not_before\":{}", JAN_2027 + 1),
            ),
            &trust1,
            MID,
            "invalid_field:not_before",
        ),
        case(
            "empty-psi",
            "An optional text field, when present, is 1 byte or more.",
            replace_once(&line, "\"@alice:chat.example\"", "\"\""),
            &trust1,
            MID,
            "invalid_field:psi",
        ),
        case(
            "context-too-long",
            "context is at most 32 bytes.",
            replace_once(&line, "\"work\"", &format!("\"{}\"", "w".repeat(33))),
            &trust1,
            MID,
            "invalid_field:context",
        ),
        case(
            "msp-not-a-domain",
            "msp must be a DNS name of a-z, 0-9, - labels.",
            replace_once(&line, "\"chat.example\"", "\"chat_example\""),
            &trust1,
            MID,
            "invalid_field:msp",
        ),
        case(
            "local-number",
            "tel: CPIs must be global numbers.",
            replace_once(&line, "tel:+14155550100", "tel:4155550100"),
            &trust1,
            MID,
            "invalid_cpi",
        ),
        case(
            "unknown-field",
            "Unknown fields are refused.",
            replace_once(&line, "\"msp\":", "\"note\":\"x\",\"msp\":"),
            &trust1,
            MID,
            "malformed_json",
        ),
        case(
            "padded-base64",
            "Binary fields are base64url without padding; padding is refused.",
            replace_once(
                &line,
                &format!("\"{issuer_id}\""),
                &format!("\"{issuer_id}=\""),
            ),
            &trust1,
            MID,
            "invalid_field:issuer",
        ),
        case(
            "user-key-without-signature",
            "user_key and user_sig come together or not at all.",
            replace_once(&line, &format!(",\"user_sig\":\"{user_sig}\""), ""),
            &trust1,
            MID,
            "invalid_field:user_sig",
        ),
    ]
}

fn generate_mappings() -> MappingVectorFile {
    let specs = case_specs();
    let mappings: Vec<Mapping> = specs.iter().map(sign_spec).collect();
    MappingVectorFile {
        description: vec![
            "Known answers for signed mappings (pir-core src/mapping.rs, src/json.rs, \
             docs/mapping-format.md)."
                .into(),
            "Seeds are Ed25519 secret keys as in RFC 8032 (the RFC's TEST 1, 2 and 3 keys). \
             Public keys, ids and signatures are base64url without padding; byte strings \
             are lower-case hex."
                .into(),
            "issuer_signed_bytes = ISSUER_SIG_CONTEXT || canonical_body, user_signed_bytes = \
             USER_SIG_CONTEXT || canonical_body; signatures are Ed25519 (RFC 8032, \
             deterministic) over those bytes."
                .into(),
            "compact_entry_hex: the mapping as a version 3 record stores it in a snapshot of this case \
             alone (MSP and issuer: index 0), taken from a snapshot built by the implementation."
                .into(),
            "verification_cases: parse json_line, trust exactly the listed keys, verify at \
             `now`; `expected` is `ok` or the first failure (names as in the document)."
                .into(),
            "Written by `cargo test -p pir-core --test vectors -- --ignored regenerate`.".into(),
        ],
        format_version: MAPPING_FORMAT_VERSION,
        issuer_id_context_hex: hex::encode(ISSUER_ID_CONTEXT),
        issuer_sig_context_hex: hex::encode(ISSUER_SIG_CONTEXT),
        user_sig_context_hex: hex::encode(USER_SIG_CONTEXT),
        cases: specs
            .iter()
            .zip(compact_entries_from_snapshot(&mappings))
            .map(|(spec, compact)| generate_case(spec, &compact))
            .collect(),
        verification_cases: generate_verification_cases(&specs),
    }
}

/// Rewrites the vector file from the implementation. Run only on purpose, after a reviewed
/// format change, and bump the versions that changed.
#[test]
#[ignore = "rewrites test_vectors/mapping_signatures.json"]
fn regenerate_vectors() {
    std::fs::write(vector_path(MAPPING_FILE), to_pretty(&generate_mappings())).unwrap();
}

// ---- checks -----------------------------------------------------------------------------------

#[test]
fn files_are_exactly_what_the_generator_writes() {
    let committed = std::fs::read_to_string(vector_path(MAPPING_FILE)).unwrap();
    assert!(
        committed == to_pretty(&generate_mappings()),
        "{MAPPING_FILE} differs from what the generator writes"
    );
    // Version 1's layout vectors describe a layout no longer built: they must not come back.
    assert!(!vector_path("keyword_layout.json").exists());
}

#[test]
fn constants_match_the_vectors() {
    let file: MappingVectorFile = load(MAPPING_FILE);
    assert_eq!(file.format_version, MAPPING_FORMAT_VERSION);
    assert_eq!(file.format_version, 1);
    assert_eq!(
        hex::decode(&file.issuer_id_context_hex).unwrap(),
        ISSUER_ID_CONTEXT
    );
    assert_eq!(
        hex::decode(&file.issuer_sig_context_hex).unwrap(),
        ISSUER_SIG_CONTEXT
    );
    assert_eq!(
        hex::decode(&file.user_sig_context_hex).unwrap(),
        USER_SIG_CONTEXT
    );
    assert_eq!(ISSUER_ID_CONTEXT, b"pir-discovery/issuer-id/v1\0");
    assert_eq!(ISSUER_SIG_CONTEXT, b"pir-discovery/mapping/v1/issuer\0");
    assert_eq!(USER_SIG_CONTEXT, b"pir-discovery/mapping/v1/user\0");
}

#[test]
fn mapping_vectors_match_the_implementation() {
    let file: MappingVectorFile = load(MAPPING_FILE);
    assert!(file.cases.len() >= 5);
    for case in &file.cases {
        let name = &case.name;

        // Keys and issuer id.
        let issuer = IssuerKey::from_seed(&unhex(&case.issuer_seed_hex));
        let issuer_pk = issuer.verifying_key().to_bytes();
        assert_eq!(hex::encode(issuer_pk), case.issuer_public_key_hex, "{name}");
        assert_eq!(b64(&issuer_pk), case.issuer_public_key_b64url, "{name}");
        assert_eq!(
            IssuerId::of(&issuer.verifying_key()).0,
            unb64::<8>(&case.issuer_id_b64url),
            "{name}"
        );
        assert_eq!(issuer.id().to_string(), case.issuer_id_b64url, "{name}");
        let user = case.user_seed_hex.as_deref().map(signing_key);
        let user_pk = user.as_ref().map(|k| k.verifying_key().to_bytes());
        assert_eq!(user_pk.map(hex::encode), case.user_public_key_hex, "{name}");
        assert_eq!(
            user_pk.map(|k| b64(&k)),
            case.user_public_key_b64url,
            "{name}"
        );

        // Normalisation.
        let cpi = Cpi::parse(&case.input.cpi).unwrap();
        assert_eq!(cpi.as_str(), case.normalised_cpi, "{name}");
        assert_eq!(
            Cpi::parse(&case.normalised_cpi).unwrap(),
            cpi,
            "{name}: normalisation is idempotent"
        );

        // Signing with the seeds gives the same mapping, byte for byte.
        let fields = MappingFields::new(
            cpi,
            &case.input.msp,
            case.input.psi.as_deref(),
            case.input.context.as_deref(),
            case.input.not_before,
            case.input.not_after,
        )
        .unwrap();
        assert_eq!(fields.msp, case.normalised_msp, "{name}");
        let m = fields.clone().sign(&issuer, user.as_ref()).unwrap();
        assert_eq!(m.issuer, issuer.id(), "{name}");

        // Canonical body and signed bytes.
        let body = hex::decode(&case.canonical_body_hex).unwrap();
        assert_eq!(m.canonical_body(), body, "{name}");
        assert_eq!(
            canonical_body(&fields, &issuer.id(), user_pk.as_ref()),
            body,
            "{name}"
        );
        let issuer_signed = hex::decode(&case.issuer_signed_bytes_hex).unwrap();
        assert_eq!(m.issuer_signed_bytes(), issuer_signed, "{name}");
        assert_eq!(
            issuer_signed,
            [ISSUER_SIG_CONTEXT, &body].concat(),
            "{name}"
        );
        let user_signed = case
            .user_signed_bytes_hex
            .as_deref()
            .map(|h| hex::decode(h).unwrap());
        assert_eq!(
            m.user.as_ref().map(|_| m.user_signed_bytes()),
            user_signed,
            "{name}"
        );
        if let Some(us) = &user_signed {
            assert_eq!(*us, [USER_SIG_CONTEXT, &body].concat(), "{name}");
        }

        // Signatures.
        let issuer_sig: [u8; 64] = unb64(&case.issuer_sig_b64url);
        assert_eq!(m.issuer_sig, issuer_sig, "{name}: re-signing differs");
        assert_eq!(
            signing_key(&case.issuer_seed_hex)
                .sign(&issuer_signed)
                .to_bytes(),
            issuer_sig,
            "{name}"
        );
        issuer
            .verifying_key()
            .verify_strict(&issuer_signed, &Signature::from_bytes(&issuer_sig))
            .unwrap();
        let user_sig = case.user_sig_b64url.as_deref().map(unb64::<64>);
        assert_eq!(m.user.as_ref().map(|u| u.sig), user_sig, "{name}");
        assert_eq!(m.user.as_ref().map(|u| u.key), user_pk, "{name}");
        if let (Some(k), Some(sig), Some(bytes)) = (&user, user_sig, &user_signed) {
            assert_eq!(k.sign(bytes).to_bytes(), sig, "{name}");
            k.verifying_key()
                .verify_strict(bytes, &Signature::from_bytes(&sig))
                .unwrap();
        }
        let mut trust = TrustStore::new();
        trust
            .add(VerifyingKey::from_bytes(&unb64(&case.issuer_public_key_b64url)).unwrap())
            .unwrap();
        m.verify_signatures(&trust).unwrap();

        // JSON line.
        assert_eq!(m.to_json_line(), case.json_line, "{name}");
        let parsed = Mapping::from_json_line(&case.json_line).unwrap();
        assert_eq!(parsed, m, "{name}");
        assert_eq!(parsed.to_json_line(), case.json_line, "{name}");
        parsed.verify_signatures(&trust).unwrap();
        let json: serde_json::Value = serde_json::from_str(&case.json_line).unwrap();
        assert_eq!(json["cpi"], case.normalised_cpi.as_str(), "{name}");
        assert_eq!(json["msp"], case.normalised_msp.as_str(), "{name}");
        assert_eq!(json["issuer"], case.issuer_id_b64url.as_str(), "{name}");
        assert_eq!(json["sig"], case.issuer_sig_b64url.as_str(), "{name}");
        assert_eq!(json["not_before"].as_u64(), Some(case.input.not_before));
        assert_eq!(json["not_after"].as_u64(), Some(case.input.not_after));
        assert_eq!(
            json.get("psi").and_then(|v| v.as_str()),
            case.input.psi.as_deref()
        );
        assert_eq!(
            json.get("context").and_then(|v| v.as_str()),
            case.input.context.as_deref()
        );
        assert_eq!(
            json.get("user_key").and_then(|v| v.as_str()),
            case.user_public_key_b64url.as_deref()
        );
        assert_eq!(
            json.get("user_sig").and_then(|v| v.as_str()),
            case.user_sig_b64url.as_deref()
        );
    }
}

/// Rebuilds every case's signed bytes from the document's description alone and checks the
/// committed signatures over them with ed25519-dalek directly.
#[test]
fn mapping_vectors_match_the_document() {
    let file: MappingVectorFile = load(MAPPING_FILE);
    for case in &file.cases {
        let name = &case.name;
        let issuer_pk: [u8; 32] = unhex(&case.issuer_public_key_hex);
        let issuer_id = doc_issuer_id(&issuer_pk);
        assert_eq!(b64(&issuer_id), case.issuer_id_b64url, "{name}");
        let user_pk = case.user_public_key_hex.as_deref().map(unhex::<32>);
        let psi = case.input.psi.as_deref();
        let context = case.input.context.as_deref();
        let body = doc_canonical_body(case, &issuer_id, user_pk.as_ref());
        assert_eq!(hex::encode(&body), case.canonical_body_hex, "{name}");

        // The fixed-size parts, counted: 1 version + 2 + 2 length prefixes + 2 presence bytes
        // + 8 + 8 timestamps + 8 issuer id + 1 user presence byte (+ 32 user key).
        let text_len = case.normalised_cpi.len()
            + case.normalised_msp.len()
            + psi.map_or(0, |s| 2 + s.len())
            + context.map_or(0, |s| 2 + s.len());
        let user_len = if user_pk.is_some() { 32 } else { 0 };
        assert_eq!(body.len(), 32 + text_len + user_len, "{name}");
        assert_eq!(body[0], 1, "{name}: version byte");
        assert_eq!(*body.last().unwrap() == 0, user_pk.is_none(), "{name}");

        let mut issuer_signed = b"pir-discovery/mapping/v1/issuer\0".to_vec();
        issuer_signed.extend_from_slice(&body);
        assert_eq!(
            hex::encode(&issuer_signed),
            case.issuer_signed_bytes_hex,
            "{name}"
        );
        VerifyingKey::from_bytes(&issuer_pk)
            .unwrap()
            .verify_strict(
                &issuer_signed,
                &Signature::from_bytes(&unb64(&case.issuer_sig_b64url)),
            )
            .unwrap();

        match (&user_pk, &case.user_sig_b64url, &case.user_signed_bytes_hex) {
            (None, None, None) => {}
            (Some(pk), Some(sig), Some(signed_hex)) => {
                assert_eq!(
                    unb64::<32>(case.user_public_key_b64url.as_ref().unwrap()),
                    *pk
                );
                let mut user_signed = b"pir-discovery/mapping/v1/user\0".to_vec();
                user_signed.extend_from_slice(&body);
                assert_eq!(hex::encode(&user_signed), *signed_hex, "{name}");
                VerifyingKey::from_bytes(pk)
                    .unwrap()
                    .verify_strict(&user_signed, &Signature::from_bytes(&unb64(sig)))
                    .unwrap();
            }
            _ => panic!("{name}: user key, signature and signed bytes come together"),
        }

        // The JSON line, field by field as the document lists them.
        let mut expected = format!(
            "{{\"cpi\":{},\"msp\":{}",
            serde_json::to_string(&case.normalised_cpi).unwrap(),
            serde_json::to_string(&case.normalised_msp).unwrap()
        );
        if let Some(p) = psi {
            expected += &format!(",\"psi\":{}", serde_json::to_string(p).unwrap());
        }
        if let Some(c) = context {
            expected += &format!(",\"context\":{}", serde_json::to_string(c).unwrap());
        }
        expected += &format!(
            ",\"not_before\":{},\"not_after\":{},\"issuer\":\"{}\",\"sig\":\"{}\"",
            case.input.not_before,
            case.input.not_after,
            case.issuer_id_b64url,
            case.issuer_sig_b64url
        );
        if let (Some(k), Some(s)) = (&case.user_public_key_b64url, &case.user_sig_b64url) {
            expected += &format!(",\"user_key\":\"{k}\",\"user_sig\":\"{s}\"");
        }
        expected.push('}');
        assert_eq!(expected, case.json_line, "{name}");
    }
}

/// The bucket entry format: what a snapshot stores for each case, and the same bytes assembled
/// from the document.
#[test]
fn compact_entries_match_the_snapshot_and_the_document() {
    let file: MappingVectorFile = load(MAPPING_FILE);
    let mappings: Vec<Mapping> = file
        .cases
        .iter()
        .map(|c| Mapping::from_json_line(&c.json_line).unwrap())
        .collect();
    let from_snapshot = compact_entries_from_snapshot(&mappings);
    for (case, stored) in file.cases.iter().zip(from_snapshot) {
        assert_eq!(
            hex::encode(&stored),
            case.compact_entry_hex,
            "{}",
            case.name
        );
        assert_eq!(
            hex::encode(doc_compact_entry(case)),
            case.compact_entry_hex,
            "{}",
            case.name
        );
    }
}

/// Pins the worked example of the document byte by byte.
#[test]
fn worked_example_body_bytes() {
    let file: MappingVectorFile = load(MAPPING_FILE);
    let case = &file.cases[0];
    assert_eq!(case.name, "tel-all-fields-with-consent");
    let body = hex::decode(&case.canonical_body_hex).unwrap();
    let mut expected = vec![0x01];
    expected.extend_from_slice(&[0x10, 0x00]);
    expected.extend_from_slice(b"tel:+14155550100");
    expected.extend_from_slice(&[0x0c, 0x00]);
    expected.extend_from_slice(b"chat.example");
    expected.extend_from_slice(&[0x01, 0x13, 0x00]);
    expected.extend_from_slice(b"@alice:chat.example");
    expected.extend_from_slice(&[0x01, 0x04, 0x00]);
    expected.extend_from_slice(b"work");
    expected.extend_from_slice(&[0x00, 0xb9, 0x55, 0x69, 0, 0, 0, 0]); // 1767225600
    expected.extend_from_slice(&[0x80, 0xec, 0x36, 0x6b, 0, 0, 0, 0]); // 1798761600
    expected.extend_from_slice(&unb64::<8>(&case.issuer_id_b64url));
    expected.push(0x01);
    expected.extend_from_slice(&unhex::<32>(
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    ));
    assert_eq!(body, expected);
}

#[test]
fn verification_cases_give_the_expected_outcome() {
    let file: MappingVectorFile = load(MAPPING_FILE);
    assert!(file.verification_cases.len() >= 20);
    for case in &file.verification_cases {
        assert_eq!(
            parse_and_verify(
                &case.json_line,
                &case.trusted_issuer_public_keys_b64url,
                case.now
            ),
            case.expected,
            "{}",
            case.name
        );
    }
}

/// The weak-key case is only meaningful if a non-strict verifier would accept it.
#[test]
fn weak_user_key_case_needs_strict_verification() {
    let file: MappingVectorFile = load(MAPPING_FILE);
    let case = file
        .verification_cases
        .iter()
        .find(|c| c.name == "weak-user-key")
        .unwrap();
    let m = Mapping::from_json_line(&case.json_line).unwrap();
    let user = m.user.as_ref().unwrap();
    let key = VerifyingKey::from_bytes(&user.key).unwrap();
    assert!(key.is_weak());
    let sig = Signature::from_bytes(&user.sig);
    key.verify(&m.user_signed_bytes(), &sig)
        .expect("the cofactorless non-strict check accepts it");
    key.verify(b"any other message", &sig)
        .expect("for every message");
    assert!(key.verify_strict(&m.user_signed_bytes(), &sig).is_err());
}

/// Section 7, step R6: half of the consent pair names the half that is missing, in both
/// directions (the vectors have only the first), and the document's row says so.
#[test]
fn unpaired_consent_names_the_missing_field() {
    let specs = case_specs();
    let full = sign_spec(&specs[0]);
    let line = full.to_json_line();
    let user = full.user.as_ref().unwrap();
    let without = |field: &str, value: &[u8]| {
        replace_once(&line, &format!(",\"{field}\":\"{}\"", b64(value)), "")
    };
    let trust = [b64(signing_key(SEED_RFC8032_1).verifying_key().as_bytes())];
    assert_eq!(
        parse_and_verify(&without("user_sig", &user.sig), &trust, MID),
        "invalid_field:user_sig"
    );
    assert_eq!(
        parse_and_verify(&without("user_key", &user.key), &trust, MID),
        "invalid_field:user_key"
    );
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/mapping-format.md"),
    )
    .unwrap();
    let r6 = doc
        .lines()
        .find(|l| l.starts_with("| R6 "))
        .expect("row R6");
    assert!(
        r6.contains("`invalid_field:user_sig` when only `user_key`")
            && r6.contains("`invalid_field:user_key` when only `user_sig`"),
        "{r6}"
    );
}
