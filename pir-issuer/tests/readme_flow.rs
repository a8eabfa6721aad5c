//! The README's ID prover section, run as written: its shell blocks in order, with the built
//! binaries as `$I`, `$C` and `$S`. The only change made to the text is the port (a free one
//! instead of 50061). Between the blocks the test waits until the prover listens, as a reader
//! would.

use std::{
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pir_core::{IssuerKey, Mapping, Snapshot, TrustStore, identity::DeltaLine};

fn blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md beside the workspace");
    let start = readme
        .find("## Where mappings come from: the ID prover")
        .expect("the README has the ID prover section");
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

fn beside(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_pir-issuer")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (scripts/test), which build it",
        path.display()
    );
    path
}

struct Stop(PathBuf);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn run_block(dir: &Path, block: &str, log: &Path) {
    let script = format!(
        "set -euo pipefail\nI={}\nC={}\nS={}\n{block}",
        env!("CARGO_BIN_EXE_pir-issuer"),
        beside("pir-client").display(),
        beside("pir-server").display()
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
        .env_remove("RUST_LOG")
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

#[test]
fn the_readme_prover_flow_runs_as_written() {
    let blocks = blocks();
    assert_eq!(blocks.len(), 2, "a start block and an enrollment block");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let free = format!("127.0.0.1:{port}");
    let [first, second] = [&blocks[0], &blocks[1]].map(|b| {
        assert!(b.contains("127.0.0.1:50061") || !b.contains("50061"));
        b.lines()
            .filter(|l| !l.starts_with("I=") && !l.starts_with("cargo build"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("127.0.0.1:50061", &free)
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("flow.log");
    let _stop = Stop(dir.path().join("pir-issuer.pid"));
    run_block(dir.path(), &first, &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the prover did not listen in 30 s; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    run_block(dir.path(), &second, &log);

    let key = IssuerKey::from_file(&dir.path().join("prover.key")).unwrap();
    let mut trust = TrustStore::new();
    trust.add(key.verifying_key()).unwrap();
    let issued = std::fs::read_to_string(dir.path().join("alice.jsonl")).unwrap();
    let mapping = Mapping::from_json_line(issued.trim_end()).unwrap();
    mapping.verify(&trust, pir_core::unix_now()).unwrap();
    assert_eq!(mapping.fields.cpi.as_str(), "tel:+14155550100");
    let feed: Vec<DeltaLine> = std::fs::read_to_string(dir.path().join("feed.jsonl"))
        .unwrap()
        .lines()
        .map(|l| DeltaLine::from_json_line(l).unwrap())
        .collect();
    assert_eq!(feed.len(), 2, "the issued mapping, then its removal");
    assert_eq!(feed[0], DeltaLine::Upsert(Box::new(mapping)));
    assert!(matches!(feed[1], DeltaLine::Remove { .. }));
    let snapshot = Snapshot::load(&dir.path().join("issued.pirsnap")).unwrap();
    assert_eq!(snapshot.header().mapping_count, 1);
}
