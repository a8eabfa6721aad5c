//! Shared test fixtures (feature `test-utils`): one fixed issuer and trust store, small scheme
//! shapes, signed mappings and small snapshots, and an in-process lookup.
//!
//! Every test file of the workspace and the fuzz targets take their fixtures from here rather
//! than defining their own. Nothing here is for production: the keys are fixed and public, and
//! the shapes are not vetted.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::{
    BuildOptions, Cpi, DpKey, DpKeys, EvalKeys, IssuerKey, LookupClient, Mapping, MappingFields,
    SchemeFields, SchemeParams, SigningKey, Snapshot, TrustStore,
};

/// Which PIR message `err` found malformed, if it is [`crate::CoreError::PirBytes`].
pub fn malformed(err: &crate::CoreError) -> Option<crate::error::PirMessage> {
    match err {
        crate::CoreError::PirBytes { message, .. } => Some(*message),
        _ => None,
    }
}

/// The time fixtures are valid at (2027-01-15), unix seconds.
pub const NOW: u64 = 1_800_000_000;

/// The fixed issuer every fixture mapping is signed by (it also signed the committed
/// `tests/fixtures/tiny-v1.pirsnap`).
pub fn issuer() -> IssuerKey {
    IssuerKey::from_seed(&[11; 32])
}

/// A second issuer, trusted by nobody unless a test says so.
pub fn other_issuer() -> IssuerKey {
    IssuerKey::from_seed(&[43; 32])
}

/// A fixed DP signing key (snapshot headers).
pub fn dp_key() -> DpKey {
    DpKey::from_seed(&[50; 32])
}

/// The DP keys holding exactly `key`.
pub fn dp_keys_of(key: &DpKey) -> DpKeys {
    DpKeys::parse(&key.to_public_text()).unwrap()
}

/// A fixed user key (self-signed consent).
pub fn user_key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

/// Writes a secret file (a key, a token) as a secret must be to be read: owner-only, 0600.
pub fn write_secret(path: &std::path::Path, contents: impl AsRef<[u8]>) {
    crate::fs::write_atomic(
        path,
        0o600,
        |_, e| e,
        |w| std::io::Write::write_all(w, contents.as_ref()),
    )
    .unwrap();
}

/// A trust store holding exactly `key`'s public key.
pub fn trust_of(key: &IssuerKey) -> TrustStore {
    TrustStore::parse(&key.to_public_text()).unwrap()
}

/// The trust store of [`issuer`].
pub fn trust() -> TrustStore {
    trust_of(&issuer())
}

/// The smallest shape spiral-rs runs: 8 items of 8 KiB (the committed fixture's).
pub fn tiny_scheme() -> SchemeParams {
    SchemeParams::try_from(SchemeFields {
        nu_1: 2,
        nu_2: 1,
        ..*SchemeParams::danger_test_only_small()
    })
    .expect("the fixture's shape is valid")
}

/// 256 items of 8 KiB: small enough for fast tests, large enough for a few hundred mappings.
pub fn small_scheme() -> SchemeParams {
    SchemeParams::danger_test_only_small()
}

/// A mapping signed by [`issuer`], valid from `not_before` to `not_after`.
pub fn mapping_valid(
    cpi: &str,
    msp: &str,
    psi: Option<&str>,
    context: Option<&str>,
    window: (u64, u64),
    user: Option<&SigningKey>,
) -> Mapping {
    MappingFields::new(
        Cpi::parse(cpi).unwrap(),
        msp,
        psi,
        context,
        window.0,
        window.1,
    )
    .unwrap()
    .sign(&issuer(), user)
    .unwrap()
}

/// A mapping signed by [`issuer`], valid 1000 s either side of [`NOW`].
pub fn mapping(cpi: &str, msp: &str, psi: Option<&str>) -> Mapping {
    mapping_valid(cpi, msp, psi, None, (NOW - 1000, NOW + 1000), None)
}

/// Four mappings of three CPIs: with and without PSI, context and user consent.
pub fn sample_mappings() -> Vec<Mapping> {
    let user = user_key();
    let window = (NOW - 1000, NOW + 1000);
    vec![
        mapping_valid(
            "tel:+14155550100",
            "chat.example",
            Some("@alice:chat.example"),
            Some("personal"),
            window,
            None,
        ),
        mapping_valid(
            "tel:+14155550100",
            "talk.example",
            None,
            None,
            window,
            Some(&user),
        ),
        mapping_valid(
            "mailto:carol@example.com",
            "mail.example",
            None,
            Some("work"),
            window,
            None,
        ),
        mapping_valid(
            "tel:+442079460958",
            "ring.example",
            Some("x"),
            None,
            window,
            Some(&user),
        ),
    ]
}

