//! The README's Discovery Provider flow, run as written: its shell blocks, in order, with the
//! built binary as `$S`. The only change made to the text is the port (a free one instead of
//! 50051, so the test never meets another server). Between the blocks the test waits until the
//! server answers, as a reader would before going on.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pir_client::{ClientOptions, fetch_config};
use pir_core::Snapshot;

/// The shell blocks of the README's section `## The Discovery Provider's flow`.
fn flow_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md beside the workspace");
    let start = readme
        .find("## The Discovery Provider's flow")
        .expect("the README has the DP flow section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("a closed code block");
        blocks.push(body[..close].to_owned());
        rest = &body[close + 3..];
    }
    blocks
}

/// Stops the backgrounded server at the end, even when an assertion fails.
struct StopServer(PathBuf);

impl Drop for StopServer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// Runs one block with bash, in `dir`, `$S` the built server; the server it backgrounds
/// inherits the log file.
fn run_block(dir: &Path, block: &str, log: &Path) {
    let script = format!(
        "set -euo pipefail\nS={}\n{block}",
        env!("CARGO_BIN_EXE_pir-server")
    );
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let status = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "README block failed ({status}):\n{block}\nlog:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Polls the server's configuration until `done` says so, for at most a minute.
async fn wait_for(url: &str, log: &Path, done: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(config) = fetch_config(url, &ClientOptions::default()).await
            && done(config.lookup().epoch())
        {
            return config.lookup().epoch();
        }
        assert!(
            Instant::now() < deadline,
            "the server did not get there in a minute; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_dp_flow_runs_as_written() {
    let blocks = flow_blocks();
    assert_eq!(
        blocks.len(),
        3,
        "the flow has a build-and-serve block, an update block and a sharded block"
    );
    // The first block builds the binaries; the test already has them.
    let first = blocks[0]
        .lines()
        .filter(|l| !l.starts_with("S=") && !l.starts_with("cargo build"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(first.contains("--pid-file pir-server.pid &"), "{first}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let first = first.replace("127.0.0.1:50051", &listen);
    assert!(
        first.contains(&listen),
        "the README serves on 127.0.0.1:50051"
    );

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("flow.log");
    let _stop = StopServer(dir.path().join("pir-server.pid"));
    run_block(dir.path(), &first, &log);
    let url = format!("http://{listen}");
    let first_epoch = wait_for(&url, &log, |_| true).await;
    assert!(dir.path().join("pir-server.pid").exists());

    run_block(dir.path(), &blocks[1], &log);
    let new = Snapshot::load(&dir.path().join("db-2.pirsnap")).unwrap();
    let new_epoch = new.header().epoch;
    assert!(new_epoch > first_epoch);
    assert!(new.header().base.is_some(), "db-2.pirsnap is a delta");
    // The server follows the swap, and the delta's base is intact.
    assert_eq!(wait_for(&url, &log, |e| e == new_epoch).await, new_epoch);
    let base = Snapshot::load(&dir.path().join("db.pirsnap")).unwrap();
    assert!(
        base.header().base.is_none(),
        "db.pirsnap is still the full snapshot"
    );
    assert_eq!(base.header().epoch, first_epoch);

    // The sharded directory: built whole and shard by shard, served by three processes on
    // free ports, then updated.
    let mut sharded = blocks[2].clone();
    let mut urls = Vec::new();
    for (port, admin) in [(50061, 50071), (50062, 50072), (50063, 50073)] {
        let free = |_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (listen, admin_listen) = (free(port), free(admin));
        sharded = sharded
            .replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{listen}"))
            .replace(
                &format!("127.0.0.1:{admin}"),
                &format!("127.0.0.1:{admin_listen}"),
            );
        urls.push(format!("http://127.0.0.1:{listen}"));
    }
    let _stops =
        ["shards-a.pid", "shards-b.pid", "evaluator.pid"].map(|p| StopServer(dir.path().join(p)));
    run_block(dir.path(), &sharded, &log);
    let manifest_path = dir.path().join("shards/manifest.pirman");
    let manifest = pir_core::snapshot::Manifest::load(&manifest_path).unwrap();
    assert_eq!(manifest.count(), 4);
    let apart =
        pir_core::snapshot::Manifest::load(&dir.path().join("shards-b/manifest.pirman")).unwrap();
    assert_eq!((apart.count(), apart.epoch), (4, 1_800_000_000));
    assert_eq!(
        apart.mapping_count(),
        base.header().mapping_count,
        "every mapping once"
    );
    let mut served = Vec::new();
    for url in &urls {
        wait_for(url, &log, |_| true).await;
        let config = fetch_config(url, &ClientOptions::default()).await.unwrap();
        let m = config
            .manifest()
            .expect("a shard server sends its manifest");
        // Loaded before or after the update wrote the new manifest.
        assert!(m.epoch <= manifest.epoch);
        served.push(config.served_shards().to_vec());
    }
    assert_eq!(served, [vec![0, 1], vec![2, 3], vec![]]);
    // The update rewrote only the shards its delta names, and a reload serves the new manifest.
    let changed = manifest
        .shards
        .iter()
        .filter(|s| s.epoch == manifest.epoch)
        .count();
    assert!((1..=4).contains(&changed), "{changed}");
    for pid in ["shards-a.pid", "shards-b.pid", "evaluator.pid"] {
        let pid = std::fs::read_to_string(dir.path().join(pid)).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    for url in &urls {
        wait_for_manifest(url, &log, manifest.epoch).await;
    }
}

/// Polls a shard server until it serves the manifest of `epoch`, for at most a minute.
async fn wait_for_manifest(url: &str, log: &Path, epoch: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(config) = fetch_config(url, &ClientOptions::default()).await
            && config.manifest().is_some_and(|m| m.epoch == epoch)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not serve manifest epoch {epoch} in a minute; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
