//! The bucket and record decoders (`pir_core::fuzzing`) on arbitrary bytes: `Ok` or `Err`,
//! never a panic. A record that decodes re-encodes to exactly its input bytes (the encoding is
//! canonical).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pir_core::{Cpi, IssuerKey, KeywordLayout, fuzzing, oprf::OprfKey};

fn cpi() -> &'static Cpi {
    static CPI: OnceLock<Cpi> = OnceLock::new();
    CPI.get_or_init(|| Cpi::parse("tel:+14155550100").expect("a valid CPI"))
}

fn layout() -> &'static KeywordLayout {
    static LAYOUT: OnceLock<KeywordLayout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let oprf = OprfKey::derive(&[1; 32], b"fuzz").expect("a key");
        KeywordLayout::new([0; 32], 8, 8, oprf.public())
            .and_then(|l| {
                l.with_dictionaries(
                    vec!["chat.example".into(), "talk.example".into()],
                    vec![IssuerKey::from_seed(&[11; 32]).id()],
                )
            })
            .expect("a valid layout")
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::decode_bucket(data);
    if let Ok(again) = fuzzing::reencode_record(cpi(), data, layout()) {
        assert_eq!(again, data, "decode then encode differs");
    }
});
