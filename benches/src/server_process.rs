//! A PIR server in a child process, so its memory can be measured apart from the load generator.
//!
//! ```text
//! parent                                   child (serve_until_stdin_closes)
//!   spawn (snapshot, OPRF key file) ─────>  load snapshot and key, start gRPC on 127.0.0.1:0
//!   read line  <──────────────────────────  "http://127.0.0.1:PORT"
//!   load over gRPC  <────────────────────>  answer
//!   close stdin ─────────────────────────>  (EOF) read VmHWM, VmRSS, key cache bytes and entries
//!   read line  <──────────────────────────  {"peak_rss_bytes":..,"rss_bytes":..,"key_cache_bytes":..,
//!                                             "registered_keys":..}
//!   wait                                     stop, exit 0
//! ```
//!
//! The child answers `Discovery/Evaluate` as well as `Query` (as `pir-server serve --oprf-key`
//! does), so a lookup against it is the whole lookup: one evaluation, then one PIR query. It
//! reads the DP's OPRF key from a file, which the parent passes by path: the key never goes
//! through a pipe or the command line, and the file must be owner-only (mode 0600, as
//! `pir_dp::oprf_keygen` writes it), as for the server itself.
//!
//! The child lives only as long as its stdin: if the parent dies, the pipe closes and the child
//! reports and exits. [`ServerProcess`] kills it on drop if it was not [finished](ServerProcess::finish).

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
};

use pir_core::{Snapshot, oprf::OprfKey};
use pir_server::{RunningServer, ServeOptions};
use serde::{Deserialize, Serialize};

/// Memory figures of a server process, as the child reports them when its stdin closes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMemory {
    /// Peak resident set size (VmHWM), bytes.
    pub peak_rss_bytes: u64,
    /// Resident set size at the end of the run (VmRSS), bytes.
    pub rss_bytes: u64,
    /// The service's estimate of its registered keys' memory, bytes.
    pub key_cache_bytes: u64,
    /// The key sets registered in its key cache, which `key_cache_bytes` counts.
    pub registered_keys: u64,
}

