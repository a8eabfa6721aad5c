//! Mapping files in JSON Lines: writing them, and reading them with every failure named by its
//! line number.

use std::{
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::Path,
};

use pir_core::{
    CoreError, Mapping, TrustStore, VerifiedMapping, identity::DeltaLine, snapshot::DeltaOp,
};
use rayon::prelude::*;

use crate::error::{DpError, InvalidLine, IoOp};

/// Writes mappings as JSON Lines.
pub fn write_jsonl(path: &Path, mappings: &[Mapping]) -> Result<(), DpError> {
    let io = |e| DpError::io(IoOp::Writing, path, e);
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    for m in mappings {
        writeln!(w, "{}", m.to_json_line()).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// Mappings read from a JSON Lines file, each verified; failures listed by line number.
pub struct ReadMappings {
    /// The valid mappings.
    pub mappings: Vec<VerifiedMapping>,
    /// Each invalid line, in file order.
    pub invalid: Vec<InvalidLine>,
}

/// Parses every non-blank line of a file in parallel; returns the values and each line that
/// failed.
fn read_lines<T: Send>(
    path: &Path,
    parse: impl Fn(&str) -> Result<T, CoreError> + Sync,
) -> Result<(Vec<T>, Vec<InvalidLine>), DpError> {
    let file = File::open(path).map_err(|e| DpError::io(IoOp::Opening, path, e))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| DpError::io(IoOp::Reading, path, e))?;
    let results: Vec<(usize, Result<T, CoreError>)> = lines
        .par_iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| (i + 1, parse(line)))
        .collect();
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
    let (mappings, invalid) = read_lines(path, |line| {
        Mapping::from_json_line(line).and_then(|m| VerifiedMapping::new(m, trust))
    })?;
    Ok(ReadMappings { mappings, invalid })
}

/// Reads and verifies every line of a delta file: signed mappings (upserts) and removals.
pub fn read_delta(
    path: &Path,
    trust: &TrustStore,
) -> Result<(Vec<DeltaOp>, Vec<InvalidLine>), DpError> {
    read_lines(path, |line| {
        Ok(match DeltaLine::from_json_line(line)? {
            DeltaLine::Upsert(m) => DeltaOp::Upsert(Box::new(VerifiedMapping::new(*m, trust)?)),
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
