//! The bucket, record and compact-mapping decoders (`pir_core::fuzzing`) on arbitrary bytes:
//! `Ok` or `Err`, never a panic. A compact mapping that decodes re-encodes to exactly its input
//! bytes (the encoding is canonical).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pir_core::{Cpi, fuzzing};

fn cpi() -> &'static Cpi {
    static CPI: OnceLock<Cpi> = OnceLock::new();
    CPI.get_or_init(|| Cpi::parse("tel:+14155550100").expect("a valid CPI"))
}

fuzz_target!(|data: &[u8]| {
    let slot_len = 8 + data.first().map_or(0, |&b| b as usize);
    let _ = fuzzing::decode_bucket(data, slot_len);
    let _ = fuzzing::decode_record(cpi(), data);
    if let Ok(mapping) = fuzzing::decode_compact(cpi(), data) {
        assert_eq!(
            fuzzing::encode_compact(&mapping),
            data,
            "decode then encode differs"
        );
    }
});
