//! Shared test fixtures (feature `test-utils`): one fixed issuer and trust store, small scheme
//! shapes, signed mappings and small snapshots, and an in-process lookup.
//!
//! Every test file of the workspace and the fuzz targets take their fixtures from here rather
//! than defining their own. Nothing here is for production: the keys are fixed and public, and
//! the shapes are not vetted.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::{
    BuildOptions, Cpi, DpKey, DpKeys, EvalKeys, IssuerKey, LookupClient, LookupResult, Mapping,
    MappingFields, SchemeFields, SchemeParams, SigningKey, Snapshot, TrustStore,
    identity::OptOut,
    oprf::{Evaluated, OprfKey},
    pir::Scheme,
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
/// `tests/fixtures/tiny-v3.pirsnap`).
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

/// The fixed OPRF key every fixture snapshot is keyed by (RFC 9497 `DeriveKeyPair`).
pub fn oprf_key() -> OprfKey {
    OprfKey::derive(&[0x0f; 32], b"pir-discovery test OPRF key").unwrap()
}

/// Evaluates `cpis` under `key` the way a client does: blinded, evaluated in one batch with a
/// proof, the proof checked and the outputs unblinded.
pub fn evaluate_with(key: &OprfKey, cpis: &[Cpi]) -> Vec<Evaluated> {
    let mut rng = rand::thread_rng();
    let blinded: Vec<_> = cpis
        .iter()
        .map(|c| crate::oprf::Blinded::new(c, &mut rng).unwrap())
        .collect();
    let elements: Vec<_> = blinded.iter().map(|b| *b.element()).collect();
    let evaluation = key.evaluate_blinded(&mut rng, &elements).unwrap();
    crate::oprf::finalize(&blinded, &evaluation, &key.public()).unwrap()
}

/// [`evaluate_with`] under [`oprf_key`], one CPI.
pub fn evaluate(cpi: &Cpi) -> Evaluated {
    evaluate_with(&oprf_key(), std::slice::from_ref(cpi)).remove(0)
}

