//! The binaries as an operator and an MSP run them: `pir-issuer serve` (codes to a file),
//! `pir-client msp-keygen`, `pir-client enroll start` then `complete`, `pir-client enroll run`
//! answering its prompt (a wrong code first), `pir-issuer export` once stopped, `pir-issuer
//! issue`, and start-up refusals naming their flag.
//!
//! `pir-client` is the workspace's binary beside this one (`cargo test --workspace` builds both).

use std::{
    io::{BufRead, BufReader, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use pir_core::{Mapping, TrustStore, testing};
use pir_issuer::sender::FileSender;

fn issuer_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pir-issuer"))
}

fn client_bin() -> PathBuf {
    let path = issuer_bin().with_file_name("pir-client");
    assert!(
        path.exists(),
        "{} is missing: run the workspace's tests (scripts/test), which build pir-client too",
        path.display()
    );
    path
}

fn run(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The serving prover, stopped with SIGTERM when dropped.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve(dir: &Path, port: u16) -> Serving {
    let child = Command::new(issuer_bin())
        .args(["serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "--issuer-key",
            "issuer.key",
            "--msp-keys",
            "msps",
            "--state",
            "state.redb",
            "--feed",
            "feed.jsonl",
            "--code-file",
            "codes.jsonl",
        ])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut serving = Serving(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if let Some(status) = serving.0.try_wait().unwrap() {
            panic!("pir-issuer serve exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the prover did not listen in 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    serving
}

fn trust() -> TrustStore {
    testing::trust_of(&testing::issuer())
}

#[test]
fn an_msp_operator_enrolls_with_the_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    testing::write_secret(&d.join("issuer.key"), testing::issuer().to_secret_text());
    std::fs::create_dir(d.join("msps")).unwrap();
    let keygen = ok(run(&client_bin(), d, &["msp-keygen", "--out", "chat.key"]));
    assert!(
        keygen.contains("--msp-keys") || keygen.contains(".pub"),
        "{keygen}"
    );
    std::fs::copy(d.join("chat.pub"), d.join("msps/chat.example.pub")).unwrap();
    ok(run(
        &client_bin(),
        d,
        &["user-keygen", "--out", "alice.key"],
    ));

    let port = free_port();
    let serving = serve(d, port);
    let url = format!("http://127.0.0.1:{port}");
    let common = [
        "--issuer",
        &url,
        "--msp",
        "chat.example",
        "--msp-key",
        "chat.key",
    ];

    // Two steps, the state saved between them.
    let mut start = vec!["enroll", "start"];
    start.extend(common);
    start.extend([
        "--cpi",
        "tel:+1 415 555 0100",
        "--psi",
        "@alice:chat.example",
        "--user-key",
        "alice.key",
        "--save",
        "enrollment.json",
    ]);
    ok(run(&client_bin(), d, &start));
    let code = FileSender::latest_code(&d.join("codes.jsonl"), "tel:+14155550100")
        .unwrap()
        .unwrap();
    let mut complete = vec!["enroll", "complete"];
    complete.extend(common);
    complete.extend([
        "--enrollment",
        "enrollment.json",
        "--code",
        &code,
        "--user-key",
        "alice.key",
        "--out",
        "issued.jsonl",
    ]);
    ok(run(&client_bin(), d, &complete));
    let issued = std::fs::read_to_string(d.join("issued.jsonl")).unwrap();
    let mapping = Mapping::from_json_line(issued.trim_end()).unwrap();
    mapping.verify(&trust(), pir_core::unix_now()).unwrap();
    assert!(mapping.user.is_some(), "the user's consent is carried");
    // The code was used: completing again is refused, with a sentence.
    let again = run(&client_bin(), d, &complete);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("enrollment"), "{stderr}");

    // Interactive: a wrong code, then the right one, typed at the prompt.
    let mut run_args = vec!["enroll", "run"];
    run_args.extend(common);
    run_args.extend(["--cpi", "mailto:bob@example.org"]);
    let mut child = Command::new(client_bin())
        .args(&run_args)
        .current_dir(d)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut prompt = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Wait for the code to be sent (the prompt follows).
    let code = loop {
        if let Some(code) =
            FileSender::latest_code(&d.join("codes.jsonl"), "mailto:bob@example.org").unwrap()
        {
            break code;
        }
        assert!(Instant::now() < deadline, "no code for bob in 20 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let wrong = if code.starts_with('1') { "2" } else { "1" }.to_owned() + &code[1..];
    writeln!(stdin, "{wrong}").unwrap();
    writeln!(stdin, "{code}").unwrap();
    drop(stdin);
    let mut rest = String::new();
    while stderr.read_line(&mut prompt).unwrap() > 0 {
        rest.push_str(&prompt);
        prompt.clear();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{rest}");
    assert!(
        rest.contains("attempts"),
        "the wrong code is reported: {rest}"
    );
    let line = String::from_utf8(output.stdout).unwrap();
    Mapping::from_json_line(line.trim_end())
        .unwrap()
        .verify(&trust(), pir_core::unix_now())
        .unwrap();

    // Revoke, then stop the prover; the feed and the export tell the DP.
    let mut revoke = vec!["enroll", "revoke"];
    revoke.extend(common);
    revoke.extend(["--cpi", "mailto:bob@example.org"]);
    ok(run(&client_bin(), d, &revoke));
    drop(serving);
    let feed = std::fs::read_to_string(d.join("feed.jsonl")).unwrap();
    assert_eq!(feed.lines().count(), 3, "{feed}");
    assert!(
        feed.lines().last().unwrap().starts_with("{\"remove\""),
        "{feed}"
    );
    let exported = ok(run(&issuer_bin(), d, &["export", "--state", "state.redb"]));
    assert_eq!(
        exported, issued,
        "the phone's mapping is live, bob's was revoked"
    );
}

#[test]
fn issue_signs_one_mapping_from_fields() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    testing::write_secret(&d.join("issuer.key"), testing::issuer().to_secret_text());
    let line = ok(run(
        &issuer_bin(),
        d,
        &[
            "issue",
            "--issuer-key",
            "issuer.key",
            "--cpi",
            "mailto:Carol@Example.COM",
            "--msp",
            "Mail.Example",
            "--context",
            "work",
            "--validity",
            "30d",
        ],
    ));
    let mapping = Mapping::from_json_line(line.trim_end()).unwrap();
    mapping.verify(&trust(), pir_core::unix_now()).unwrap();
    assert_eq!(mapping.fields.cpi.as_str(), "mailto:Carol@example.com");
    assert_eq!(mapping.fields.msp, "mail.example");
    assert_eq!(
        mapping.fields.not_after - mapping.fields.not_before,
        30 * 86_400
    );
}

#[test]
fn serve_refuses_a_bad_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    testing::write_secret(&d.join("issuer.key"), testing::issuer().to_secret_text());
    let base = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--issuer-key",
        "issuer.key",
        "--state",
        "state.redb",
        "--feed",
        "feed.jsonl",
    ];
    let mut args = base.to_vec();
    args.extend(["--msp-keys", "nowhere", "--code-file", "codes.jsonl"]);
    let out = run(&issuer_bin(), d, &args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--msp-keys"));

    std::fs::create_dir(d.join("msps")).unwrap();
    let mut args = base.to_vec();
    args.extend(["--msp-keys", "msps"]);
    let out = run(&issuer_bin(), d, &args);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no code sender"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut args = base.to_vec();
    args.extend([
        "--msp-keys",
        "msps",
        "--smtp",
        "smtp://mail.example.org:25",
        "--smtp-from",
        "a@b.example",
    ]);
    let out = run(&issuer_bin(), d, &args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--smtp"));

    // Plaintext beyond loopback.
    let mut args = base.to_vec();
    args[2] = "0.0.0.0:0";
    args.extend(["--msp-keys", "msps", "--code-file", "codes.jsonl"]);
    let out = run(&issuer_bin(), d, &args);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-cert"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A public key given as the issuer key.
    std::fs::write(d.join("issuer.pub"), testing::issuer().to_public_text()).unwrap();
    let mut args = base.to_vec();
    args[4] = "issuer.pub";
    args.extend(["--msp-keys", "msps", "--code-file", "codes.jsonl"]);
    let out = run(&issuer_bin(), d, &args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--issuer-key"));
}
