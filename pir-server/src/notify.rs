//! Telling the supervisor what the process is doing: systemd's notify protocol (when
//! `NOTIFY_SOCKET` is set, as under `Type=notify` or `Type=notify-reload`) and the pid file.
//!
//! ```text
//! bound ─ pid file written ─ loading (STATUS=) ─ READY=1 ─┬─ SIGHUP / Admin.Reload:
//!                                                          │  RELOADING=1 ... READY=1
//!                                              SIGTERM ────┴─ STOPPING=1 ─ exit: pid file removed
//! ```
//!
//! A notification that cannot be sent is logged and otherwise ignored: serving matters more.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify the service manager (NOTIFY_SOCKET)");
    }
}

/// A human-readable status line (`systemctl status` shows it).
pub(crate) fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// The snapshot is loaded and served (after start, and after each reload).
pub(crate) fn ready(text: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(text)]);
}

/// A reload starts; [`ready`] follows, whatever its outcome. `MONOTONIC_USEC` is what
/// `Type=notify-reload` needs to match the reload with its signal.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading"),
        ]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("reloading")]),
    }
}

/// Shutting down: draining requests in flight.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// The `--pid-file`: holds this process's id while it runs, removed when dropped.
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id (and a newline) to `path`, atomically.
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        let pid = std::process::id();
        pir_core::fs::write_atomic(path, 0o644, |_, e| e, |w| writeln!(w, "{pid}"))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own: another process may have taken the name over since.
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the pid file");
        }
    }
}