/// `(VmHWM, VmRSS)` in bytes from the text of `/proc/<pid>/status`.
pub fn parse_proc_status(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let mut words = line[name.len()..].split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        // The kernel always reports these in kB (KiB).
        (words.next()? == "kB").then_some(value * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// Serving options for measurement: no per-key, per-peer or registration rate limits and no
/// evaluation limits (the load generator is one peer with one key), everything else as in
/// production.
pub fn unlimited_serve_options() -> ServeOptions {
    ServeOptions {
        per_key_rate: None,
        per_peer_rate: None,
        per_peer_registrations: None,
        per_key_evaluations: None,
        per_peer_evaluations: None,
        global_evaluations_per_second: None,
        ..ServeOptions::default()
    }
}

/// The child's side: loads `snapshot` and the OPRF secret key file `oprf_key` (refused unless
/// owner-only), serves both on 127.0.0.1 (a free port), prints its URL as one line on stdout,
/// and when stdin reaches end of file prints one JSON [`ServerMemory`] line and returns.
pub fn serve_until_stdin_closes(
    snapshot: &Path,
    oprf_key: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let snapshot = Snapshot::load(snapshot)?;
    let oprf_key = OprfKey::from_file(oprf_key)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let server = runtime.block_on(RunningServer::start(
        snapshot,
        ([127, 0, 0, 1], 0).into(),
        unlimited_serve_options(),
        Some(oprf_key),
    ))?;
    let mut out = io::stdout().lock();
    writeln!(out, "{}", server.url())?;
    out.flush()?;
    // The runtime's workers serve while this thread waits for the parent to hang up.
    io::copy(&mut io::stdin().lock(), &mut io::sink())?;
    let key_cache_bytes = server.service().key_cache_bytes();
    let registered_keys = server.service().registered_keys() as u64;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let (peak_rss_bytes, rss_bytes) =
        parse_proc_status(&status).ok_or("no VmHWM or VmRSS in kB in /proc/self/status")?;
    runtime.block_on(server.stop())?;
    let memory = ServerMemory {
        peak_rss_bytes,
        rss_bytes,
        key_cache_bytes,
        registered_keys,
    };
    writeln!(out, "{}", serde_json::to_string(&memory)?)?;
    out.flush()?;
    Ok(())
}

/// The parent's side: a child started with [`ServerProcess::spawn`], killed on drop unless
/// [finished](ServerProcess::finish).
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    stdout: BufReader<ChildStdout>,
    url: String,
}

impl ServerProcess {
    /// Starts `command` (which must run [`serve_until_stdin_closes`]) with piped stdin and
    /// stdout, and waits for the URL it prints. The child's stderr is the parent's.
    pub fn spawn(mut command: Command) -> io::Result<Self> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let Some(stdout) = child.stdout.take() else {
            // Kill before returning: Child has no Drop of its own.
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("the server child has no stdout pipe"));
        };
        let mut this = Self {
            child,
            stdout: BufReader::new(stdout),
            url: String::new(),
        };
        let line = this.read_line("its URL")?;
        if !line.starts_with("http://") && !line.starts_with("https://") {
            return Err(io::Error::other(format!(
                "the server child printed {line:?} instead of its URL"
            )));
        }
        this.url = line;
        Ok(this)
    }

    /// The URL the child serves on.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the child's stdin, reads its memory report and waits for it to exit.
    pub fn finish(mut self) -> io::Result<ServerMemory> {
        drop(self.child.stdin.take());
        let line = self.read_line("its memory report")?;
        let memory = serde_json::from_str(&line).map_err(|e| {
            io::Error::other(format!(
                "the server child's memory report {line:?} is not valid: {e}"
            ))
        })?;
        // Anything after the report is unexpected but harmless; drain it so the child cannot
        // block on a full pipe before exiting.
        io::copy(&mut self.stdout, &mut io::sink())?;
        let status = self.child.wait()?;
        if !status.success() {
            return Err(io::Error::other(format!(
                "the server child exited with {status}"
            )));
        }
        Ok(memory)
    }

    fn read_line(&mut self, what: &str) -> io::Result<String> {
        let mut line = String::new();
        // Bounded: a well-behaved child prints short lines, a broken one must not exhaust memory.
        (&mut self.stdout).take(1 << 16).read_line(&mut line)?;
        if line.is_empty() {
            return Err(io::Error::other(format!(
                "the server child exited before printing {what} (its errors are above)"
            )));
        }
        Ok(line.trim_end().to_owned())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // After finish() the child is reaped already: try_wait returns its status.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn proc_status_fields_in_bytes() {
        let status = "Name:\tsweep\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_proc_status(status), Some((2 << 20, 1 << 20)));
        assert_eq!(parse_proc_status("VmHWM:\t1 kB\n"), None);
        assert_eq!(parse_proc_status("VmHWM:\t1 MB\nVmRSS:\t1 kB\n"), None);
    }

    #[test]
    fn reads_url_then_report_after_stdin_closes() {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(
            "echo http://127.0.0.1:1; cat >/dev/null; \
             echo '{\"peak_rss_bytes\":3,\"rss_bytes\":2,\"key_cache_bytes\":1,\"registered_keys\":1}'",
        );
        let server = ServerProcess::spawn(sh).unwrap();
        assert_eq!(server.url(), "http://127.0.0.1:1");
        let memory = server.finish().unwrap();
        assert_eq!(
            memory,
            ServerMemory {
                peak_rss_bytes: 3,
                rss_bytes: 2,
                key_cache_bytes: 1,
                registered_keys: 1
            }
        );
    }

    #[test]
    fn a_child_that_dies_early_is_an_error() {
        let mut sh = Command::new("sh");
        sh.arg("-c").arg("echo 'cannot load' >&2; exit 1");
        let err = ServerProcess::spawn(sh).unwrap_err();
        assert!(err.to_string().contains("before printing its URL"), "{err}");
    }

    #[test]
    fn dropping_kills_the_child() {
        let mut sh = Command::new("sh");
        // Ignores stdin closing: only a kill ends it.
        sh.arg("-c").arg("echo http://127.0.0.1:1; exec sleep 600");
        let server = ServerProcess::spawn(sh).unwrap();
        let pid = server.child.id();
        drop(server);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
