//! Code senders: how a one-time code (and later a re-verification reminder) reaches the user
//! who holds a CPI, through that CPI's own channel. The prover never tells the MSP the code:
//! the user reads it and gives it to their MSP, which relays it (the three-way handshake).
//!
//! One sender per CPI kind ([`Senders`]): SMTP for `mailto:` (`smtp.rs`), an HTTP(S) webhook
//! of an SMS gateway for `tel:` (`webhook.rs`), or a file of JSON lines for the demo and for
//! operators who deliver codes themselves (`file.rs`).

use std::{future::Future, pin::Pin, sync::Arc};

use pir_core::Cpi;

mod file;
mod smtp;
mod webhook;

pub use file::{FileNotice, FileSender};
pub use smtp::{SenderConfigError, SmtpSender};
pub use webhook::WebhookSender;

/// What a sender delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// A one-time code that proves the user holds `to`.
    Code {
        /// The code, decimal digits.
        code: String,
        /// When it expires, unix seconds.
        expires_at: u64,
    },
    /// The mapping of `to` at `msp` expires at `not_after` unless ownership is proven again.
    Reminder {
        /// When the mapping expires, unix seconds.
        not_after: u64,
    },
}

/// One message to the holder of a CPI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The CPI the message goes to (normalised: `tel:+…` or `mailto:…`).
    pub to: Cpi,
    /// The MSP the user is enrolling at (a domain), named so that the user can refuse a code
    /// they did not ask for.
    pub msp: String,
    /// The prover's name as users know it (`--name`), for the message's text.
    pub prover: String,
    /// What is sent.
    pub kind: NoticeKind,
}

impl Notice {
    /// The message's text, the same for every channel. A code's text leaves out the CPI (its
    /// holder knows it) and says how long the code lasts in minutes, so that it fits one GSM-7
    /// SMS (160 characters) for any prover name up to 20 characters and MSP domain up to 60.
    pub fn text(&self) -> String {
        match &self.kind {
            NoticeKind::Code { code, expires_at } => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let minutes = expires_at.saturating_sub(now).div_ceil(60).max(1);
                let unit = if minutes == 1 { "minute" } else { "minutes" };
                format!(
                    "{code} is your {} code to join {}. Valid {minutes} {unit}. Not you? Ignore \
                     it.",
                    self.prover, self.msp
                )
            }
            NoticeKind::Reminder { not_after } => format!(
                "{}: your registration of {} at {} ends at {}. Ask {} to verify it again to stay \
                 discoverable.",
                self.prover,
                self.to.as_str(),
                self.msp,
                pir_core::human::Time(*not_after),
                self.msp
            ),
        }
    }

    /// The message's subject line (email).
    pub fn subject(&self) -> String {
        match &self.kind {
            NoticeKind::Code { .. } => format!("Your {} code for {}", self.prover, self.msp),
            NoticeKind::Reminder { .. } => {
                format!("Your registration at {} ends soon", self.msp)
            }
        }
    }
}

/// Why a notice was not delivered. The message names the channel and, for the operator's log,
/// what failed; it never contains the code.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No sender is configured for this kind of CPI.
    #[error("this prover sends no codes to {0} identifiers (start it with {1})")]
    NoChannel(&'static str, &'static str),
    /// The channel refused or failed.
    #[error("{channel}: {detail}")]
    Failed {
        /// `smtp`, `webhook` or `file`.
        channel: &'static str,
        /// What went wrong.
        detail: String,
    },
}

/// The future a sender returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// Delivers notices through one channel.
pub trait CodeSender: Send + Sync + std::fmt::Debug {
    /// The channel's name for logs and metrics (`smtp`, `webhook`, `file`).
    fn channel(&self) -> &'static str;
    /// Delivers `notice`; bounded in time by the sender's own timeout.
    fn send<'a>(&'a self, notice: &'a Notice) -> SendFuture<'a>;
}

/// The senders of a prover, by CPI kind.
#[derive(Clone, Debug, Default)]
pub struct Senders {
    /// For `mailto:` CPIs.
    pub email: Option<Arc<dyn CodeSender>>,
    /// For `tel:` CPIs.
    pub phone: Option<Arc<dyn CodeSender>>,
}

impl Senders {
    /// The sender for `cpi`'s kind.
    pub fn for_cpi(&self, cpi: &Cpi) -> Result<&Arc<dyn CodeSender>, SendError> {
        if cpi.as_str().starts_with("mailto:") {
            self.email
                .as_ref()
                .ok_or(SendError::NoChannel("mailto:", "--smtp or --code-file"))
        } else {
            self.phone
                .as_ref()
                .ok_or(SendError::NoChannel("tel:", "--sms-webhook or --code-file"))
        }
    }

    /// Delivers `notice` through the sender for its CPI's kind.
    pub async fn send(&self, notice: &Notice) -> Result<(), SendError> {
        self.for_cpi(&notice.to)?.send(notice).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_fits_one_sms() {
        let notice = Notice {
            to: Cpi::parse("tel:+14155550100").unwrap(),
            msp: format!("{}.example", "m".repeat(52)),
            prover: "p".repeat(20),
            kind: NoticeKind::Code {
                code: "0123456789".into(),
                // The longest --code-ttl, 24 h: 1440 minutes.
                expires_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 86_400,
            },
        };
        assert_eq!(notice.msp.len(), 60);
        let text = notice.text();
        assert!(text.starts_with("0123456789 is your"), "{text}");
        assert!(
            text.chars().count() <= 160,
            "{} characters: {text}",
            text.len()
        );
    }
}
