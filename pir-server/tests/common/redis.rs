//! A real `redis-server` (or `valkey-server`) on a free loopback port, in a temporary
//! directory, without persistence, killed when dropped. The key store's tests need one: when
//! neither binary is on PATH they fail, saying how to install it (`.ci/run` does).

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The server binary on PATH, or a failure that says what to install.
fn binary() -> &'static str {
    for name in ["redis-server", "valkey-server"] {
        let found = Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return name;
        }
    }
    panic!(
        "neither redis-server nor valkey-server is on PATH: the key store's tests need one. \
         Install it (apt-get install redis-server; .ci/run and scripts/test do)"
    );
}

/// A running Redis; stopped (killed) when dropped.
pub(crate) struct Redis {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one on a free loopback port and waits until it answers PING.
    pub(crate) async fn start() -> Self {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut redis = Self {
            child: None,
            addr,
            dir: tempfile::tempdir().unwrap(),
        };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    async fn spawn(&mut self) {
        let child = Command::new(binary())
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.addr.port().to_string())
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..200 {
            if self.ping().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis at {} never answered PING", self.addr);
    }

    async fn ping(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(self.addr).await else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills it (everything it held is lost: no persistence).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub(crate) async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
