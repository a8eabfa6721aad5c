//! The process's file descriptor limit (`RLIMIT_NOFILE`): raised to the hard limit at start,
//! and read to cap connections below it.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The soft and hard descriptor limits (`None`: unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NoFile {
    /// What the process may open now.
    pub(crate) soft: Option<u64>,
    /// What the soft limit may be raised to without privilege.
    pub(crate) hard: Option<u64>,
}

impl NoFile {
    /// The limits now.
    pub(crate) fn current() -> Self {
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        Self {
            soft: current,
            hard: maximum,
        }
    }

    /// The soft limit as a number (unlimited as `u64::MAX`).
    pub(crate) fn soft_or_max(&self) -> u64 {
        self.soft.unwrap_or(u64::MAX)
    }
}

/// Raises the soft descriptor limit to the hard limit (systemd and many shells start services
/// at a soft 1024), and logs what it is. Returns the limits in force.
pub(crate) fn raise_nofile_limit() -> NoFile {
    let before = NoFile::current();
    if before.soft != before.hard {
        let raised = Rlimit {
            current: before.hard,
            maximum: before.hard,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::info!(
                from = ?before.soft,
                to = ?before.hard,
                "raised the soft file descriptor limit (RLIMIT_NOFILE) to the hard limit"
            ),
            Err(e) => tracing::warn!(
                soft = ?before.soft,
                hard = ?before.hard,
                error = %e,
                "could not raise the soft file descriptor limit (RLIMIT_NOFILE)"
            ),
        }
    }
    let now = NoFile::current();
    tracing::debug!(soft = ?now.soft, hard = ?now.hard, "file descriptor limit");
    now
}