/// `count` mappings of distinct CPIs `mailto:u{i}@example.org` at `chat.example`, valid for
/// ever.
pub fn bulk_mappings(count: usize) -> Vec<Mapping> {
    (0..count)
        .map(|i| {
            mapping_valid(
                &format!("mailto:u{i}@example.org"),
                "chat.example",
                None,
                None,
                (0, u64::MAX),
                None,
            )
        })
        .collect()
}

/// Build options with a fixed salt (reproducible) for `scheme`.
pub fn build_options(scheme: SchemeParams, epoch: u64) -> BuildOptions {
    BuildOptions {
        epoch,
        now: NOW,
        salt: Some([9; 32]),
        scheme: Some(scheme),
    }
}

/// A snapshot of `mappings` (trusted by [`trust`]) with `opts`.
pub fn build_with(mappings: Vec<Mapping>, opts: &BuildOptions) -> Snapshot {
    Snapshot::build(mappings, &trust(), opts).unwrap().0
}

/// The tiny snapshot of [`sample_mappings`], epoch 1.
pub fn tiny_snapshot() -> Snapshot {
    build_with(sample_mappings(), &build_options(tiny_scheme(), 1))
}

/// Rewrites the first `chat.example` in `bucket` of `snapshot` to `chet.example`, as a
/// dishonest host would: the entry still decodes, but its issuer's signature no longer covers it.
pub fn tamper_chat_example(snapshot: &mut Snapshot, bucket: usize) {
    snapshot
        .danger_overwrite_bucket(bucket, |item| {
            let pos = item
                .windows(12)
                .position(|w| w == b"chat.example")
                .expect("the bucket holds a chat.example mapping");
            item[pos + 2] = b'e';
        })
        .unwrap();
}

/// A snapshot's file bytes.
pub fn file_bytes(snapshot: &Snapshot) -> Vec<u8> {
    let mut v = Vec::new();
    snapshot.write_to(&mut v).unwrap();
    v
}

/// Reads a full snapshot from bytes.
pub fn read_bytes(bytes: &[u8]) -> crate::Result<Snapshot> {
    Snapshot::read_from(bytes, bytes.len() as u64)
}

/// A private lookup in process with a fresh client trusting `trust`: the verified mappings'
/// (MSP, PSI), sorted.
pub fn lookup_with(
    snapshot: &Snapshot,
    trust: TrustStore,
    cpi: &str,
    now: u64,
) -> crate::Result<Vec<(String, Option<String>)>> {
    let client = LookupClient::new(snapshot.config(), trust)?;
    let keys = EvalKeys::parse(snapshot.config().scheme(), client.keys().public_bytes())?;
    let pending = client.query(&Cpi::parse(cpi)?)?;
    let response = snapshot.database().answer(&keys, pending.query())?;
    let mut found: Vec<_> = client
        .decode(pending, &response, now)?
        .mappings
        .into_iter()
        .map(|m| (m.fields.msp, m.fields.psi))
        .collect();
    found.sort();
    Ok(found)
}

/// [`lookup_with`] trusting [`issuer`], MSPs only.
pub fn msps(snapshot: &Snapshot, cpi: &str, now: u64) -> Vec<String> {
    lookup_with(snapshot, trust(), cpi, now)
        .unwrap()
        .into_iter()
        .map(|(msp, _)| msp)
        .collect()
}

/// The mappings of the committed fixture `pir-core/tests/fixtures/tiny-v1.pirsnap`.
pub fn fixture_v1_mappings() -> Vec<Mapping> {
    [
        (
            "tel:+14155550100",
            "chat.example",
            Some("@alice:chat.example"),
        ),
        ("tel:+14155550100", "talk.example", None),
        ("mailto:carol@example.com", "mail.example", None),
    ]
    .into_iter()
    .map(|(cpi, msp, psi)| mapping_valid(cpi, msp, psi, Some("personal"), (0, u64::MAX), None))
    .collect()
}

/// Creation time of the committed fixture.
pub const FIXTURE_V1_CREATED_AT: u64 = 1_767_225_600;

/// Today's builder on the committed fixture's input: epoch 3, salt `[9; 32]`, [`tiny_scheme`].
pub fn fixture_v1_snapshot() -> Snapshot {
    let opts = BuildOptions {
        now: FIXTURE_V1_CREATED_AT,
        ..build_options(tiny_scheme(), 3)
    };
    build_with(fixture_v1_mappings(), &opts)
}
