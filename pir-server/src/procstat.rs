//! The process's own resource use, read from `/proc/self` (Linux), as the standard Prometheus
//! process metrics: `process_resident_memory_bytes`, `process_cpu_seconds_total`,
//! `process_open_fds`, `process_max_fds`, `process_threads`, `process_start_time_seconds`.
//! Elsewhere, or when a file cannot be read, the metric is left out rather than made up.

use prometheus::{Counter, Gauge, core::Collector, proto::MetricFamily};

/// Clock ticks per second of `/proc/self/stat`'s CPU times: `USER_HZ`, 100 on every Linux
/// architecture this server builds for (asking `sysconf` would need `unsafe`).
const TICKS_PER_SECOND: f64 = 100.0;

/// A reading of `/proc/self`; `None` where the file could not be read or parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProcStat {
    pub(crate) resident_bytes: Option<u64>,
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) open_fds: Option<u64>,
    pub(crate) max_fds: Option<u64>,
    pub(crate) threads: Option<u64>,
    pub(crate) start_time_seconds: Option<f64>,
}

impl ProcStat {
    /// Reads `/proc/self` now.
    pub(crate) fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .ok();
        let stat = parse_stat(&stat);
        let btime = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok());
        Self {
            resident_bytes: status_kib(&status, "VmRSS:").map(|kib| kib * 1024),
            cpu_seconds: stat.map(|s| (s.utime + s.stime) as f64 / TICKS_PER_SECOND),
            // The directory handle that counts them is one of them.
            open_fds: fds.map(|n| n.saturating_sub(1)),
            max_fds: max_open_files(&limits),
            threads: status_kib(&status, "Threads:"),
            start_time_seconds: stat
                .zip(btime)
                .map(|(s, b)| b as f64 + s.starttime as f64 / TICKS_PER_SECOND),
        }
    }

    /// The readings as Prometheus metric families.
    pub(crate) fn families(&self) -> Vec<MetricFamily> {
        let as_f64 = |v: Option<u64>| v.map(|v| v as f64);
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                as_f64(self.resident_bytes),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                as_f64(self.open_fds),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                as_f64(self.max_fds),
            ),
            (
                "process_threads",
                "Number of OS threads in the process",
                as_f64(self.threads),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the unix epoch, in seconds",
                self.start_time_seconds,
            ),
        ];
        let mut out = Vec::new();
        for (name, help, value) in gauges {
            if let Some(v) = value
                && let Ok(g) = Gauge::new(name, help)
            {
                g.set(v);
                out.extend(g.collect());
            }
        }
        if let Some(secs) = self.cpu_seconds
            && let Ok(c) = Counter::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent, in seconds",
            )
        {
            c.inc_by(secs);
            out.extend(c.collect());
        }
        out
    }
}

/// The number after `key` in `/proc/self/status` (kB for the memory lines).
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[derive(Clone, Copy)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Fields 14, 15 and 22 of `/proc/self/stat`. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (the state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        let stat = "4242 (pir (server) x) S 1 4242 4242 0 -1 4194560 2269 0 0 0 \
                    150 50 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";
        let s = parse_stat(stat).unwrap();
        assert_eq!((s.utime, s.stime, s.starttime), (150, 50, 12345));
        assert!(parse_stat("garbage").is_none());
        let status = "Name:\tpir-server\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(123_456));
        assert_eq!(status_kib(status, "Threads:"), Some(9));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let p = ProcStat::read();
        assert!(p.resident_bytes.unwrap() > 1 << 20, "{p:?}");
        assert!(p.open_fds.unwrap() >= 3, "{p:?}");
        assert!(p.threads.unwrap() >= 1, "{p:?}");
        assert!(
            p.cpu_seconds.is_some() && p.start_time_seconds.unwrap() > 1.0e9,
            "{p:?}"
        );
        let names: Vec<String> = p.families().iter().map(|f| f.name().to_owned()).collect();
        assert!(
            names.contains(&"process_cpu_seconds_total".to_owned()),
            "{names:?}"
        );
    }
}
