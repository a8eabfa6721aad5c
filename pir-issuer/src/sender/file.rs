//! Codes into a file (`--code-file`): each notice appended as one JSON line, for the demo and
//! for operators who deliver codes themselves.
//!
//! ```text
//! {"to":"mailto:alice@example.org","msp":"msp.example","kind":"code","code":"123456","expires_at":1767225600,"text":"..."}
//! {"to":"tel:+14155550100","msp":"msp.example","kind":"reminder","not_after":1767225600,"text":"..."}
//! ```
//!
//! The file holds live codes: it is created owner-only (0600), and [`FileSender::check`] refuses
//! one that group or others may access. Each line is one `write` to a file opened with
//! `O_APPEND` and is synced before the send succeeds; the file is opened anew for every notice,
//! so an operator may move it away at any time.

use std::{
    fs::OpenOptions,
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::{Deserialize, Serialize};

use super::{CodeSender, Notice, NoticeKind, SendError, SendFuture, smtp::SenderConfigError};

/// The channel's name in logs, metrics and [`SendError::Failed`].
const CHANNEL: &str = "file";

/// One line of a code file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileNotice {
    /// The CPI the notice is for (`tel:+…` or `mailto:…`).
    pub to: String,
    /// The MSP the user is enrolling at.
    pub msp: String,
    /// `code` or `reminder`.
    pub kind: String,
    /// The one-time code, for `kind` `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When the code expires, unix seconds, for `kind` `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When the mapping expires, unix seconds, for `kind` `reminder`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
    /// The message's text, as the other channels send it.
    pub text: String,
}

impl FileNotice {
    fn of(notice: &Notice) -> Self {
        let (kind, code, expires_at, not_after) = match &notice.kind {
            NoticeKind::Code { code, expires_at } => {
                ("code", Some(code.clone()), Some(*expires_at), None)
            }
            NoticeKind::Reminder { not_after } => ("reminder", None, None, Some(*not_after)),
        };
        Self {
            to: notice.to.as_str().to_owned(),
            msp: notice.msp.clone(),
            kind: kind.to_owned(),
            code,
            expires_at,
            not_after,
            text: notice.text(),
        }
    }
}

/// Appends notices to a file of JSON lines.
#[derive(Clone, Debug)]
pub struct FileSender {
    path: PathBuf,
    // Serialises this process's appends (and their syncs); O_APPEND orders them in the file.
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl FileSender {
    /// A sender appending to `path` (`--code-file`), created owner-only on the first notice if
    /// missing.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The file appended to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks at start-up that the file can be appended to (creating it owner-only if missing)
    /// and that neither group nor others may access it.
    pub fn check(&self) -> Result<(), SenderConfigError> {
        let refused = |reason: String| SenderConfigError::CodeFile {
            path: self.path.display().to_string(),
            reason,
        };
        let file = open_append(&self.path).map_err(|e| refused(e.to_string()))?;
        let metadata = file.metadata().map_err(|e| refused(e.to_string()))?;
        if !metadata.is_file() {
            return Err(refused("not a regular file".to_owned()));
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(refused(format!(
                "mode {mode:03o} lets group or others read live codes: chmod 600 it"
            )));
        }
        Ok(())
    }

    /// Every notice in the code file at `path`, in the order they were written. A missing file
    /// holds none; a line that is not a notice is an [`io::ErrorKind::InvalidData`] error.
    pub fn read_codes(path: &Path) -> io::Result<Vec<FileNotice>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                serde_json::from_str(line).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} line {}: {e}", path.display(), i + 1),
                    )
                })
            })
            .collect()
    }

    /// The latest code in the code file at `path` for `cpi` (normalised as [`pir_core::Cpi`]
    /// does when it parses), if any.
    pub fn latest_code(path: &Path, cpi: &str) -> io::Result<Option<String>> {
        let cpi = pir_core::Cpi::parse(cpi)
            .map(|c| c.as_str().to_owned())
            .unwrap_or_else(|_| cpi.to_owned());
        Ok(Self::read_codes(path)?
            .into_iter()
            .rev()
            .filter(|n| n.to == cpi && n.kind == "code")
            .find_map(|n| n.code))
    }

    async fn append(&self, notice: &Notice) -> Result<(), SendError> {
        let failed = |detail: String| SendError::Failed {
            channel: CHANNEL,
            detail,
        };
        let mut line = serde_json::to_vec(&FileNotice::of(notice))
            .map_err(|e| failed(format!("encoding the notice: {e}")))?;
        line.push(b'\n');
        let path = self.path.clone();
        let _guard = self.lock.lock().await;
        tokio::task::spawn_blocking(move || {
            let mut file = open_append(&path)?;
            file.write_all(&line)?;
            file.sync_data()
        })
        .await
        .map_err(|e| failed(format!("the write task failed: {e}")))?
        .map_err(|e| failed(format!("{}: {e}", self.path.display())))
    }
}

/// `path` opened for appending, created owner-only if missing.
fn open_append(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

impl CodeSender for FileSender {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn send<'a>(&'a self, notice: &'a Notice) -> SendFuture<'a> {
        Box::pin(self.append(notice))
    }
}
