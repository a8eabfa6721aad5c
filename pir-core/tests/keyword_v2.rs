//! Known-answer vectors for keyword layout version 2 (`src/keyword/derive.rs`,
//! `src/keyword/entry.rs`, `src/keyword/bucket.rs`): the OPRF output of a CPI under a fixed DP
//! key, and the shard, bucket, tags, entry key, nonces and sealed entries derived from it; and
//! whole records (a CPI's signed statements) cut into slots and sealed, as a snapshot stores
//! them (`test_vectors/keyword_v2.json`).
//!
//! The file is written by the ignored `regenerate` test, never by hand:
//!
//! ```text
//! cargo test -p pir-core --release --test keyword_v2 -- --ignored regenerate
//! ```
//!
//! One check compares the file with what the implementation gives (the records from a snapshot
//! it builds); the other recomputes every OPRF output with the `voprf` crate, every HKDF output
//! and AEAD with the `hkdf` and `aes-gcm-siv` crates, and every record from its statements'
//! JSON lines, following the documented recipes and formats only.

mod documented;

use std::path::PathBuf;

use aes_gcm_siv::{
    Aes256GcmSiv, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use pir_core::{
    BuildOptions, Cpi, Snapshot, VerifiedMapping, fuzzing,
    identity::{OptOut, RecordLine, VerifiedOptOut},
    keyword::{EntrySecrets, LAYOUT_VERSION, shard_of},
    oprf::{OprfKey, SUITE_NAME},
    snapshot::BuildInput,
    testing::{issuer, mapping_valid, tiny_scheme, trust},
};
use serde::{Deserialize, Serialize};
use voprf::{Group, Ristretto255, VoprfServer};

const FILE: &str = "keyword_v2.json";
/// The fixed DP key: RFC 9497 `DeriveKeyPair(seed, info)`.
const SEED: [u8; 32] = [0x5e; 32];
const INFO: &[u8] = b"pir-discovery keyword_v2 test vectors";
const SHARDS: u32 = 10_000;
/// The record examples: their snapshot's layout salt and slot size (small, so that each record
/// fills several slots), and the statements' validity window (2026-01-01 to 2027-01-01).
const RECORD_SALT: [u8; 32] = [0x44; 32];
const RECORD_SLOT_BYTES: u32 = 64;
const JAN_2026: u64 = 1_767_225_600;
const JAN_2027: u64 = 1_798_761_600;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    description: Vec<String>,
    suite: String,
    oprf_seed: String,
    oprf_info: String,
    oprf_public_key: String,
    vectors: Vec<Vector>,
    records: Vec<RecordVector>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    cpi: String,
    oprf_output: String,
    salt: String,
    num_buckets: u32,
    shards: u32,
    shard: u32,
    bucket: u32,
    tag: String,
    entry_key: String,
    entry_nonce: String,
    plaintext: String,
    sealed: String,
    /// Slot 1 and 2 of the CPI's record: info `label || salt || u32le(i)`.
    tag_1: String,
    entry_nonce_1: String,
    sealed_1: String,
    tag_2: String,
    entry_nonce_2: String,
}

