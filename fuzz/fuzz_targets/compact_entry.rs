//! The bucket and compact-entry decoders (`pir_core::fuzzing`) on arbitrary bytes: `Ok` or
//! `Err`, never a panic. An entry that decodes re-encodes to exactly its input bytes (the
//! encoding is canonical), and the CPI-less reader agrees with the full decoder.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pir_core::{Cpi, fuzzing};

fn cpi() -> &'static Cpi {
    static CPI: OnceLock<Cpi> = OnceLock::new();
    CPI.get_or_init(|| Cpi::parse("tel:+14155550100").expect("a valid CPI"))
}

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::decode_bucket(data);
    let quick = fuzzing::compact_msp_and_expiry(data);
    if let Ok(mapping) = fuzzing::decode_compact(cpi(), data) {
        assert_eq!(
            fuzzing::encode_compact(&mapping),
            data,
            "decode then encode differs"
        );
        let (msp, not_after) = quick.expect("a decodable entry has an MSP and an expiry");
        assert_eq!(msp, mapping.fields.msp.as_bytes());
        assert_eq!(not_after, mapping.fields.not_after);
    }
});
