//! The text parsers a user or a file reaches: `Cpi::parse`, `TrustStore::parse` and
//! `IssuerKey::parse_secret`. `Ok` or `Err`, never a panic; CPI normalisation is idempotent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pir_core::{Cpi, IssuerKey, TrustStore};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cpi) = Cpi::parse(text) {
        let again = Cpi::parse(cpi.as_str()).expect("a normalised CPI parses");
        assert_eq!(again, cpi, "CPI normalisation is not idempotent");
    }
    let _ = TrustStore::parse(text);
    let _ = IssuerKey::parse_secret(text);
});
