//! Codes by email: one plain-text message per notice, through an SMTP relay (`--smtp`, a lettre
//! connection URL) from `--smtp-from`.
//!
//! A code is a credential while it lives, so it leaves this process in cleartext only to a
//! loopback relay (a local MTA that then delivers over TLS): `smtp://` to any other host is
//! refused at start-up unless it asks for STARTTLS (`?tls=required`) or uses `smtps://`.
//!
//! This file also holds what the three senders share: [`SenderConfigError`] (a sender's
//! configuration refused at start-up, naming the flag to fix), the loopback test and the
//! redaction of a code from an error's detail.

use std::{net::IpAddr, time::Duration};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};

use super::{CodeSender, Notice, NoticeKind, SendError, SendFuture};

/// The channel's name in logs, metrics and [`SendError::Failed`].
const CHANNEL: &str = "smtp";

/// A sender's configuration, refused at start-up. The message names the flag to fix and never
/// repeats a URL, which may carry a password or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SenderConfigError {
    /// `--smtp` is not a connection URL lettre accepts.
    #[error(
        "--smtp: not an SMTP URL (smtp://127.0.0.1:25, smtp://user:pass@host:587?tls=required, \
         smtps://user:pass@host:465): {0}"
    )]
    SmtpUrl(String),
    /// `--smtp` would send codes in cleartext to a host that is not loopback.
    #[error(
        "--smtp: smtp:// sends codes in cleartext, which is allowed to a loopback relay only, not \
         to {host}: use smtps://{host} or smtp://{host}?tls=required"
    )]
    SmtpPlaintext {
        /// The relay's host.
        host: String,
    },
    /// `--smtp-from` is not a mailbox.
    #[error(
        "--smtp-from: {from:?} is not a mailbox (codes@example.org or \"Prover <codes@example.org>\"): \
         {reason}"
    )]
    SmtpFrom {
        /// The value given.
        from: String,
        /// Why lettre refused it.
        reason: String,
    },
    /// `--sms-webhook` is not an `https://` URL (or `http://` to a loopback host).
    #[error(
        "--sms-webhook: not a webhook URL (https://gateway.example/sms, or http:// to a loopback \
         host): {0}"
    )]
    WebhookUrl(String),
    /// `--sms-webhook` would send codes in cleartext to a host that is not loopback.
    #[error(
        "--sms-webhook: http:// sends codes in cleartext, which is allowed to a loopback host \
         only, not to {host}: use https://"
    )]
    WebhookPlaintext {
        /// The gateway's host.
        host: String,
    },
    /// The bearer token of `--sms-webhook` cannot be sent in an HTTP header.
    #[error(
        "--sms-webhook: the bearer token is not a valid HTTP header value (visible ASCII only)"
    )]
    WebhookToken,
    /// The HTTP client of `--sms-webhook` could not be built (for example, no TLS roots).
    #[error("--sms-webhook: the HTTP client could not be built: {0}")]
    WebhookClient(String),
    /// `--code-file` cannot be created or written, or group or others may read it.
    #[error("--code-file {path}: {reason}")]
    CodeFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl SenderConfigError {
    /// The command-line flag whose value was refused: `--smtp`, `--smtp-from`, `--sms-webhook`
    /// or `--code-file`.
    pub fn flag(&self) -> &'static str {
        match self {
            Self::SmtpUrl(_) | Self::SmtpPlaintext { .. } => "--smtp",
            Self::SmtpFrom { .. } => "--smtp-from",
            Self::WebhookUrl(_)
            | Self::WebhookPlaintext { .. }
            | Self::WebhookToken
            | Self::WebhookClient(_) => "--sms-webhook",
            Self::CodeFile { .. } => "--code-file",
        }
    }
}

/// Whether `host` (a URL's host, IPv6 literals in brackets or not) names this machine: an
/// address in `127.0.0.0/8`, `::1`, or `localhost`.
pub(super) fn is_loopback_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            // `::ffff:127.0.0.1` is loopback too.
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        };
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// `detail` with the notice's code, if it has one, replaced: a relay or gateway may echo what it
/// was sent, and error details go to the operator's log.
pub(super) fn redact(detail: &str, notice: &Notice) -> String {
    match &notice.kind {
        NoticeKind::Code { code, .. } if !code.is_empty() => {
            detail.replace(code.as_str(), "[code]")
        }
        _ => detail.to_owned(),
    }
}

/// Sends notices to `mailto:` CPIs through an SMTP relay.
#[derive(Clone)]
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
}

impl std::fmt::Debug for SmtpSender {
    // The transport holds the relay's credentials: show neither.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// A sender through the relay at `url` (`--smtp`), from `from` (`--smtp-from`), each
    /// delivery bounded by `timeout` in all.
    ///
    /// `url` takes lettre's forms: `smtps://[user:pass@]host[:465]` (implicit TLS),
    /// `smtp://[user:pass@]host[:587]?tls=required` (STARTTLS), and `smtp://host[:25]`
    /// (cleartext, or `?tls=opportunistic`), which is refused unless `host` is loopback.
    pub fn from_url(url: &str, from: &str, timeout: Duration) -> Result<Self, SenderConfigError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| SenderConfigError::SmtpUrl(e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| SenderConfigError::SmtpUrl("no host".to_owned()))?
            .to_owned();
        let tls = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let encrypted = match (parsed.scheme(), tls.as_deref()) {
            ("smtps", _) | ("smtp", Some("required")) => true,
            ("smtp", None | Some("opportunistic")) => false,
            (scheme, Some(tls)) => {
                return Err(SenderConfigError::SmtpUrl(format!(
                    "unknown scheme {scheme:?} or tls={tls:?} (smtp://, smtps://, tls=required)"
                )));
            }
            (scheme, None) => {
                return Err(SenderConfigError::SmtpUrl(format!(
                    "unknown scheme {scheme:?} (smtp:// or smtps://)"
                )));
            }
        };
        if !encrypted && !is_loopback_host(&host) {
            return Err(SenderConfigError::SmtpPlaintext { host });
        }
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| SenderConfigError::SmtpFrom {
                from: from.to_owned(),
                reason: e.to_string(),
            })?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| SenderConfigError::SmtpUrl(e.to_string()))?
            .timeout(Some(timeout))
            .build();
        Ok(Self {
            transport,
            from,
            timeout,
        })
    }

    async fn deliver(&self, notice: &Notice) -> Result<(), SendError> {
        let failed = |detail: String| SendError::Failed {
            channel: CHANNEL,
            detail: redact(&detail, notice),
        };
        let address = notice
            .to
            .as_str()
            .strip_prefix("mailto:")
            .ok_or_else(|| failed("sends to mailto: identifiers only".to_owned()))?;
        let to = address
            .parse::<Mailbox>()
            .map_err(|e| failed(format!("the address is not a mailbox: {e}")))?;
        // Relays and spam filters expect a Message-ID; one under the sender's domain names no
        // host of ours.
        let message_id = format!(
            "<{:032x}@{}>",
            rand::random::<u128>(),
            self.from.email.domain()
        );
        let message = Message::builder()
            .message_id(Some(message_id))
            .from(self.from.clone())
            .to(to)
            .subject(notice.subject())
            .header(ContentType::TEXT_PLAIN)
            .body(notice.text())
            .map_err(|e| failed(format!("building the message: {e}")))?;
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed(format!(
                "no answer from the relay within {}",
                humantime::format_duration(self.timeout)
            ))),
        }
    }
}

impl CodeSender for SmtpSender {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn send<'a>(&'a self, notice: &'a Notice) -> SendFuture<'a> {
        Box::pin(self.deliver(notice))
    }
}
