//! The literature's figures the sweep sets the engine beside, and the measures that make it
//! comparable with them: database bytes scanned per second per core, and client keys per GiB
//! of server cache.
//!
//! Units as the papers use them: GB = 10^9 B, MB = 10^6 B, KB = 10^3 B; a cache is counted in
//! GiB (2^30 B), as a server's memory is. The anchors' figures are restated here from the
//! papers (issue 17, item 6) and nowhere else: correct them here.

/// Bytes in a GB, as the papers' GB/s count them.
pub const GB: f64 = 1e9;

/// Bytes in a GiB of cache.
pub const GIB: f64 = (1u64 << 30) as f64;

/// One published scheme's figures.
#[derive(Clone, Copy, Debug)]
pub struct Anchor {
    /// The scheme's name.
    pub name: &'static str,
    /// Where the figures come from.
    pub source: &'static str,
    /// Database bytes answered per second on one core, in GB/s.
    pub gb_per_s_per_core: f64,
    /// One query's bytes, if the source states it.
    pub query_bytes: Option<f64>,
    /// One response's bytes, if the source states it.
    pub response_bytes: Option<f64>,
    /// Key bytes one client registers with the server; `None`: the scheme has no per-client key.
    pub key_bytes_per_client: Option<f64>,
}

impl Anchor {
    /// Clients whose keys fit in a GiB of cache, if the server held each key at its stated
    /// size; `None` when there is no per-client key (no bound from keys).
    pub fn keys_per_gib(&self) -> Option<f64> {
        self.key_bytes_per_client.map(keys_per_gib)
    }
}

/// OnionPIRv2 (eprint 2025/1142): one core, a 16 KB query, a 13.5 KB response and 0.63 MB of
/// key per client.
pub const ONIONPIR_V2: Anchor = Anchor {
    name: "OnionPIRv2",
    source: "eprint 2025/1142",
    gb_per_s_per_core: 1.11,
    query_bytes: Some(16e3),
    response_bytes: Some(13.5e3),
    key_bytes_per_client: Some(0.63e6),
};

/// YPIR (eprint 2024/270), a hint-free LWE scheme: 12 GB/s per core on large databases, near
/// memory bandwidth; no per-client key.
pub const YPIR: Anchor = Anchor {
    name: "YPIR",
    source: "eprint 2024/270",
    gb_per_s_per_core: 12.0,
    query_bytes: None,
    response_bytes: None,
    key_bytes_per_client: None,
};

/// The anchors, in the order the sweep prints them.
pub const ANCHORS: [Anchor; 2] = [ONIONPIR_V2, YPIR];

/// GB/s per core: `bytes` of database answered `per_second` times a second on `cores` cores
/// (`per_second` = 1 / one answer's seconds for a single-threaded time).
pub fn gb_per_s_per_core(bytes: u64, per_second: f64, cores: usize) -> f64 {
    bytes as f64 * per_second / cores as f64 / GB
}

/// Clients whose keys fit in a GiB of cache at `bytes_per_client` each.
pub fn keys_per_gib(bytes_per_client: f64) -> f64 {
    GIB / bytes_per_client
}

/// The server-side bytes one client's keys take: the key-cache bytes a server reports over
/// the key sets it holds (`None` if it holds none). Read from the server, not restated here,
/// so a change to its accounting (`pir_server::key_cache_cost`) needs no edit.
pub fn key_bytes_per_client(key_cache_bytes: u64, registered_keys: u64) -> Option<f64> {
    (registered_keys > 0).then(|| key_cache_bytes as f64 / registered_keys as f64)
}

/// The cores a run has: `std::thread::available_parallelism` (1 if unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_figures() {
        // Our 1M-mapping shape: 2^14 x 16 KiB answered in 514 ms on one thread.
        let gbps = gb_per_s_per_core(1 << 28, 1.0 / 0.514, 1);
        assert!((gbps - 0.522).abs() < 1e-3, "{gbps}");
        // Under load on 2 cores, 3.77 lookups/s.
        assert!((gb_per_s_per_core(1 << 28, 3.77, 2) - 0.506).abs() < 1e-3);
        // 0.63 MB a client: about 1.7 k clients per GiB (1.6 k if MB were MiB).
        let k = ONIONPIR_V2.keys_per_gib().unwrap();
        assert!((1700.0..1710.0).contains(&k), "{k}");
        assert_eq!(YPIR.keys_per_gib(), None);
    }

    #[test]
    fn per_client_bytes() {
        assert_eq!(key_bytes_per_client(17_301_632, 1), Some(17_301_632.0));
        assert_eq!(key_bytes_per_client(10, 4), Some(2.5));
        assert_eq!(key_bytes_per_client(10, 0), None);
    }
}
