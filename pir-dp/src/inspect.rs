//! `inspect`: describe a snapshot file from its header, without loading the database.

use std::path::Path;

use pir_core::{Snapshot, SnapshotHeader};

use crate::error::{DpError, IoOp};

/// `pir-server inspect`: a human-readable description of a snapshot file's header.
pub fn inspect(path: &Path) -> Result<String, DpError> {
    let h = Snapshot::read_header(path)?;
    let file_bytes = std::fs::metadata(path)
        .map_err(|e| DpError::io(IoOp::Reading, path, e))?
        .len();
    Ok(describe(&h, file_bytes)?)
}

/// The description `inspect` prints.
pub fn describe(h: &SnapshotHeader, file_bytes: u64) -> Result<String, pir_core::CoreError> {
    let s = &h.scheme;
    let sizes = s.message_sizes()?;
    let vetted = s.as_vetted();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    line("epoch", h.epoch.to_string());
    if let Some(base) = &h.base {
        line(
            "delta of",
            format!(
                "{} (epoch {}); loading it loads that file beside it",
                base.file, base.epoch
            ),
        );
    }
    line("created at", format!("{} (unix)", h.created_at));
    line("mappings", h.mapping_count.to_string());
    line("distinct CPIs", h.cpi_count.to_string());
    line(
        "shape",
        format!(
            "{} items x {} B (2^{} = 2^{} x 2^{})",
            s.num_items(),
            s.item_bytes,
            s.nu_1 + s.nu_2,
            s.nu_1,
            s.nu_2
        ),
    );
    line("scheme", s.to_string());
    line(
        "parameter set",
        match vetted {
            Some(p) => format!(
                "vetted ({}): {}-bit security, failure <= 2^{}",
                match p.origin {
                    pir_core::PresetOrigin::Store => "Spiral parameter store",
                    pir_core::PresetOrigin::Tuned => "tuned, see docs/performance.md",
                },
                p.security_bits,
                p.log2_failure
            ),
            None => "NOT a vetted preset (test or custom parameters)".into(),
        },
    );
    line(
        "keyword layout",
        format!("v{}, {} buckets", h.layout.version, h.layout.num_buckets),
    );
    line("record bytes", format!("{:.2} MiB", mib(h.record_bytes)));
    line("capacity", format!("{:.2} MiB", mib(s.capacity_bytes())));
    line(
        "packing efficiency",
        format!("{:.3}", h.packing_efficiency()),
    );
    line(
        "database (NTT)",
        format!("{:.1} MiB", mib(s.db_words() as u64 * 8)),
    );
    line("file", format!("{:.1} MiB", mib(file_bytes)));
    line(
        "message sizes",
        format!(
            "public keys {:.2} MiB, query {} KiB, response {} KiB",
            mib(sizes.public_keys as u64),
            sizes.query / 1024,
            sizes.response / 1024
        ),
    );
    line(
        "signed by DP",
        match &h.signature {
            Some(s) => format!("yes (key {})", hex_id(&s.key_id)),
            None => "no".into(),
        },
    );
    Ok(out)
}

fn hex_id(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}
