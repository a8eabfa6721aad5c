//! Codes by SMS: one JSON POST per notice to an SMS gateway's webhook (`--sms-webhook`), which
//! sends the text to the number.
//!
//! ```text
//! POST <url>
//! Authorization: Bearer <token>          (when a token is configured)
//! Content-Type: application/json
//!
//! {"to": "+14155550100", "text": "...", "kind": "code" | "reminder", "msp": "msp.example"}
//! ```
//!
//! A 2xx answer is delivery; anything else, a redirect included (none is followed, so the body
//! never goes where the operator did not point it), is a failure. The URL must be `https://`,
//! or `http://` to a loopback host (tests, a local gateway).

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;

use super::{
    CodeSender, Notice, NoticeKind, SendError, SendFuture,
    smtp::{SenderConfigError, is_loopback_host, redact},
};

/// The channel's name in logs, metrics and [`SendError::Failed`].
const CHANNEL: &str = "webhook";

/// At most this much of a refusal's body goes into the error's detail.
const BODY_EXCERPT: usize = 200;

/// Sends notices to `tel:` CPIs through an SMS gateway's webhook.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    url: reqwest::Url,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookSender {
    // The URL may carry a token in its query and the header is one: show neither.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSender")
            .field("host", &self.url.host_str())
            .field("bearer", &self.authorization.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The JSON body of a POST.
#[derive(Serialize)]
struct Body<'a> {
    to: &'a str,
    text: String,
    kind: &'static str,
    msp: &'a str,
}

impl WebhookSender {
    /// A sender that POSTs to `url` (`--sms-webhook`), with `Authorization: Bearer
    /// <bearer_token>` when a token is given, each delivery bounded by `timeout` in all.
    ///
    /// `url` must be `https://`, or `http://` to a loopback host.
    pub fn new(
        url: &str,
        bearer_token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, SenderConfigError> {
        let url =
            reqwest::Url::parse(url).map_err(|e| SenderConfigError::WebhookUrl(e.to_string()))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| SenderConfigError::WebhookUrl("no host".to_owned()))?
            .to_owned();
        let loopback = is_loopback_host(&host);
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => return Err(SenderConfigError::WebhookPlaintext { host }),
            other => {
                return Err(SenderConfigError::WebhookUrl(format!(
                    "unknown scheme {other:?} (https://, or http:// to a loopback host)"
                )));
            }
        }
        let authorization = bearer_token
            .map(|token| {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| SenderConfigError::WebhookToken)?;
                value.set_sensitive(true);
                Ok::<_, SenderConfigError>(value)
            })
            .transpose()?;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!loopback);
        if loopback {
            // A proxy from the environment has no business relaying to this machine.
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| SenderConfigError::WebhookClient(error_chain(&e)))?;
        Ok(Self {
            client,
            url,
            authorization,
            timeout,
        })
    }

    async fn deliver(&self, notice: &Notice) -> Result<(), SendError> {
        let failed = |detail: String| SendError::Failed {
            channel: CHANNEL,
            detail: redact(&detail, notice),
        };
        let to = notice
            .to
            .as_str()
            .strip_prefix("tel:")
            .ok_or_else(|| failed("sends to tel: identifiers only".to_owned()))?;
        let body = Body {
            to,
            text: notice.text(),
            kind: match notice.kind {
                NoticeKind::Code { .. } => "code",
                NoticeKind::Reminder { .. } => "reminder",
            },
            msp: &notice.msp,
        };
        let mut request = self.client.post(self.url.clone()).json(&body);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let exchange = async {
            let mut response = request.send().await?;
            let status = response.status();
            if status.is_success() {
                return Ok(Ok(()));
            }
            let mut excerpt = Vec::new();
            // A refusal's body is read only as far as the excerpt, and not at all after an error.
            while excerpt.len() < BODY_EXCERPT {
                match response.chunk().await {
                    Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => break,
                }
            }
            Ok::<_, reqwest::Error>(Err((status, excerpt)))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err((status, excerpt)))) => {
                let mut detail = format!("HTTP {status}");
                let text = printable(&excerpt);
                if !text.is_empty() {
                    detail.push_str(": ");
                    detail.push_str(&text);
                }
                Err(failed(detail))
            }
            Ok(Err(e)) if e.is_timeout() => Err(self.timed_out(notice)),
            Ok(Err(e)) => Err(failed(error_chain(&e.without_url()))),
            Err(_) => Err(self.timed_out(notice)),
        }
    }

    fn timed_out(&self, notice: &Notice) -> SendError {
        SendError::Failed {
            channel: CHANNEL,
            detail: redact(
                &format!(
                    "no answer from the gateway within {}",
                    humantime::format_duration(self.timeout)
                ),
                notice,
            ),
        }
    }
}

impl CodeSender for WebhookSender {
    fn channel(&self) -> &'static str {
        CHANNEL
    }

    fn send<'a>(&'a self, notice: &'a Notice) -> SendFuture<'a> {
        Box::pin(self.deliver(notice))
    }
}

/// The first [`BODY_EXCERPT`] bytes of `bytes` as one line of text for a log: invalid UTF-8
/// replaced, control characters as spaces, trimmed.
fn printable(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(BODY_EXCERPT)];
    let text: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if bytes.len() > BODY_EXCERPT {
        format!("{text}…")
    } else {
        text.to_owned()
    }
}

/// `e` and its sources, joined by `: ` (reqwest's own message is only the outermost).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}
