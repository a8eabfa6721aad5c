//! `inspect`: describe a snapshot file from its header, without loading the database.

use std::{fmt, path::Path};

use pir_core::{
    CoreError, MessageSizes, Snapshot, SnapshotHeader,
    identity::IssuerId,
    pir::{PresetOrigin, Scheme},
};
use serde::Serialize;

use crate::{
    error::{DpError, IoOp},
    human::{Bytes, Percent, Time},
    report,
};

/// Where a vetted parameter set comes from (serialised `store` or `tuned`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The Spiral authors' parameter store, as published.
    Store,
    /// This project's tuning (see `docs/performance.md`).
    Tuned,
    /// YPIR+SP: the engine fixes everything but the shape (its parameters are the paper's).
    Engine,
}

/// What is known about a vetted parameter set.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct VettedPreset {
    /// Where it comes from.
    pub origin: Origin,
    /// Estimated classical security, bits.
    pub security_bits: u32,
    /// log2 of the per-query correctness failure probability bound.
    pub log2_failure: i32,
}

/// A snapshot file described from its header: shape, parameters, sizes, packing. Displays as
/// `pir-server inspect` prints it (one `key value` line each).
#[derive(Debug, Serialize)]
pub struct Description {
    /// The header.
    #[serde(serialize_with = "report::header")]
    pub header: SnapshotHeader,
    /// The file's size, bytes.
    pub file_bytes: u64,
    /// Message sizes under the snapshot's parameters.
    pub message_sizes: MessageSizes,
    /// The vetted preset the parameters are, if any.
    pub vetted: Option<VettedPreset>,
}

/// `pir-server inspect`: a description of a snapshot file's header.
pub fn inspect(path: &Path) -> Result<Description, DpError> {
    let h = Snapshot::read_header(path)?;
    let file_bytes = std::fs::metadata(path)
        .map_err(|e| DpError::io(IoOp::Reading, path, e))?
        .len();
    Ok(describe(&h, file_bytes)?)
}

/// The description of a header, for a file of `file_bytes`.
pub fn describe(h: &SnapshotHeader, file_bytes: u64) -> Result<Description, CoreError> {
    let vetted = match &h.scheme {
        Scheme::Spiral(params) => params.as_vetted().map(|p| VettedPreset {
            origin: match p.origin {
                PresetOrigin::Store => Origin::Store,
                PresetOrigin::Tuned => Origin::Tuned,
            },
            security_bits: p.security_bits,
            log2_failure: p.log2_failure,
        }),
        Scheme::YpirSp(params) => Some(VettedPreset {
            origin: Origin::Engine,
            security_bits: 128,
            log2_failure: params.estimated_log2_failure().ceil() as i32,
        }),
    };
    Ok(Description {
        header: h.clone(),
        file_bytes,
        message_sizes: h.scheme.message_sizes()?,
        vetted,
    })
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        let s = &h.scheme;
        let sizes = &self.message_sizes;
        let mut line = |k: &str, v: String| writeln!(f, "{k:<22} {v}");
        line("epoch", h.epoch.to_string())?;
        if let Some(base) = &h.base {
            line(
                "delta of",
                format!(
                    "{} (epoch {}); loading it loads that file beside it",
                    base.file, base.epoch
                ),
            )?;
        }
        line("created at", Time(h.created_at).to_string())?;
        line("mappings", h.mapping_count.to_string())?;
        line("opt-outs", h.opt_out_count.to_string())?;
        line("distinct CPIs", h.cpi_count.to_string())?;
        line("engine", s.engine().to_string())?;
        line(
            "shape",
            match s {
                Scheme::Spiral(p) => format!(
                    "{} items x {} B (2^{} = 2^{} x 2^{})",
                    s.num_items(),
                    s.item_bytes(),
                    p.nu_1 + p.nu_2,
                    p.nu_1,
                    p.nu_2
                ),
                Scheme::YpirSp(p) => format!(
                    "{} items x {} B (2^{} rows of {} x 2048 elements of 14 bits)",
                    s.num_items(),
                    s.item_bytes(),
                    p.rows_log2(),
                    p.instances()
                ),
            },
        )?;
        line("scheme", s.to_string())?;
        line(
            "parameter set",
            match &self.vetted {
                Some(p) => format!(
                    "vetted ({}): {}-bit security, failure <= 2^{}",
                    match p.origin {
                        Origin::Store => "Spiral parameter store",
                        Origin::Tuned => "tuned, see docs/performance.md",
                        Origin::Engine => "YPIR+SP's fixed parameters",
                    },
                    p.security_bits,
                    p.log2_failure
                ),
                None if self
                    .header
                    .scheme
                    .spiral()
                    .is_some_and(|p| p.is_withdrawn()) =>
                {
                    "WITHDRAWN preset: answers were measured to decode wrong; rebuild this \
                     snapshot (clients refuse it)"
                        .into()
                }
                None => "NOT a vetted preset (test or custom parameters)".into(),
            },
        )?;
        line(
            "keyword layout",
            format!(
                "v{}, {} buckets, {} groups ({} choice table), {} MSP names, {} issuer ids; \
                 buckets filled {} (+{} B locator and seal a record)",
                h.layout.version,
                h.layout.num_buckets,
                h.layout.num_groups,
                Bytes(h.layout.choices.len() as u64),
                h.layout.msps.len(),
                h.layout.issuers.len(),
                Percent(h.bucket_bytes as f64 / s.capacity_bytes() as f64),
                pir_core::keyword::RECORD_OVERHEAD
            ),
        )?;
        line(
            "OPRF key",
            format!("{} {}", pir_core::oprf::SUITE_NAME, h.layout.oprf_key),
        )?;
        line("record bytes", Bytes(h.record_bytes).to_string())?;
        line("capacity", Bytes(s.capacity_bytes()).to_string())?;
        line(
            "packing efficiency",
            Percent(h.packing_efficiency()).to_string(),
        )?;
        match s {
            Scheme::Spiral(p) => {
                line("database (NTT)", Bytes(p.db_words() as u64 * 8).to_string())?
            }
            Scheme::YpirSp(_) => line(
                "database",
                "derived from the buckets where it is served (no words in the file)".into(),
            )?,
        }
        line("file", Bytes(self.file_bytes).to_string())?;
        line(
            "message sizes",
            format!(
                "public keys {}, query {}, response {}",
                Bytes(sizes.public_keys as u64),
                Bytes(sizes.query as u64),
                Bytes(sizes.response as u64)
            ),
        )?;
        line(
            "signed by DP",
            match &h.signature {
                Some(s) => format!("yes (key {})", IssuerId(s.key_id)),
                None => "no".into(),
            },
        )
    }
}
