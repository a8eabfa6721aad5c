//! Known-answer vectors for keyword layout version 2 (`src/keyword/derive.rs`): the OPRF output
//! of a CPI under a fixed DP key, and the shard, bucket, tag, entry key, nonce and sealed entry
//! derived from it (`test_vectors/keyword_v2.json`).
//!
//! The file is written by the ignored `regenerate` test, never by hand:
//!
//! ```text
//! cargo test -p pir-core --test keyword_v2 -- --ignored regenerate
//! ```
//!
//! The check recomputes every HKDF output and the AEAD from the documented recipe with the
//! `hkdf` and `aes-gcm-siv` crates directly, and compares the implementation with both.

use std::path::PathBuf;

use aes_gcm_siv::{
    Aes256GcmSiv, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use hkdf::Hkdf;
use pir_core::{
    Cpi,
    keyword::{EntrySecrets, shard_of},
    oprf::{OprfKey, SUITE_NAME},
};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const FILE: &str = "keyword_v2.json";
/// The fixed DP key: RFC 9497 `DeriveKeyPair(seed, info)`.
const SEED: [u8; 32] = [0x5e; 32];
const INFO: &[u8] = b"pir-discovery keyword_v2 test vectors";
const SHARDS: u32 = 10_000;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    description: Vec<String>,
    suite: String,
    oprf_seed: String,
    oprf_info: String,
    oprf_public_key: String,
    vectors: Vec<Vector>,
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
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test_vectors")
        .join(FILE)
}

/// HKDF-Expand of the documented recipe, computed here rather than by the implementation.
fn documented(y: &[u8], label: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    let prk = Hkdf::<Sha256>::new(Some(b"pir-discovery/keyword/v2"), y);
    let mut out = vec![0u8; len];
    prk.expand(&[label, salt].concat(), &mut out).unwrap();
    out
}

fn word(bytes: &[u8], n: u32) -> u32 {
    let x = u64::from_le_bytes(bytes.try_into().unwrap()) as u128;
    ((x * n as u128) >> 64) as u32
}

fn generate() -> VectorFile {
    let key = OprfKey::derive(&SEED, INFO).unwrap();
    let cases = [
        ("tel:+14155550100", 0x11u8, 1u32),
        ("tel:+14155550100", 0x22, 16_384),
        ("mailto:bob@example.org", 0x22, 16_384),
        ("mailto:alice@xn--bcher-kva.example", 0x33, 1_000_003),
    ];
    let vectors = cases
        .iter()
        .map(|&(cpi, salt_byte, num_buckets)| {
            let salt = [salt_byte; 32];
            let y = key.evaluate(&Cpi::parse(cpi).unwrap()).unwrap();
            let secrets = EntrySecrets::derive(&y, &salt, num_buckets);
            let plaintext = format!("compact mappings of {cpi}");
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
                entry_nonce: hex::encode(documented(y.as_bytes(), b"entry-nonce", &salt, 12)),
                sealed: hex::encode(secrets.seal(plaintext.as_bytes()).unwrap()),
                plaintext: hex::encode(plaintext),
            }
        })
        .collect();
    VectorFile {
        description: vec![
            "Keyword layout version 2 (docs/mapping-format.md): y = VOPRF(k, cpi) with RFC 9497".into(),
            "ristretto255-SHA512, k = DeriveKeyPair(oprf_seed, oprf_info); then HKDF-SHA256 with".into(),
            "salt \"pir-discovery/keyword/v2\" and IKM y: shard from \"shard\", bucket, tag,".into(),
            "entry_key and entry_nonce from \"bucket\"/\"tag\"/\"entry-key\"/\"entry-nonce\" || salt;".into(),
            "sealed = AES-256-GCM-SIV(entry_key, entry_nonce, plaintext, aad = tag). Hex throughout.".into(),
        ],
        suite: SUITE_NAME.into(),
        oprf_seed: hex::encode(SEED),
        oprf_info: hex::encode(INFO),
        oprf_public_key: hex::encode(key.public().to_bytes()),
        vectors,
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
    let text = std::fs::read_to_string(path()).unwrap();
    let file: VectorFile = serde_json::from_str(&text).unwrap();
    assert_eq!(file, generate());
}

#[test]
fn the_committed_vectors_follow_the_documented_recipe() {
    let text = std::fs::read_to_string(path()).unwrap();
    let file: VectorFile = serde_json::from_str(&text).unwrap();
    assert_eq!(file.suite, "ristretto255-SHA512");
    for v in &file.vectors {
        let y = hex::decode(&v.oprf_output).unwrap();
        let salt = hex::decode(&v.salt).unwrap();
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
        assert_eq!(
            hex::encode(documented(&y, b"entry-key", &salt, 32)),
            v.entry_key
        );
        assert_eq!(
            hex::encode(documented(&y, b"entry-nonce", &salt, 12)),
            v.entry_nonce
        );
        let key: [u8; 32] = hex::decode(&v.entry_key).unwrap().try_into().unwrap();
        let nonce = hex::decode(&v.entry_nonce).unwrap();
        let sealed = Aes256GcmSiv::new(&key.into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &hex::decode(&v.plaintext).unwrap(),
                    aad: &tag,
                },
            )
            .unwrap();
        assert_eq!(hex::encode(sealed), v.sealed);
    }
}
