//! The DP tooling tests' shared directory: keys, synthetic mappings and a delta, and the
//! arguments of `build` and `update` over them.

// Each test file is its own crate and uses some of these helpers only.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pir_core::{SchemeParams, Snapshot};
use pir_dp as tools;

/// A directory with an issuer key (`issuer.key`, `issuer.pub`), a DP key (`dp.key`), another DP
/// key (`other.key`), `count` synthetic mappings (`m.jsonl`) and a delta of the first three
/// (`delta.jsonl`).
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
}

impl Setup {
    pub(crate) fn new(count: usize) -> Self {
        let s = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let issuer = tools::issuer_keygen(&s.path("issuer.key"), false).unwrap();
        tools::dp_keygen(&s.path("dp.key"), false).unwrap();
        tools::dp_keygen(&s.path("other.key"), false).unwrap();
        oprf_key(s.dir.path());
        let mappings = tools::synth(count, &issuer, 4, pir_core::unix_now()).unwrap();
        tools::write_jsonl(&s.path("m.jsonl"), &mappings).unwrap();
        tools::write_jsonl(&s.path("delta.jsonl"), &mappings[..3]).unwrap();
        s
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs [`Self::build_args`].
    pub(crate) fn build(
        &self,
        out: &str,
        epoch: Option<u64>,
    ) -> Result<tools::BuildSummary, tools::DpError> {
        tools::build(&self.build_args(out, epoch))
    }

    /// `build` of `m.jsonl` into `out`, in the small test shape, unsigned.
    pub(crate) fn build_args(&self, out: &str, epoch: Option<u64>) -> tools::BuildArgs {
        tools::BuildArgs {
            mappings: self.path("m.jsonl"),
            trust: self.path("issuer.pub"),
            out: self.path(out),
            skip_invalid: false,
            epoch,
            replaces: None,
            scheme: Some(SchemeParams::danger_test_only_small().into()),
            engine: pir_core::Engine::Spiral,
            progress: false,
            dp_key: None,
            oprf_key: self.path("oprf.key"),
            fill_percent: None,
        }
    }

    /// `update` of `snapshot` with `delta.jsonl` into `out`, unsigned.
    pub(crate) fn update_args(
        &self,
        snapshot: &str,
        out: &str,
        epoch: Option<u64>,
    ) -> tools::UpdateArgs {
        tools::UpdateArgs {
            snapshot: self.path(snapshot),
            delta: self.path("delta.jsonl"),
            trust: self.path("issuer.pub"),
            out: self.path(out),
            skip_invalid: false,
            epoch,
            dp_key: None,
            full: false,
            oprf_key: self.path("oprf.key"),
        }
    }

    pub(crate) fn epoch_of(&self, name: &str) -> u64 {
        Snapshot::read_header(&self.path(name)).unwrap().epoch
    }

    pub(crate) fn salt_of(&self, name: &str) -> [u8; 32] {
        Snapshot::read_header(&self.path(name)).unwrap().layout.salt
    }
}

/// The DP's OPRF key file `oprf.key` in `dir`, made on first use.
pub(crate) fn oprf_key(dir: &Path) -> PathBuf {
    let path = dir.join("oprf.key");
    if !path.exists() {
        tools::oprf_keygen(&path, false).unwrap();
    }
    path
}
