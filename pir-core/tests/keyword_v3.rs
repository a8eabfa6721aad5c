//! Known-answer vectors for keyword layout version 3 (`src/keyword/derive.rs`,
//! `src/keyword/entry.rs`, `src/keyword/bucket.rs`): the OPRF output of a CPI under a fixed DP
//! key, and the shard, group, candidate buckets, locator mask, record key, nonce and sealed
//! record derived from it; and whole records (a CPI's signed statements, with the layout's
//! dictionaries) as a snapshot stores them, with the bucket the choice table sends them to
//! (`test_vectors/keyword_v3.json`).
//!
//! The file is written by the ignored `regenerate` test, never by hand:
//!
//! ```text
//! cargo test -p pir-core --test keyword_v3 -- --ignored regenerate
//! ```
//!
//! One check compares the file with what the implementation gives (the records from a snapshot
//! it builds); the other recomputes every OPRF output with the `voprf` crate, every HKDF,
//! SHA-256 and AEAD output with the `hkdf`, `sha2` and `aes-gcm-siv` crates, and finds every
//! record in its bucket, following the documented recipes and formats only.

mod documented;

use std::path::PathBuf;

use aes_gcm_siv::{
    Aes256GcmSiv, Nonce,
    aead::{Aead, KeyInit},
};
use pir_core::{
    BuildOptions, Cpi, Snapshot, VerifiedMapping,
    identity::{OptOut, RecordLine, VerifiedOptOut},
    keyword::{EntrySecrets, GroupIndex, KeywordLayout, LAYOUT_VERSION, candidate, shard_of},
    oprf::{OprfKey, SUITE_NAME},
    snapshot::BuildInput,
    testing::{issuer, mapping_valid, tiny_scheme, trust},
};
use serde::{Deserialize, Serialize};
use voprf::{Group, Ristretto255, VoprfServer};

const FILE: &str = "keyword_v3.json";
/// The fixed DP key: RFC 9497 `DeriveKeyPair(seed, info)`.
const SEED: [u8; 32] = [0x5e; 32];
const INFO: &[u8] = b"pir-discovery keyword_v3 test vectors";
const SHARDS: u32 = 10_000;
const RECORD_SALT: [u8; 32] = [0x44; 32];
const JAN_2026: u64 = 1_767_225_600;
const JAN_2027: u64 = 1_798_761_600;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    description: Vec<String>,
    layout_version: u32,
    suite: String,
    oprf_seed: String,
    oprf_info: String,
    oprf_public_key: String,
    vectors: Vec<Vector>,
    snapshot: SnapshotVector,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    cpi: String,
    oprf_output: String,
    salt: String,
    num_buckets: u32,
    num_groups: u32,
    shards: u32,
    shard: u32,
    group: u32,
    /// The group's four candidate buckets, `cand(group, 0..4)`.
    candidates: Vec<u32>,
    mask: String,
    entry_key: String,
    entry_nonce: String,
    plaintext: String,
    sealed: String,
}

/// A snapshot of the record examples: its layout and each CPI's record.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotVector {
    salt: String,
    num_buckets: u32,
    num_groups: u32,
    choices: String,
    msps: Vec<String>,
    /// Issuer ids, hex.
    issuers: Vec<String>,
    /// The Ed25519 public key of the statements' issuer (hex).
    issuer_public_key: String,
    records: Vec<RecordVector>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordVector {
    name: String,
    cpi: String,
    oprf_output: String,
    group: u32,
    bucket: u32,
    /// The statements, as JSON lines of a mapping file, in record order.
    statements: Vec<String>,
    /// The record, as sealed.
    record: String,
    sealed: String,
    /// The CPI's bucket as the snapshot holds it, up to the end of its blob (zeros follow).
    bucket_bytes: String,
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test_vectors")
        .join(FILE)
}

