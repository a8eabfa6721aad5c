//! `Mapping::from_json_line`, `RecordLine::from_json_line` and `DeltaLine::from_json_line` on
//! arbitrary UTF-8: `Ok` or `Err`, never a panic; and a mapping or an opt-out that parses
//! round-trips through `to_json_line` unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pir_core::{
    Mapping,
    identity::{DeltaLine, RecordLine},
};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mapping) = Mapping::from_json_line(line) {
        let again = Mapping::from_json_line(&mapping.to_json_line())
            .expect("a mapping's own JSON line parses");
        assert_eq!(again, mapping, "JSON round trip changed the mapping");
        assert!(matches!(
            DeltaLine::from_json_line(line),
            Ok(DeltaLine::Upsert(m)) if *m == mapping
        ));
    } else {
        let _ = DeltaLine::from_json_line(line);
    }
    if let Ok(record) = RecordLine::from_json_line(line) {
        let again = RecordLine::from_json_line(&record.to_json_line())
            .expect("a record line's own JSON parses");
        assert_eq!(again, record, "JSON round trip changed the record line");
    }
});
