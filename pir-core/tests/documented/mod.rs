//! The keyword layout's derivation and bucket format as `docs/mapping-format.md` sections 8 and
//! 9 document them, computed with the `hkdf`, `sha2` and `aes-gcm-siv` crates directly rather
//! than by the implementation: the recipe the vector tests check both the implementation and
//! the committed vectors against.
#![allow(dead_code)]

use aes_gcm_siv::{
    Aes256GcmSiv, Nonce,
    aead::{Aead, KeyInit},
};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

/// HKDF-SHA256 of keyword layout version 3: salt `"pir-discovery/keyword/v3"`, IKM `y`, info
/// `label || layout salt`.
pub(crate) fn expand(y: &[u8], label: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    let prk = Hkdf::<Sha256>::new(Some(b"pir-discovery/keyword/v3"), y);
    let info = [label, salt].concat();
    let mut out = vec![0u8; len];
    prk.expand(&info, &mut out).unwrap();
    out
}

/// `(u64le(bytes) * n) >> 64`.
pub(crate) fn reduce(bytes: &[u8], n: u32) -> u32 {
    let x = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    ((u128::from(x) * u128::from(n)) >> 64) as u32
}

/// The group of the CPI whose OPRF output is `y`.
pub(crate) fn group(y: &[u8], salt: &[u8], num_groups: u32) -> u32 {
    reduce(&expand(y, b"group", salt, 8), num_groups)
}

/// Candidate `c` of group `g`.
pub(crate) fn candidate(salt: &[u8], g: u32, c: u8, num_buckets: u32) -> u32 {
    let digest = Sha256::new()
        .chain_update(b"pir-discovery/keyword/v3/candidate\0")
        .chain_update(salt)
        .chain_update(g.to_le_bytes())
        .chain_update([c])
        .finalize();
    reduce(&digest, num_buckets)
}

/// The bucket of the CPI whose OPRF output is `y` under a layout's salt, counts and choice
/// table.
pub(crate) fn bucket(y: &[u8], salt: &[u8], num_groups: u32, choices: &[u8], buckets: u32) -> u32 {
    let g = group(y, salt, num_groups);
    let choice = (choices[(g / 4) as usize] >> (2 * (g % 4))) & 3;
    candidate(salt, g, choice, buckets)
}

/// The record of the CPI whose OPRF output is `y`, out of its bucket's bytes, from the
/// documents alone: `u16le(count) || u16le(blob_len) || locator * count || blob || zeros`;
/// a locator is `u16le(offset + m0) || u16le(len + m1) || u16le(m2)` for the CPI's mask
/// `m0 || m1 || m2`; the record is `blob[offset..offset + len]` opened with AES-256-GCM-SIV
/// under the CPI's key and nonce, no associated data. `None` when no locator leads to one.
pub(crate) fn open_record(item: &[u8], y: &[u8], salt: &[u8]) -> Option<Vec<u8>> {
    let word = |b: &[u8], i: usize| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
    let count = usize::from(word(item, 0));
    let blob_len = usize::from(word(item, 1));
    let blob = &item[4 + 6 * count..][..blob_len];
    assert!(
        item[4 + 6 * count + blob_len..].iter().all(|&b| b == 0),
        "bucket padding is zero"
    );
    let mask = expand(y, b"locator", salt, 6);
    let key: [u8; 32] = expand(y, b"entry-key", salt, 32).try_into().unwrap();
    let nonce = expand(y, b"entry-nonce", salt, 12);
    let cipher = Aes256GcmSiv::new(&key.into());
    (0..count).find_map(|k| {
        let locator = &item[4 + 6 * k..][..6];
        if word(locator, 2) != word(&mask, 2) {
            return None;
        }
        let offset = usize::from(word(locator, 0).wrapping_sub(word(&mask, 0)));
        let len = usize::from(word(locator, 1).wrapping_sub(word(&mask, 1)));
        let sealed = blob.get(offset..offset + len)?;
        cipher.decrypt(Nonce::from_slice(&nonce), sealed).ok()
    })
}
