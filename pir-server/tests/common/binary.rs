//! The release `pir-server serve` binary as a child process, for tests that watch it from
//! outside: its memory and CPU (from `/proc`), its log, its ports.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The binary under test; `H2_ABUSE_BIN` points at another build (to measure main's "before"
/// figures with the same scenarios).
pub(crate) fn binary() -> PathBuf {
    std::env::var_os("H2_ABUSE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pir-server")))
}

/// Whether the binary is this build (assertions hold) or another one being measured.
pub(crate) fn strict() -> bool {
    std::env::var_os("H2_ABUSE_BIN").is_none()
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A running `pir-server serve` of the small test shape (Bob present), its metrics port on,
/// answering evaluations with the fixture OPRF key (`--oprf-key`).
pub(crate) struct Served {
    child: Child,
    /// The Discovery port.
    pub(crate) addr: SocketAddr,
    /// The HTTP metrics port.
    pub(crate) metrics: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Serves with `env` (`PIR_*` flags) added; `wrapper` runs the binary under another
    /// command (e.g. `prlimit --nofile=64:64`). Waits until health says SERVING.
    pub(crate) async fn start(env: &[(&str, &str)], wrapper: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = dir.path().join("db.pirsnap");
        super::bob_snapshot(&pir_core::testing::issuer(), 1, 1)
            .write(&snapshot)
            .unwrap();
        let (addr, metrics) = (free_port(), free_port());
        let oprf_key = dir.path().join(super::OPRF_KEY_FILE);
        super::write_oprf_key(&oprf_key);
        let log = dir.path().join("serve.log");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(binary());
                cmd
            }
            None => Command::new(binary()),
        };
        cmd.args(["serve", "--snapshot"])
            .arg(&snapshot)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .arg("--oprf-key")
            .arg(&oprf_key)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (name, _) in std::env::vars() {
            if name.starts_with("PIR_") {
                cmd.env_remove(name);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let served = Self {
            child,
            addr,
            metrics,
            log,
            _dir: dir,
        };
        for _ in 0..400 {
            if super::health(addr, "").await == Some(1) {
                return served;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("never served:\n{}", served.log());
    }

    /// The server's process id (the binary's, under a wrapper that execs it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, KiB (`VmRSS`).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// CPU time used so far (user and system), in clock ticks (1/100 s on Linux).
    pub(crate) fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// What the server logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `pir_limit_refusals_total{limit="LIMIT"}`, 0 if never counted.
    pub(crate) async fn refusals(&self, limit: &str) -> u64 {
        let text = super::scrape_metrics(self.metrics).await;
        let needle = format!("pir_limit_refusals_total{{limit=\"{limit}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