/// One CPI's record as a snapshot stores it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordVector {
    name: String,
    cpi: String,
    oprf_output: String,
    salt: String,
    num_buckets: u32,
    slot_bytes: u32,
    /// The Ed25519 public key of the statements' issuer (hex).
    issuer_public_key: String,
    /// The statements, as JSON lines of a mapping file, in record order.
    statements: Vec<String>,
    /// The record, unpadded.
    record: String,
    bucket: u32,
    slots: Vec<SlotVector>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotVector {
    index: u32,
    tag: String,
    nonce: String,
    /// The slot's `slot_bytes` of the zero-padded record.
    chunk: String,
    /// AES-256-GCM-SIV of the chunk: the slot in the bucket is `tag || sealed`.
    sealed: String,
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

fn documented(y: &[u8], label: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    documented::expand(y, label, salt, 0, len)
}

fn aead(key: &[u8], nonce: &[u8], msg: &[u8], aad: &[u8]) -> Vec<u8> {
    let key: [u8; 32] = key.try_into().unwrap();
    Aes256GcmSiv::new(&key.into())
        .encrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .unwrap()
}

fn word(bytes: &[u8], n: u32) -> u32 {
    let x = u64::from_le_bytes(bytes.try_into().unwrap()) as u128;
    ((x * n as u128) >> 64) as u32
}

fn key() -> OprfKey {
    OprfKey::derive(&SEED, INFO).unwrap()
}

fn generate_vectors(key: &OprfKey) -> Vec<Vector> {
    let cases = [
        ("tel:+14155550100", 0x11u8, 1u32),
        ("tel:+14155550100", 0x22, 16_384),
        ("mailto:bob@example.org", 0x22, 16_384),
        ("mailto:alice@xn--bcher-kva.example", 0x33, 1_000_003),
    ];
    cases
        .iter()
        .map(|&(cpi, salt_byte, num_buckets)| {
            let salt = [salt_byte; 32];
            let y = key.evaluate(&Cpi::parse(cpi).unwrap()).unwrap();
            let secrets = EntrySecrets::derive(&y, &salt, num_buckets);
            let plaintext = format!("compact mappings of {cpi}");
            let nonce = |i| {
                hex::encode(documented::expand(
                    y.as_bytes(),
                    b"entry-nonce",
                    &salt,
                    i,
                    12,
                ))
            };
            Vector {
                cpi: cpi.into(),
                oprf_output: hex::encode(y.as_bytes()),
                salt: hex::encode(salt),
                num_buckets,
                shards: SHARDS,
                shard: shard_of(&y, SHARDS),
                bucket: secrets.location().bucket.0,
                tag: hex::encode(secrets.location().tag.0),
                entry_key: hex::encode(documented(y.as_bytes(), b"entry-key", &salt, 32)),
                entry_nonce: nonce(0),
                sealed: hex::encode(secrets.seal(plaintext.as_bytes()).unwrap()),
                plaintext: hex::encode(&plaintext),
                tag_1: hex::encode(secrets.slot_tag(1).0),
                entry_nonce_1: nonce(1),
                sealed_1: hex::encode(secrets.seal_slot(1, plaintext.as_bytes()).unwrap()),
                tag_2: hex::encode(secrets.slot_tag(2).0),
                entry_nonce_2: nonce(2),
            }
        })
        .collect()
}

/// The statements of the record examples: two mappings of one number, one opt-out of an
/// address.
fn record_statements() -> Vec<(&'static str, Vec<RecordLine>)> {
    let window = (JAN_2026, JAN_2027);
    let mapping = |msp, psi, context| {
        let m = mapping_valid("tel:+14155550100", msp, psi, context, window, None);
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
                mapping("chat.example", Some("@alice:chat.example"), Some("work")),
                mapping("talk.example", None, None),
            ],
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
/// statements, and each CPI's slots are read out of its bucket and opened with the
/// implementation's secrets.
fn generate_records(key: &OprfKey) -> Vec<RecordVector> {
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
        scheme: Some(tiny_scheme()),
        slot_bytes: Some(RECORD_SLOT_BYTES),
    };
    let (snapshot, _) = Snapshot::build_verified(input, key, &opts, &|_, _| {}).unwrap();
    let layout = snapshot.header().layout;
    assert_eq!(layout.salt, RECORD_SALT);
    let slot_bytes = layout.slot_bytes as usize;
    let slot_len = layout.slot_len();
    examples
        .iter()
        .map(|(name, lines)| {
            let cpi = cpi_of(&lines[0]);
            let y = key.evaluate(cpi).unwrap();
            let secrets = layout.locate(&y);
            let bucket = secrets.location().bucket.0;
            let item = snapshot.bucket(bucket as usize).unwrap();
            let count = usize::from(u16::from_le_bytes([item[0], item[1]]));
            let mut slots = Vec::new();
            let mut padded = Vec::new();
            for i in 0.. {
                let tag = secrets.slot_tag(i);
                let Some(k) = (0..count).find(|k| item[2 + k * slot_len..][..8] == tag.0) else {
                    break;
                };
                let sealed = &item[2 + k * slot_len + 8..][..slot_len - 8];
                let chunk = secrets.open_slot(i, sealed).unwrap();
                padded.extend_from_slice(&chunk);
                slots.push(SlotVector {
                    index: i,
                    tag: hex::encode(tag.0),
                    nonce: hex::encode(documented::expand(
                        y.as_bytes(),
                        b"entry-nonce",
                        &layout.salt,
                        i,
                        12,
                    )),
                    chunk: hex::encode(&chunk),
                    sealed: hex::encode(sealed),
                });
            }
            let len = u32::from_le_bytes(padded[..4].try_into().unwrap()) as usize;
            assert!(len.div_ceil(slot_bytes) == slots.len());
            RecordVector {
                name: (*name).into(),
                cpi: cpi.to_string(),
                oprf_output: hex::encode(y.as_bytes()),
                salt: hex::encode(layout.salt),
                num_buckets: layout.num_buckets,
                slot_bytes: layout.slot_bytes,
                issuer_public_key: hex::encode(issuer().verifying_key().as_bytes()),
                statements: lines.iter().map(RecordLine::to_json_line).collect(),
                record: hex::encode(&padded[..len]),
                bucket,
                slots,
            }
        })
        .collect()
}

fn generate() -> VectorFile {
    let key = key();
    VectorFile {
        description: vec![
            "Keyword layout version 2 (docs/mapping-format.md): y = VOPRF(k, cpi) with RFC 9497".into(),
            "ristretto255-SHA512, k = DeriveKeyPair(oprf_seed, oprf_info); then HKDF-SHA256 with".into(),
            "salt \"pir-discovery/keyword/v2\" and IKM y: shard from \"shard\", bucket, tag,".into(),
            "entry_key and entry_nonce from \"bucket\"/\"tag\"/\"entry-key\"/\"entry-nonce\" || salt;".into(),
            "sealed = AES-256-GCM-SIV(entry_key, entry_nonce, plaintext, aad = tag). Hex throughout.".into(),
            "Slot i >= 1 of a record: tag_i, entry_nonce_i from \"tag\"/\"entry-nonce\" || salt || u32le(i);".into(),
            "sealed_1 = AES-256-GCM-SIV(entry_key, entry_nonce_1, plaintext, aad = tag_1).".into(),
            "records: a CPI's statements (JSON lines) as one record u32le(len) || u16le(count) ||".into(),
            "(u8 kind || u16le(ilen) || body) * count (kind 0: compact mapping, 1: opt-out), padded with".into(),
            "zeros to slots * slot_bytes; slot i = tag_i || AES-256-GCM-SIV(entry_key, nonce_i, chunk_i,".into(),
            "aad = tag_i), in bucket `bucket` of a snapshot with that salt and slot size (src/keyword/entry.rs).".into(),
        ],
        suite: SUITE_NAME.into(),
        oprf_seed: hex::encode(SEED),
        oprf_info: hex::encode(INFO),
        oprf_public_key: hex::encode(key.public().to_bytes()),
        vectors: generate_vectors(&key),
        records: generate_records(&key),
    }
}

#[test]
#[ignore = "writes test_vectors/keyword_v2.json"]
fn regenerate() {
    let text = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
    std::fs::write(path(), text).unwrap();
}

#[test]
fn the_implementation_gives_the_committed_vectors() {
    let file = load();
    assert_eq!(file, generate());
    assert_eq!(LAYOUT_VERSION, 2);
    // The statements are genuine, and the records decode to them.
    for r in &file.records {
        let cpi = Cpi::parse(&r.cpi).unwrap();
        for line in &r.statements {
            match RecordLine::from_json_line(line).unwrap() {
                RecordLine::Mapping(m) => m.verify_signatures(&trust()).unwrap(),
                RecordLine::OptOut(o) => o.verify_signature(&trust()).unwrap(),
            }
        }
        assert_eq!(
            fuzzing::decode_record(&cpi, &unhex(&r.record)).unwrap(),
            r.statements.len(),
            "{}",
            r.name
        );
    }
}

#[test]
fn the_committed_vectors_follow_the_documented_recipe() {
    let file = load();
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
        assert_eq!(y.len(), 64);
        assert_eq!(
            word(&documented(&y, b"shard", &[], 8), v.shards),
            v.shard,
            "{}",
            v.cpi
        );
        assert_eq!(
            word(&documented(&y, b"bucket", &salt, 8), v.num_buckets),
            v.bucket
        );
        let tag = documented(&y, b"tag", &salt, 8);
        assert_eq!(hex::encode(&tag), v.tag);
        let key = documented(&y, b"entry-key", &salt, 32);
        assert_eq!(hex::encode(&key), v.entry_key);
        let nonce = documented(&y, b"entry-nonce", &salt, 12);
        assert_eq!(hex::encode(&nonce), v.entry_nonce);
        let plaintext = unhex(&v.plaintext);
        assert_eq!(hex::encode(aead(&key, &nonce, &plaintext, &tag)), v.sealed);

        // Slots 1 and 2: distinct from slot 0 and from each other.
        let tag_1 = documented::expand(&y, b"tag", &salt, 1, 8);
        let nonce_1 = documented::expand(&y, b"entry-nonce", &salt, 1, 12);
        assert_eq!(hex::encode(&tag_1), v.tag_1, "{}", v.cpi);
        assert_eq!(hex::encode(&nonce_1), v.entry_nonce_1, "{}", v.cpi);
        assert_eq!(
            hex::encode(aead(&key, &nonce_1, &plaintext, &tag_1)),
            v.sealed_1
        );
        assert_eq!(
            hex::encode(documented::expand(&y, b"tag", &salt, 2, 8)),
            v.tag_2
        );
        assert_eq!(
            hex::encode(documented::expand(&y, b"entry-nonce", &salt, 2, 12)),
            v.entry_nonce_2
        );
        let tags = [&v.tag, &v.tag_1, &v.tag_2];
        let nonces = [&v.entry_nonce, &v.entry_nonce_1, &v.entry_nonce_2];
        for i in 0..3 {
            for j in i + 1..3 {
                assert_ne!(tags[i], tags[j]);
                assert_ne!(nonces[i], nonces[j]);
            }
        }
        assert_ne!(v.sealed, v.sealed_1);
    }

    assert_eq!(file.records.len(), 2);
    for r in &file.records {
        let name = &r.name;
        assert_eq!(oprf(&r.cpi), r.oprf_output, "{name}");
        let y = unhex(&r.oprf_output);
        let salt = unhex(&r.salt);
        let slot_bytes = r.slot_bytes as usize;
        assert_eq!(
            word(&documented(&y, b"bucket", &salt, 8), r.num_buckets),
            r.bucket,
            "{name}"
        );

        // The record, framed by hand from the statements' JSON.
        let items: Vec<(u8, Vec<u8>)> = r
            .statements
            .iter()
            .map(|line| documented_item(&r.cpi, line))
            .collect();
        let mut record = vec![0u8; 6];
        record[4..6].copy_from_slice(&(items.len() as u16).to_le_bytes());
        for (kind, body) in &items {
            record.push(*kind);
            record.extend_from_slice(&(body.len() as u16).to_le_bytes());
            record.extend_from_slice(body);
        }
        let len = record.len() as u32;
        record[..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(hex::encode(&record), r.record, "{name}");

        // Padded and cut into slots, each sealed under its own tag and nonce.
        let n = record.len().div_ceil(slot_bytes);
        assert!(n >= 2, "{name}: the example spans several slots");
        assert_eq!(r.slots.len(), n, "{name}");
        record.resize(n * slot_bytes, 0);
        let key = documented(&y, b"entry-key", &salt, 32);
        for (i, (slot, chunk)) in r.slots.iter().zip(record.chunks(slot_bytes)).enumerate() {
            let i = i as u32;
            assert_eq!(slot.index, i, "{name}");
            let tag = documented::expand(&y, b"tag", &salt, i, 8);
            let nonce = documented::expand(&y, b"entry-nonce", &salt, i, 12);
            assert_eq!(hex::encode(&tag), slot.tag, "{name} slot {i}");
            assert_eq!(hex::encode(&nonce), slot.nonce, "{name} slot {i}");
            assert_eq!(hex::encode(chunk), slot.chunk, "{name} slot {i}");
            let sealed = aead(&key, &nonce, chunk, &tag);
            assert_eq!(sealed.len(), slot_bytes + 16);
            assert_eq!(hex::encode(&sealed), slot.sealed, "{name} slot {i}");
        }
    }
    let kinds: Vec<&str> = file
        .records
        .iter()
        .map(|r| r.statements[0].split('"').nth(1).unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["cpi", "opt_out"],
        "a mapping record and an opt-out record"
    );
}

/// One statement's record item `(kind, body)`, from its JSON line and the documented formats:
/// a mapping's compact form (`src/keyword/bucket.rs`: flags, `str8` MSP, PSI and context,
/// window, issuer id and signature, user consent), an opt-out's window, issuer id and signature.
fn documented_item(cpi: &str, line: &str) -> (u8, Vec<u8>) {
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap();
    let window = |v: &serde_json::Value| {
        [
            v["not_before"].as_u64().unwrap(),
            v["not_after"].as_u64().unwrap(),
        ]
        .iter()
        .flat_map(|t| t.to_le_bytes())
        .collect::<Vec<u8>>()
    };
    if let Some(o) = json.get("opt_out") {
        assert_eq!(o["cpi"], cpi);
        let body = [window(o), b64(&o["issuer"]), b64(&o["sig"])].concat();
        assert_eq!(body.len(), 8 + 8 + 8 + 64);
        return (1, body);
    }
    assert_eq!(json["cpi"], cpi);
    let text = |field: &str| json.get(field).and_then(|v| v.as_str());
    let user = json.get("user_key").is_some();
    let flags = u8::from(text("psi").is_some())
        | u8::from(text("context").is_some()) << 1
        | u8::from(user) << 2;
    let mut body = vec![flags];
    for s in [text("msp"), text("psi"), text("context")]
        .into_iter()
        .flatten()
    {
        body.push(s.len() as u8);
        body.extend_from_slice(s.as_bytes());
    }
    body.extend(window(&json));
    body.extend(b64(&json["issuer"]));
    body.extend(b64(&json["sig"]));
    if user {
        body.extend(b64(&json["user_key"]));
        body.extend(b64(&json["user_sig"]));
    }
    (0, body)
}

/// The implementation's compact encoding of the example mappings is the documented one.
#[test]
fn record_items_are_the_documented_encodings() {
    for (_, lines) in record_statements() {
        for line in lines {
            let cpi = cpi_of(&line).to_string();
            let (kind, body) = documented_item(&cpi, &line.to_json_line());
            match line {
                RecordLine::Mapping(m) => {
                    assert_eq!(kind, 0);
                    assert_eq!(body, fuzzing::encode_compact(&m));
                    assert_eq!(fuzzing::decode_compact(&m.fields.cpi, &body).unwrap(), *m);
                }
                RecordLine::OptOut(_) => assert_eq!(kind, 1),
            }
        }
    }
}

/// Each slot of the examples opens under its CPI's secrets at its own index only, and not under
/// another CPI's secrets.
#[test]
fn record_slots_open_only_as_their_own_slot() {
    let file = load();
    let key = key();
    for r in &file.records {
        let y = key.evaluate(&Cpi::parse(&r.cpi).unwrap()).unwrap();
        let secrets = EntrySecrets::derive(&y, &RECORD_SALT, r.num_buckets);
        for slot in &r.slots {
            let sealed = unhex(&slot.sealed);
            assert_eq!(
                secrets.open_slot(slot.index, &sealed).unwrap(),
                unhex(&slot.chunk)
            );
            assert!(secrets.open_slot(slot.index + 1, &sealed).is_err());
        }
        let other = key
            .evaluate(&Cpi::parse("tel:+14155550101").unwrap())
            .unwrap();
        let other = EntrySecrets::derive(&other, &RECORD_SALT, r.num_buckets);
        assert!(other.open_slot(0, &unhex(&r.slots[0].sealed)).is_err());
    }
}
