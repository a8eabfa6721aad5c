//! The keyword layout's derivation as `docs/mapping-format.md` section 8 documents it, computed
//! with the `hkdf` crate directly rather than by the implementation: the recipe the vector
//! tests check both the implementation and the committed vectors against.

use hkdf::Hkdf;
use sha2::Sha256;

/// HKDF-SHA256 of keyword layout version 2: salt `"pir-discovery/keyword/v2"`, IKM `y`, info
/// `label || layout salt`, and `|| u32le(slot)` after it for a CPI's slot 1 and later.
pub(crate) fn expand(y: &[u8], label: &[u8], salt: &[u8], slot: u32, len: usize) -> Vec<u8> {
    let prk = Hkdf::<Sha256>::new(Some(b"pir-discovery/keyword/v2"), y);
    let mut info = [label, salt].concat();
    if slot >= 1 {
        info.extend_from_slice(&slot.to_le_bytes());
    }
    let mut out = vec![0u8; len];
    prk.expand(&info, &mut out).unwrap();
    out
}