fn load() -> VectorFile {
    let text = std::fs::read_to_string(path()).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn unhex(text: &str) -> Vec<u8> {
    hex::decode(text).unwrap()
}

fn key() -> OprfKey {
    OprfKey::derive(&SEED, INFO).unwrap()
}

fn generate_vectors(key: &OprfKey) -> Vec<Vector> {
    let cases = [
        ("tel:+14155550100", 0x11u8, 1u32, 1u32),
        ("tel:+14155550100", 0x22, 16_384, 200_000),
        ("mailto:bob@example.org", 0x22, 16_384, 200_000),
        (
            "mailto:alice@xn--bcher-kva.example",
            0x33,
            1_000_003,
            4_194_304,
        ),
    ];
    cases
        .iter()
        .map(|&(cpi, salt_byte, num_buckets, num_groups)| {
            let salt = [salt_byte; 32];
            let y = key.evaluate(&Cpi::parse(cpi).unwrap()).unwrap();
            let layout = KeywordLayout::new(salt, num_buckets, num_groups, key.public()).unwrap();
            let secrets = EntrySecrets::derive(&y, &layout);
            let group = secrets.location().group;
            let plaintext = format!("compact mappings of {cpi}");
            Vector {
                cpi: cpi.into(),
                oprf_output: hex::encode(y.as_bytes()),
                salt: hex::encode(salt),
                num_buckets,
                num_groups,
                shards: SHARDS,
                shard: shard_of(&y, SHARDS),
                group: group.0,
                candidates: (0..4)
                    .map(|c| candidate(&salt, group, c, num_buckets).0)
                    .collect(),
                mask: hex::encode(secrets.mask()),
                entry_key: hex::encode(documented::expand(y.as_bytes(), b"entry-key", &salt, 32)),
                entry_nonce: hex::encode(documented::expand(
                    y.as_bytes(),
                    b"entry-nonce",
                    &salt,
                    12,
                )),
                sealed: hex::encode(secrets.seal(plaintext.as_bytes()).unwrap()),
                plaintext: hex::encode(&plaintext),
            }
        })
        .collect()
}

/// The statements of the record examples: two mappings of one number, one mapping of another
/// at a third MSP, one opt-out of an address.
fn record_statements() -> Vec<(&'static str, Vec<RecordLine>)> {
    let window = (JAN_2026, JAN_2027);
    let mapping = |cpi, msp, psi, context| {
        let m = mapping_valid(cpi, msp, psi, context, window, None);
        RecordLine::Mapping(Box::new(m))
    };
    let opt_out = OptOut::sign(
        Cpi::parse("mailto:bob@example.org").unwrap(),
        JAN_2026,
        JAN_2027,
        &issuer(),
    )
    .unwrap();
    vec![
        (
            "two-mappings",
            vec![
                mapping(
                    "tel:+14155550100",
                    "chat.example",
                    Some("@alice:chat.example"),
                    Some("work"),
                ),
                mapping("tel:+14155550100", "talk.example", None, None),
            ],
        ),
        (
            "one-mapping",
            vec![mapping("tel:+442079460958", "ring.example", None, None)],
        ),
        ("opt-out", vec![RecordLine::OptOut(Box::new(opt_out))]),
    ]
}

fn cpi_of(line: &RecordLine) -> &Cpi {
    match line {
        RecordLine::Mapping(m) => &m.fields.cpi,
        RecordLine::OptOut(o) => &o.cpi,
    }
}

/// The record examples as the implementation stores them: a snapshot is built of their
/// statements, and each CPI's record is found in its bucket with the implementation's secrets.
fn generate_snapshot(key: &OprfKey) -> SnapshotVector {
    let examples = record_statements();
    let mut input = BuildInput::default();
    for line in examples.iter().flat_map(|(_, lines)| lines) {
        match line.clone() {
            RecordLine::Mapping(m) => input
                .mappings
                .push(VerifiedMapping::new(*m, &trust()).unwrap()),
            RecordLine::OptOut(o) => input
                .opt_outs
                .push(VerifiedOptOut::new(*o, &trust()).unwrap()),
        }
    }
    let opts = BuildOptions {
        epoch: 1,
        now: JAN_2026,
        salt: Some(RECORD_SALT),
        scheme: Some(tiny_scheme().into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    let (snapshot, _) = Snapshot::build_verified(input, key, &opts, &|_, _| {}).unwrap();
    let layout = &snapshot.header().layout;
    assert_eq!(layout.salt, RECORD_SALT);
    let records = examples
        .iter()
        .map(|(name, lines)| {
            let cpi = cpi_of(&lines[0]);
            let y = key.evaluate(cpi).unwrap();
            let secrets = layout.locate(&y);
            let bucket = secrets.location().bucket.0;
            let item = snapshot.bucket(bucket as usize).unwrap();
            let (_, at, len) = pir_core::testing::record_span(item, &secrets).unwrap();
            let sealed = &item[at..at + len];
            let record = secrets.open(sealed).unwrap();
            let count = usize::from(u16::from_le_bytes([item[0], item[1]]));
            let blob = usize::from(u16::from_le_bytes([item[2], item[3]]));
            RecordVector {
                name: (*name).into(),
                cpi: cpi.as_str().into(),
                oprf_output: hex::encode(y.as_bytes()),
                group: secrets.location().group.0,
                bucket,
                statements: lines.iter().map(RecordLine::to_json_line).collect(),
                record: hex::encode(&record),
                sealed: hex::encode(sealed),
                bucket_bytes: hex::encode(&item[..4 + 6 * count + blob]),
            }
        })
        .collect();
    SnapshotVector {
        salt: hex::encode(layout.salt),
        num_buckets: layout.num_buckets,
        num_groups: layout.num_groups,
        choices: hex::encode(&layout.choices),
        msps: layout.msps.clone(),
        issuers: layout.issuers.iter().map(hex::encode).collect(),
        issuer_public_key: hex::encode(issuer().verifying_key().as_bytes()),
        records,
    }
}

fn generate() -> VectorFile {
    let key = key();
    VectorFile {
        description: vec![
            "Keyword layout version 3 (docs/mapping-format.md sections 8 and 9).".into(),
            "prk = HKDF-Extract(salt = 'pir-discovery/keyword/v3', IKM = oprf_output); \
             shard = (u64le(Expand(prk, 'shard', 8)) * shards) >> 64; group = \
             (u64le(Expand(prk, 'group' || salt, 8)) * num_groups) >> 64; mask, entry_key, \
             entry_nonce = Expand(prk, 'locator' | 'entry-key' | 'entry-nonce' || salt, 6 | 32 \
             | 12); candidates[c] = (u64le(SHA-256('pir-discovery/keyword/v3/candidate\\0' || \
             salt || u32le(group) || u8(c))[0..8]) * num_buckets) >> 64."
                .into(),
            "sealed = AES-256-GCM-SIV(entry_key, entry_nonce, plaintext), no associated data."
                .into(),
            "snapshot: a tiny snapshot of the records' statements; each record's bucket is \
             candidates[choice(group)] with the choice table 'choices'; bucket_bytes is that \
             bucket up to the end of its blob, where a locator unmasked with the CPI's mask \
             leads to 'sealed'."
                .into(),
        ],
        layout_version: LAYOUT_VERSION,
        suite: SUITE_NAME.into(),
        oprf_seed: hex::encode(SEED),
        oprf_info: hex::encode(INFO),
        oprf_public_key: hex::encode(key.public().to_bytes()),
        vectors: generate_vectors(&key),
        snapshot: generate_snapshot(&key),
    }
}

#[test]
#[ignore]
fn regenerate() {
    let text = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
    std::fs::write(path(), text).unwrap();
}

#[test]
fn the_committed_vectors_are_what_the_implementation_gives() {
    assert_eq!(load(), generate());
}

#[test]
fn the_committed_vectors_follow_the_documented_recipe() {
    let file = load();
    assert_eq!(file.layout_version, 3);
    assert_eq!(file.suite, "ristretto255-SHA512");
    // The DP key and each OPRF output, with the voprf crate directly.
    let server = VoprfServer::<Ristretto255>::new_from_seed(
        &unhex(&file.oprf_seed),
        &unhex(&file.oprf_info),
    )
    .unwrap();
    assert_eq!(
        hex::encode(Ristretto255::serialize_elem(server.get_public_key())),
        file.oprf_public_key
    );
    let oprf = |cpi: &str| hex::encode(server.evaluate(cpi.as_bytes()).unwrap());

    for v in &file.vectors {
        assert_eq!(oprf(&v.cpi), v.oprf_output, "{}", v.cpi);
        let y = unhex(&v.oprf_output);
        let salt = unhex(&v.salt);
        assert_eq!(
            documented::reduce(&documented::expand(&y, b"shard", &[], 8), v.shards),
            v.shard
        );
        assert_eq!(documented::group(&y, &salt, v.num_groups), v.group);
        for (c, &b) in v.candidates.iter().enumerate() {
            assert_eq!(
                documented::candidate(&salt, v.group, c as u8, v.num_buckets),
                b
            );
        }
        assert_eq!(
            hex::encode(documented::expand(&y, b"locator", &salt, 6)),
            v.mask
        );
        let key: [u8; 32] = documented::expand(&y, b"entry-key", &salt, 32)
            .try_into()
            .unwrap();
        assert_eq!(hex::encode(key), v.entry_key);
        let nonce = documented::expand(&y, b"entry-nonce", &salt, 12);
        assert_eq!(hex::encode(&nonce), v.entry_nonce);
        let sealed = Aes256GcmSiv::new(&key.into())
            .encrypt(Nonce::from_slice(&nonce), unhex(&v.plaintext).as_slice())
            .unwrap();
        assert_eq!(hex::encode(sealed), v.sealed);
    }

    // The records: found in the bucket the table names, opened, and equal to the documented
    // encoding of their statements with the dictionaries.
    let s = &file.snapshot;
    let salt = unhex(&s.salt);
    let choices = unhex(&s.choices);
    assert_eq!(choices.len(), s.num_groups.div_ceil(4) as usize);
    for r in &s.records {
        assert_eq!(oprf(&r.cpi), r.oprf_output, "{}", r.name);
        let y = unhex(&r.oprf_output);
        assert_eq!(documented::group(&y, &salt, s.num_groups), r.group);
        assert_eq!(
            documented::bucket(&y, &salt, s.num_groups, &choices, s.num_buckets),
            r.bucket
        );
        let mut item = unhex(&r.bucket_bytes);
        item.resize(8192, 0);
        let record = documented::open_record(&item, &y, &salt).expect("the record");
        assert_eq!(hex::encode(&record), r.record, "{}", r.name);
        assert_eq!(hex::encode(doc_record(r, s)), r.record, "{}", r.name);
    }
}

/// A record's bytes from its statements' JSON lines and the dictionaries, as section 9 says.
fn doc_record(r: &RecordVector, s: &SnapshotVector) -> Vec<u8> {
    let mut out = Vec::new();
    for line in &r.statements {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let b64 = |field: &str| {
            use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
            URL_SAFE_NO_PAD.decode(field).unwrap()
        };
        let issuer_index = |id: &str| {
            let id = hex::encode(b64(id));
            s.issuers.iter().position(|i| *i == id).unwrap() as u8
        };
        if let Some(o) = v.get("opt_out") {
            out.push(0x80);
            out.extend(o["not_before"].as_u64().unwrap().to_le_bytes());
            out.extend(o["not_after"].as_u64().unwrap().to_le_bytes());
            out.push(issuer_index(o["issuer"].as_str().unwrap()));
            out.extend(b64(o["sig"].as_str().unwrap()));
            continue;
        }
        let text = |f: &str| v.get(f).and_then(|x| x.as_str()).map(str::to_owned);
        let (psi, context) = (text("psi"), text("context"));
        let consent = text("user_key").is_some();
        out.push(
            u8::from(psi.is_some()) | u8::from(context.is_some()) << 1 | u8::from(consent) << 2,
        );
        let msp = text("msp").unwrap();
        out.push(s.msps.iter().position(|m| *m == msp).unwrap() as u8);
        for t in [psi, context].into_iter().flatten() {
            out.push(t.len() as u8);
            out.extend(t.as_bytes());
        }
        out.extend(v["not_before"].as_u64().unwrap().to_le_bytes());
        out.extend(v["not_after"].as_u64().unwrap().to_le_bytes());
        out.push(issuer_index(v["issuer"].as_str().unwrap()));
        out.extend(b64(v["sig"].as_str().unwrap()));
        if consent {
            out.extend(b64(&text("user_key").unwrap()));
            out.extend(b64(&text("user_sig").unwrap()));
        }
    }
    out
}

/// The layout's group of a CPI is what the candidates are computed for: its bucket is one of
/// them, whichever the table chose.
#[test]
fn every_record_is_in_one_of_its_groups_candidates() {
    let file = load();
    let s = &file.snapshot;
    let salt: [u8; 32] = unhex(&s.salt).try_into().unwrap();
    for r in &s.records {
        let candidates: Vec<u32> = (0..4)
            .map(|c| candidate(&salt, GroupIndex(r.group), c, s.num_buckets).0)
            .collect();
        assert!(candidates.contains(&r.bucket), "{}", r.name);
    }
}
