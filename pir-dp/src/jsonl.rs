//! Mapping files in JSON Lines: writing them, and reading them with every failure named by its
//! line number.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
};

use pir_core::{
    CoreError, Mapping, TrustStore, VerifiedMapping,
    identity::{DeltaLine, RecordLine, VerifiedOptOut},
    snapshot::DeltaOp,
};
use rayon::prelude::*;

use crate::{
    error::{DpError, InvalidLine, IoOp},
    progress::{open_behind_bar, progress_bar},
};

/// Writes mappings as JSON Lines.
pub fn write_jsonl(path: &Path, mappings: &[Mapping]) -> Result<(), DpError> {
    write_jsonl_shown(path, mappings, false)
}

/// [`write_jsonl`], with a bar over the lines written when `show`. The file is written
/// atomically (a unique temporary file renamed into place), mode 0640.
pub(crate) fn write_jsonl_shown(
    path: &Path,
    mappings: &[Mapping],
    show: bool,
) -> Result<(), DpError> {
    let bar = progress_bar(mappings.len() as u64, show, "writing");
    let io = |p: &Path, e| DpError::io(IoOp::Writing, p, e);
    pir_core::fs::write_atomic(path, 0o640, io, |w| {
        for m in mappings {
            writeln!(w, "{}", m.to_json_line()).map_err(|e| io(path, e))?;
            bar.inc(1);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(())
}

/// Mappings and opt-outs read from a JSON Lines file, each verified; failures listed by line
/// number.
pub struct ReadMappings {
    /// The valid mappings, in file order.
    pub mappings: Vec<VerifiedMapping>,
    /// The valid opt-outs, in file order.
    pub opt_outs: Vec<VerifiedOptOut>,
    /// Each invalid line, in file order.
    pub invalid: Vec<InvalidLine>,
}

/// Parses every non-blank line of a file in parallel; returns the values and each line that
/// failed. With `show`, bars over the bytes read and the lines checked.
fn read_lines<T: Send>(
    path: &Path,
    show: bool,
    parse: impl Fn(&str) -> Result<T, CoreError> + Sync,
) -> Result<(Vec<T>, Vec<InvalidLine>), DpError> {
    let (reader, bar, _) = open_behind_bar(path, show, "reading")?;
    let lines: Vec<String> = BufReader::new(reader)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| DpError::io(IoOp::Reading, path, e))?;
    bar.finish_and_clear();
    let bar = progress_bar(lines.len() as u64, show, "verifying");
    let results: Vec<(usize, Result<T, CoreError>)> = lines
        .par_iter()
        .enumerate()
        .inspect(|_| bar.inc(1))
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| (i + 1, parse(line)))
        .collect();
    bar.finish_and_clear();
    let mut good = Vec::with_capacity(results.len());
    let mut invalid = Vec::new();
    for (line, r) in results {
        match r {
            Ok(v) => good.push(v),
            Err(reason) => invalid.push(InvalidLine { line, reason }),
        }
    }
    Ok((good, invalid))
}

/// Reads and verifies every line of a mappings file (blank lines are skipped).
pub fn read_mappings(path: &Path, trust: &TrustStore) -> Result<ReadMappings, DpError> {
    read_mappings_shown(path, trust, false)
}

/// [`read_mappings`], with progress when `show`.
pub(crate) fn read_mappings_shown(
    path: &Path,
    trust: &TrustStore,
    show: bool,
) -> Result<ReadMappings, DpError> {
    let (records, invalid) = read_lines(path, show, |line| {
        Ok(match RecordLine::from_json_line(line)? {
            RecordLine::Mapping(m) => Record::Mapping(VerifiedMapping::new(*m, trust)?),
            RecordLine::OptOut(o) => Record::OptOut(VerifiedOptOut::new(*o, trust)?),
        })
    })?;
    let (mut mappings, mut opt_outs) = (Vec::with_capacity(records.len()), Vec::new());
    for r in records {
        match r {
            Record::Mapping(m) => mappings.push(m),
            Record::OptOut(o) => opt_outs.push(o),
        }
    }
    Ok(ReadMappings {
        mappings,
        opt_outs,
        invalid,
    })
}

/// One verified line of a mapping file.
enum Record {
    Mapping(VerifiedMapping),
    OptOut(VerifiedOptOut),
}

/// Reads and verifies every line of a delta file: signed mappings (upserts), opt-outs and
/// removals.
pub fn read_delta(
    path: &Path,
    trust: &TrustStore,
) -> Result<(Vec<DeltaOp>, Vec<InvalidLine>), DpError> {
    read_delta_shown(path, trust, false)
}

/// [`read_delta`], with progress when `show`.
pub(crate) fn read_delta_shown(
    path: &Path,
    trust: &TrustStore,
    show: bool,
) -> Result<(Vec<DeltaOp>, Vec<InvalidLine>), DpError> {
    read_lines(path, show, |line| {
        Ok(match DeltaLine::from_json_line(line)? {
            DeltaLine::Upsert(m) => DeltaOp::Upsert(Box::new(VerifiedMapping::new(*m, trust)?)),
            DeltaLine::OptOut(o) => DeltaOp::OptOut(Box::new(VerifiedOptOut::new(*o, trust)?)),
            DeltaLine::Remove { cpi, msp } => DeltaOp::Remove { cpi, msp },
        })
    })
}

/// Fails with every invalid line of `file`, unless `skip` says to leave them out (the first
/// few are then logged). Returns how many were left out.
pub(crate) fn refuse_or_skip(
    file: &Path,
    invalid: Vec<InvalidLine>,
    skip: bool,
) -> Result<usize, DpError> {
    if invalid.is_empty() {
        return Ok(0);
    }
    if !skip {
        return Err(DpError::InvalidLines {
            file: file.to_path_buf(),
            lines: invalid,
        });
    }
    for l in invalid.iter().take(20) {
        tracing::warn!(line = l.line, error = %l.reason, "skipping invalid line");
    }
    Ok(invalid.len())
}