/// An opt-out for `cpi` signed by [`issuer`], valid 1000 s either side of [`NOW`].
pub fn opt_out(cpi: &str) -> OptOut {
    OptOut::sign(Cpi::parse(cpi).unwrap(), NOW - 1000, NOW + 1000, &issuer()).unwrap()
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
pub fn build_options(scheme: impl Into<Scheme>, epoch: u64) -> BuildOptions {
    let scheme = scheme.into();
    BuildOptions {
        epoch,
        now: NOW,
        salt: Some([9; 32]),
        scheme: Some(scheme),
        engine: scheme.engine(),
        fill_percent: None,
    }
}

/// A snapshot of `mappings` (trusted by [`trust`]) with `opts`.
pub fn build_with(mappings: Vec<Mapping>, opts: &BuildOptions) -> Snapshot {
    Snapshot::build(mappings, &trust(), &oprf_key(), opts)
        .unwrap()
        .0
}

/// `mappings` and `opt_outs`, verified against [`trust`].
pub fn verified_input(
    mappings: Vec<Mapping>,
    opt_outs: Vec<OptOut>,
) -> crate::snapshot::BuildInput {
    let trust = trust();
    crate::snapshot::BuildInput {
        mappings: mappings
            .into_iter()
            .map(|m| crate::VerifiedMapping::new(m, &trust).unwrap())
            .collect(),
        opt_outs: opt_outs
            .into_iter()
            .map(|o| crate::identity::VerifiedOptOut::new(o, &trust).unwrap())
            .collect(),
    }
}

/// A snapshot of `mappings` and `opt_outs` (trusted by [`trust`]) with `opts`.
pub fn build_records(
    mappings: Vec<Mapping>,
    opt_outs: Vec<OptOut>,
    opts: &BuildOptions,
) -> Snapshot {
    Snapshot::build_verified(
        verified_input(mappings, opt_outs),
        &oprf_key(),
        opts,
        &|_, _| {},
    )
    .unwrap()
    .0
}

/// Every shard of `count` built from `mappings` (trusted by [`trust`]) with `opts`.
pub fn build_shards(mappings: Vec<Mapping>, opts: &BuildOptions, count: u32) -> Vec<Snapshot> {
    let plan = crate::snapshot::ShardedBuild::plan(
        verified_input(mappings, Vec::new()),
        &oprf_key(),
        opts,
        count,
    )
    .unwrap();
    (0..count)
        .map(|i| plan.encode(i, &|_, _| {}).unwrap().0)
        .collect()
}

/// The tiny snapshot of [`sample_mappings`], epoch 1.
pub fn tiny_snapshot() -> Snapshot {
    build_with(sample_mappings(), &build_options(tiny_scheme(), 1))
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

/// A private lookup in process with a fresh client trusting `trust`: the whole result.
pub fn lookup_result(
    snapshot: &Snapshot,
    trust: TrustStore,
    cpi: &str,
    now: u64,
) -> crate::Result<LookupResult> {
    let client = LookupClient::new(snapshot.config(), trust)?;
    let pending = client.query(&evaluate(&Cpi::parse(cpi)?))?;
    let response = answer(snapshot, &client, pending.query())?;
    pending.decode(&client, &response, now)
}

/// Answers one query of `client`'s as a server would, for either engine.
pub fn answer(snapshot: &Snapshot, client: &LookupClient, query: &[u8]) -> crate::Result<Vec<u8>> {
    match client.keys() {
        Some(keys) => {
            let keys = EvalKeys::parse(keys.params(), keys.public_bytes())?;
            snapshot.database()?.answer(&keys, query)
        }
        None => snapshot.ypir_database()?.answer(query),
    }
}

/// [`lookup_result`]'s verified mappings as (MSP, PSI), sorted.
pub fn lookup_with(
    snapshot: &Snapshot,
    trust: TrustStore,
    cpi: &str,
    now: u64,
) -> crate::Result<Vec<(String, Option<String>)>> {
    let mut found: Vec<_> = lookup_result(snapshot, trust, cpi, now)?
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

/// The mappings of the committed fixture `pir-core/tests/fixtures/tiny-v3.pirsnap`.
pub fn fixture_mappings() -> Vec<Mapping> {
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
pub const FIXTURE_CREATED_AT: u64 = 1_767_225_600;

/// The opt-out of the committed fixture: `tel:+14155550199`, valid for ever.
pub fn fixture_opt_out() -> OptOut {
    OptOut::sign(
        Cpi::parse("tel:+14155550199").unwrap(),
        0,
        u64::MAX,
        &issuer(),
    )
    .unwrap()
}

/// Today's builder on the committed fixture's input: epoch 3, salt `[9; 32]`, [`tiny_scheme`],
/// keyed by [`oprf_key`].
pub fn fixture_snapshot() -> Snapshot {
    let opts = BuildOptions {
        now: FIXTURE_CREATED_AT,
        ..build_options(tiny_scheme(), 3)
    };
    build_records(fixture_mappings(), vec![fixture_opt_out()], &opts)
}

/// Where the sealed record of the CPI `secrets` belongs to sits in a bucket's bytes: its
/// locator's position, then the record's position and length, read as a client does
/// (`docs/mapping-format.md` section 9); `None` when no locator leads to a range that opens.
pub fn record_span(
    item: &[u8],
    secrets: &crate::keyword::EntrySecrets,
) -> Option<(usize, usize, usize)> {
    let word = |b: &[u8], i: usize| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
    let mask = secrets.mask();
    let count = usize::from(word(item, 0));
    let blob_at = 4 + 6 * count;
    (0..count).find_map(|k| {
        let at = 4 + 6 * k;
        let locator = item.get(at..at + 6)?;
        if word(locator, 2) != word(&mask, 2) {
            return None;
        }
        let offset = usize::from(word(locator, 0).wrapping_sub(word(&mask, 0)));
        let len = usize::from(word(locator, 1).wrapping_sub(word(&mask, 1)));
        let sealed = item.get(blob_at + offset..blob_at + offset + len)?;
        secrets
            .open(sealed)
            .ok()
            .map(|_| (at, blob_at + offset, len))
    })
}
