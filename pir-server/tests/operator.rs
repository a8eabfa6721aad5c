//! The `pir-server` binary as an operator and a service manager run it: systemd notifications
//! on `NOTIFY_SOCKET`, the pid file, configuration from `PIR_*` variables, signals, logs (no
//! colour off a terminal, libraries quiet), shell completions, man pages and `tls-selfsigned`.

mod common;

use std::{
    net::SocketAddr,
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_pir-server");

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn write_snapshot(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("db.pirsnap");
    common::bob_snapshot(&pir_core::testing::issuer(), 1, 1)
        .write(&path)
        .unwrap();
    path
}

/// A `pir-server` command with no `PIR_`, `RUST_LOG` or `NOTIFY_SOCKET` from this environment.
fn pir_server(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("PIR_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// The next notification on `socket`, as text.
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Notifications until one containing `want`; all of them, in order.
fn until(socket: &UnixDatagram, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let message = next(socket);
        let done = message.contains(want);
        seen.push(message);
        if done {
            return seen;
        }
    }
}

fn wait(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "pir-server did not exit");
        std::thread::sleep(Duration::from_millis(25));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn systemd_notify_pid_file_and_environment_configuration() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path());
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (listen, http) = (free_port(), free_port());
    let pid_file = dir.path().join("pir-server.pid");
    common::write_oprf_key(&dir.path().join(common::OPRF_KEY_FILE));

    // Every setting from the environment, as a unit file's Environment= lines give them.
    let child = pir_server(dir.path())
        .arg("serve")
        .env("PIR_SNAPSHOT", "db.pirsnap")
        .env("PIR_LISTEN", listen.to_string())
        .env("PIR_METRICS_LISTEN", http.to_string())
        .env("PIR_PID_FILE", &pid_file)
        .env("PIR_REQUEST_TIMEOUT", "2m")
        .env("PIR_OPRF_KEY", common::OPRF_KEY_FILE)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let started = until(&socket, "READY=1");
    assert!(
        started[0].contains("STATUS=loading the snapshot"),
        "{started:?}"
    );
    let ready = started.last().unwrap();
    assert!(ready.contains("STATUS=serving epoch 1"), "{ready}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", child.id())
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        assert_eq!(
            common::http_get(http, "/readyz").await,
            (200, "ready\n".into())
        );
        assert_eq!(common::health(listen, "pir.v1.Discovery").await, Some(1));
        // PIR_OPRF_KEY was read: Evaluate is answered (an empty request is refused for its
        // shape), not UNIMPLEMENTED as on a PIR host without the key.
        let mut rpc =
            pir_proto::v1::discovery_client::DiscoveryClient::connect(format!("http://{listen}"))
                .await
                .unwrap();
        let err = rpc
            .evaluate(pir_proto::v1::EvaluateRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    });

    // SIGHUP: RELOADING=1 (with the monotonic time notify-reload wants), then READY=1. The
    // file is unchanged, so its epoch does not rise: refused, and epoch 1 keeps serving.
    signal(&child, "HUP");
    let reloading = next(&socket);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let reloaded = until(&socket, "READY=1");
    assert!(
        reloaded.last().unwrap().contains("STATUS=serving epoch 1"),
        "{reloaded:?}"
    );

    // SIGTERM: STOPPING=1, a clean exit, the pid file gone.
    signal(&child, "TERM");
    let stopping = next(&socket);
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    let out = wait(child);
    assert!(out.status.success(), "{out:?}");
    assert!(!pid_file.exists());

    // The log: plain text on a pipe, the loading reported, the request timeout taken.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains('\x1b'), "colour codes off a terminal:\n{log}");
    for needle in [
        "loading the snapshot",
        "snapshot loaded",
        "serving",
        "reload refused; still serving the old snapshot",
    ] {
        assert!(log.contains(needle), "{needle} missing from\n{log}");
    }
    assert!(
        log.contains("epoch 1 is not above the serving epoch 1"),
        "a reload of the same epoch is refused, and the log says why:\n{log}"
    );
}

/// Serves with `args` before `serve` and `env`, makes a gRPC call, stops; the log.
fn log_of(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let listen = free_port();
    // To a file, not a pipe: nobody reads a pipe while the server runs, and a trace-level log
    // fills one and blocks the server.
    let log_path = dir.join("serve.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut cmd = pir_server(dir);
    cmd.args(args)
        .args(["serve", "--snapshot", "db.pirsnap", "--listen"])
        .arg(listen.to_string())
        .stdout(Stdio::null())
        .stderr(log_file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        for _ in 0..400 {
            if common::health(listen, "").await == Some(1) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("never served");
    });
    signal(&child, "TERM");
    let out = wait(child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(out.status.success(), "{out:?}\n{log}");
    log
}

#[test]
fn verbose_logs_are_this_programs_not_the_libraries() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path());
    let log = log_of(dir.path(), &["-vv"], &[]);
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "{log}");
    for library in ["h2::", "hyper", "tower::", "tonic::"] {
        assert!(!log.contains(library), "{library} in the -vv log:\n{log}");
    }
    // RUST_LOG still asks for them; without that, -vv would not have kept them out.
    let log = log_of(dir.path(), &[], &[("RUST_LOG", "h2=trace")]);
    assert!(log.contains("h2::"), "{log}");
}

fn stdout_of(dir: &Path, args: &[&str]) -> String {
    let out = pir_server(dir).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_and_man_pages_name_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let subcommands = [
        "serve",
        "build",
        "update",
        "tls-selfsigned",
        "completions",
        "man",
    ];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(dir.path(), &["completions", shell]);
        for sub in subcommands {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let bash = stdout_of(dir.path(), &["completions", "bash"]);
    assert!(
        bash.contains("--shutdown-delay"),
        "serve's flags complete too"
    );

    // roff escapes each hyphen.
    let page = stdout_of(dir.path(), &["man"]).replace("\\-", "-");
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    for sub in subcommands {
        assert!(page.contains(sub), "the man page lacks {sub}");
    }
    let pages = dir.path().join("man");
    std::fs::create_dir(&pages).unwrap();
    stdout_of(dir.path(), &["man", "--out-dir", "man"]);
    let serve = std::fs::read_to_string(pages.join("pir-server-serve.1"))
        .unwrap()
        .replace("\\-", "-");
    assert!(serve.contains("PIR_LISTEN"), "{serve}");
}

#[test]
fn tls_selfsigned_and_a_bad_certificate_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    write_snapshot(dir.path());
    let made = stdout_of(dir.path(), &common::SELFSIGNED_ARGS);
    assert!(made.contains("clients trust c.pem"), "{made}");
    std::fs::write(dir.path().join("garbage.pem"), "hello\n").unwrap();
    let out = pir_server(dir.path())
        .args(["serve", "--snapshot", "db.pirsnap", "--listen"])
        .arg(free_port().to_string())
        .args(["--tls-cert", "garbage.pem", "--tls-key", "k.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "error: --tls-cert garbage.pem: no PEM certificate found (expected -----BEGIN \
             CERTIFICATE-----)"
        ),
        "{stderr}"
    );
}
