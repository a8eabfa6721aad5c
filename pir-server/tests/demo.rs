//! The README's main job, `pir-server demo`, run as a user runs it (a small count): it enrolls
//! CPIs through the ID prover, builds, serves and looks up, and fails unless every answer
//! matches its input.

#[test]
fn the_demo_enrolls_builds_serves_and_every_answer_matches() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pir-server"))
        .args(["demo", "--count", "300", "--dir"])
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("4 CPIs enrolled through the three-way handshake"),
        "{stdout}"
    );
    assert!(stdout.contains("tel:+14155552671: 1 mapping"), "{stdout}");
    assert!(stdout.contains("all answers match the input"), "{stdout}");
    // The prover's delta feed holds the four issued mappings, which the DP's input includes.
    let feed = std::fs::read_to_string(dir.path().join("feed.jsonl")).unwrap();
    let input = std::fs::read_to_string(dir.path().join("mappings.jsonl")).unwrap();
    assert_eq!(feed.lines().count(), 4);
    for line in feed.lines() {
        assert!(
            input.lines().any(|l| l == line),
            "{line} is in the DP's input"
        );
    }
}
