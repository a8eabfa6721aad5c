//! Serialising the engine's report types, which carry no serde derives of their own: each is
//! written through a small mirror struct holding the fields a report reader needs.

use pir_core::{
    CoreError, SnapshotHeader,
    identity::{CpiWarnings, IssuerId},
    pir::Scheme,
    snapshot::{BuildReport, UpdateReport},
};
use serde::{Serialize, Serializer};

use crate::error::{DpError, IoOp};

/// A step's report as the command line prints it: text for people, or with `--json` one JSON
/// object (on one line) for scripts. Every report of this crate is one.
pub trait Report: std::fmt::Display + Serialize {
    /// The text to print, without a final newline.
    fn render(&self, json: bool) -> Result<String, DpError> {
        if json {
            serde_json::to_string(self)
                .map_err(|_| DpError::Core(CoreError::Internal("a report that is not JSON")))
        } else {
            Ok(self.to_string().trim_end_matches('\n').to_owned())
        }
    }

    /// Prints [`Report::render`] and a newline on stdout; a closed pipe (`| head`) is not an
    /// error.
    fn print(&self, json: bool) -> Result<(), DpError> {
        use std::io::Write;
        let text = self.render(json)?;
        match writeln!(std::io::stdout().lock(), "{text}") {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(DpError::Io {
                op: IoOp::Writing,
                path: "<stdout>".into(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

impl<T: std::fmt::Display + Serialize> Report for T {}

/// Checksums in reports are lower-case hex; key ids are spelt as everywhere (base64url).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
struct BaseOut<'a> {
    file: &'a str,
    epoch: u64,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    epoch: u64,
    created_at: u64,
    mapping_count: u64,
    opt_out_count: u64,
    cpi_count: u64,
    bucket_bytes: u64,
    record_bytes: u64,
    items: usize,
    scheme: &'a Scheme,
    layout_version: u32,
    num_buckets: u32,
    num_groups: u32,
    choice_table_bytes: usize,
    msps: &'a [String],
    issuers: Vec<String>,
    shard_index: u32,
    shard_count: u32,
    oprf_suite: &'static str,
    oprf_public_key: String,
    base: Option<BaseOut<'a>>,
    plaintext_checksum: String,
    db_checksum: String,
    signed_by: Option<String>,
}

/// A snapshot header, for `#[serde(serialize_with)]`.
pub(crate) fn header<S: Serializer>(h: &SnapshotHeader, s: S) -> Result<S::Ok, S::Error> {
    HeaderOut {
        epoch: h.epoch,
        created_at: h.created_at,
        mapping_count: h.mapping_count,
        opt_out_count: h.opt_out_count,
        cpi_count: h.cpi_count,
        bucket_bytes: h.bucket_bytes,
        record_bytes: h.record_bytes,
        items: h.scheme.num_items(),
        scheme: &h.scheme,
        layout_version: h.layout.version,
        num_buckets: h.layout.num_buckets,
        num_groups: h.layout.num_groups,
        choice_table_bytes: h.layout.choices.len(),
        msps: &h.layout.msps,
        issuers: h
            .layout
            .issuers
            .iter()
            .map(|i| IssuerId(*i).to_string())
            .collect(),
        shard_index: h.layout.shard.index,
        shard_count: h.layout.shard.count,
        oprf_suite: pir_core::oprf::SUITE_NAME,
        oprf_public_key: h.layout.oprf_key.to_string(),
        base: h.base.as_ref().map(|b| BaseOut {
            file: &b.file,
            epoch: b.epoch,
        }),
        plaintext_checksum: hex(&h.plaintext_checksum),
        db_checksum: hex(&h.db_checksum),
        signed_by: h
            .signature
            .as_ref()
            .map(|sig| IssuerId(sig.key_id).to_string()),
    }
    .serialize(s)
}

#[derive(Serialize)]
struct BuildReportOut {
    input_mappings: usize,
    input_opt_outs: usize,
    expired_dropped: usize,
    duplicates_replaced: usize,
    suppressed_by_opt_out: usize,
    stored_mappings: usize,
    stored_opt_outs: usize,
    groups: u32,
    fullest_bucket_bytes: usize,
    layout_attempts: u32,
    packing_efficiency: f64,
}

/// A build report, for `#[serde(serialize_with)]`.
pub(crate) fn build_report<S: Serializer>(r: &BuildReport, s: S) -> Result<S::Ok, S::Error> {
    BuildReportOut {
        input_mappings: r.input_mappings,
        input_opt_outs: r.input_opt_outs,
        expired_dropped: r.expired_dropped,
        duplicates_replaced: r.duplicates_replaced,
        suppressed_by_opt_out: r.suppressed_by_opt_out,
        stored_mappings: r.stored_mappings,
        stored_opt_outs: r.stored_opt_outs,
        groups: r.groups,
        fullest_bucket_bytes: r.fullest_bucket_bytes,
        layout_attempts: r.layout_attempts,
        packing_efficiency: r.packing_efficiency,
    }
    .serialize(s)
}

#[derive(Serialize)]
struct CpiWarningOut<'a> {
    cpi: &'a str,
    warning: &'static str,
}

#[derive(Serialize)]
struct CpiWarningsOut<'a> {
    count: usize,
    examples: Vec<CpiWarningOut<'a>>,
}

/// The CPI warnings of a build, for `#[serde(serialize_with)]`: the count and the first
/// examples, each warning by its stable name.
pub(crate) fn cpi_warnings<S: Serializer>(w: &CpiWarnings, s: S) -> Result<S::Ok, S::Error> {
    CpiWarningsOut {
        count: w.count,
        examples: w
            .examples
            .iter()
            .map(|(cpi, warning)| CpiWarningOut {
                cpi: cpi.as_str(),
                warning: warning.name(),
            })
            .collect(),
    }
    .serialize(s)
}

#[derive(Serialize)]
struct UpdateReportOut {
    upserts: usize,
    opt_outs: usize,
    removed: usize,
    removals_unmatched: usize,
    expired_dropped: usize,
    items_reencoded: usize,
}

/// An update report, for `#[serde(serialize_with)]`.
pub(crate) fn update_report<S: Serializer>(r: &UpdateReport, s: S) -> Result<S::Ok, S::Error> {
    UpdateReportOut {
        upserts: r.upserts,
        opt_outs: r.opt_outs,
        removed: r.removed,
        removals_unmatched: r.removals_unmatched,
        expired_dropped: r.expired_dropped,
        items_reencoded: r.items_reencoded,
    }
    .serialize(s)
}
