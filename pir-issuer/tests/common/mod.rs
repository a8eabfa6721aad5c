//! What the prover's tests share: free ports, a real SMTP server (Python's aiosmtpd, installed
//! by `scripts/test`) and an SMS webhook receiver (axum), each on 127.0.0.1 and bounded in time.

// Each test file is its own crate and uses some of these helpers only.
#![allow(dead_code, unreachable_pub)]

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::post,
};

/// A port nothing listens on (an OS-chosen one, released).
pub(crate) fn free_port() -> u16 {
    let listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// The aiosmtpd child, killed when dropped (a failed assertion included).
pub(crate) struct SmtpServer {
    child: Child,
    pub(crate) port: u16,
    maildir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    /// Starts `python3 -m aiosmtpd` with a Maildir handler and waits (10 s at most) until it
    /// accepts connections.
    pub(crate) fn start() -> SmtpServer {
        let missing = "the SMTP test runs Python's aiosmtpd: run scripts/test, which installs it, \
                       or `python3 -m pip install aiosmtpd==1.4.6`";
        match Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(status) if status.success() => {}
            Ok(_) => panic!("python3 cannot import aiosmtpd: {missing}"),
            Err(e) => panic!("python3 is not runnable ({e}): {missing}"),
        }
        let maildir = tempfile::tempdir().unwrap();
        let mailbox = maildir.path().join("mail");
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&mailbox)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting aiosmtpd: {e}: {missing}"));
        let mut server = SmtpServer {
            child,
            port,
            maildir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("aiosmtpd exited ({status}) before listening on {port}");
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on 127.0.0.1:{port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages in the Maildir's `new/`, waiting (5 s at most) until there are `count`.
    pub(crate) fn messages(&self, count: usize) -> Vec<String> {
        let new = self.maildir.path().join("mail").join("new");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&new)
                .map(|dir| dir.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default();
            if found.len() >= count {
                found.sort_by_key(|p| delivery_order(p));
                return found
                    .iter()
                    .map(|p| std::fs::read_to_string(p).unwrap())
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "{} messages in {} after 5 s, expected {count}",
                found.len(),
                new.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Where a message stands in the order aiosmtpd delivered them. Python's `mailbox.Maildir`
/// names a file `SECONDS.M<micros>P<pid>Q<count>.HOST`, with the microseconds unpadded (so
/// names do not sort by time: `M12000` before `M5000`) and `count` the server's own delivery
/// counter.
fn delivery_order(path: &std::path::Path) -> (u64, String) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let counter = name
        .split('.')
        .nth(1)
        .and_then(|unique| unique.rsplit_once('Q'))
        .and_then(|(_, digits)| digits.parse().ok())
        .unwrap_or_else(|| panic!("{name}: not a Maildir name with a delivery counter"));
    (counter, name)
}

/// A message's header `name`, unfolded and trimmed.
pub(crate) fn header_value(message: &str, name: &str) -> Option<String> {
    let (head, _) = message.split_once("\n\n").unwrap_or((message, ""));
    let unfolded = head
        .replace("\r\n", "\n")
        .replace("\n ", " ")
        .replace("\n\t", " ");
    unfolded.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// `body` decoded from quoted-printable (RFC 2045 6.7), as text.
pub(crate) fn quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// One request the receiver saw.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) authorization: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) body: serde_json::Value,
}

#[derive(Clone)]
pub(crate) struct Receiver {
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
    /// The status every request is answered with.
    pub(crate) status: StatusCode,
    /// Whether the refusal's body echoes the request's text (a gateway that quotes its input).
    pub(crate) echo: bool,
}

pub(crate) async fn receive(
    State(receiver): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header =
        |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    receiver.seen.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        authorization: header(header::AUTHORIZATION),
        content_type: header(header::CONTENT_TYPE),
        body,
    });
    let answer = if receiver.echo {
        format!("gateway down, could not send {text:?}")
    } else {
        "gateway down".to_owned()
    };
    let mut headers = HeaderMap::new();
    if receiver.status.is_redirection() {
        headers.insert(header::LOCATION, "/elsewhere".parse().unwrap());
    }
    (receiver.status, headers, answer)
}

/// An axum receiver on 127.0.0.1:0 answering `status`; its address and what it saw.
pub(crate) async fn start_receiver(
    status: StatusCode,
    echo: bool,
) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/sms", post(receive))
        .route("/elsewhere", post(receive))
        .with_state(Receiver {
            seen: seen.clone(),
            status,
            echo,
        });
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}
