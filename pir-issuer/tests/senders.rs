//! The code senders against real receivers on 127.0.0.1: Python's aiosmtpd for SMTP (installed
//! by `scripts/test`), an axum server for the SMS webhook, and a temporary file. Every wait is
//! bounded; nothing leaves this machine.

mod common;

use std::{
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use common::{SmtpServer, free_port, header_value, quoted_printable, start_receiver};
use pir_core::Cpi;
use pir_issuer::sender::{
    CodeSender, FileSender, Notice, NoticeKind, SendError, SmtpSender, WebhookSender,
};

const CODE: &str = "482913";
const EXPIRES_AT: u64 = 1_767_225_600;

fn code_notice(cpi: &str, code: &str) -> Notice {
    Notice {
        to: Cpi::parse(cpi).unwrap(),
        msp: "msp.example".to_owned(),
        prover: "Test Prover".to_owned(),
        kind: NoticeKind::Code {
            code: code.to_owned(),
            expires_at: EXPIRES_AT,
        },
    }
}

fn reminder_notice(cpi: &str) -> Notice {
    Notice {
        to: Cpi::parse(cpi).unwrap(),
        msp: "msp.example".to_owned(),
        prover: "Test Prover".to_owned(),
        kind: NoticeKind::Reminder {
            not_after: EXPIRES_AT,
        },
    }
}

fn failed_detail(result: Result<(), SendError>, channel: &str) -> String {
    match result {
        Err(SendError::Failed { channel: c, detail }) => {
            assert_eq!(c, channel, "{detail}");
            detail
        }
        other => panic!("expected a {channel} failure, got {other:?}"),
    }
}

// ---- SMTP ---------------------------------------------------------------------------------

#[tokio::test]
async fn smtp_delivers_a_code_to_aiosmtpd() {
    let server = SmtpServer::start();
    let sender = SmtpSender::from_url(
        &server.url(),
        "Test Prover <codes@prover.example>",
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(sender.channel(), "smtp");
    let notice = code_notice("mailto:alice@example.org", CODE);
    sender.send(&notice).await.unwrap();

    let messages = server.messages(1);
    assert_eq!(messages.len(), 1);
    let message = messages[0].replace("\r\n", "\n");
    assert_eq!(
        header_value(&message, "To").as_deref(),
        Some("alice@example.org"),
        "{message}"
    );
    assert_eq!(
        header_value(&message, "X-RcptTo").as_deref(),
        Some("alice@example.org"),
        "{message}"
    );
    assert_eq!(
        header_value(&message, "Subject"),
        Some(notice.subject()),
        "{message}"
    );
    let from = header_value(&message, "From").unwrap();
    assert!(from.contains("codes@prover.example"), "{from}");
    let content_type = header_value(&message, "Content-Type").unwrap();
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("utf-8"),
        "{content_type}"
    );
    let message_id = header_value(&message, "Message-ID").unwrap();
    assert!(message_id.ends_with("@prover.example>"), "{message_id}");
    let (_, body) = message.split_once("\n\n").unwrap();
    let body = match header_value(&message, "Content-Transfer-Encoding").as_deref() {
        Some("quoted-printable") => quoted_printable(body),
        _ => body.to_owned(),
    };
    assert!(body.contains(&notice.text()), "{message}");
    assert!(body.contains("msp.example"), "{message}");

    // A reminder goes the same way, with its own subject and no code.
    let reminder = reminder_notice("mailto:alice@example.org");
    sender.send(&reminder).await.unwrap();
    let messages = server.messages(2);
    assert!(
        messages
            .iter()
            .any(|m| header_value(m, "Subject") == Some(reminder.subject())),
        "{messages:?}"
    );
}

#[test]
fn smtp_refuses_cleartext_to_a_remote_relay() {
    let timeout = Duration::from_secs(5);
    for url in [
        "smtp://mail.example.org",
        "smtp://mail.example.org:25",
        "smtp://user:hunter2@mail.example.org:587",
        "smtp://mail.example.org?tls=opportunistic",
        "smtp://192.0.2.1:25",
    ] {
        let err = SmtpSender::from_url(url, "codes@prover.example", timeout).unwrap_err();
        assert_eq!(err.flag(), "--smtp", "{url}: {err}");
        let message = err.to_string();
        assert!(message.starts_with("--smtp:"), "{message}");
        assert!(message.contains("cleartext"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
    for url in ["imap://mail.example.org", "not a url", "smtp://x?tls=bogus"] {
        let err = SmtpSender::from_url(url, "codes@prover.example", timeout).unwrap_err();
        assert_eq!(err.flag(), "--smtp", "{url}: {err}");
    }
    // Loopback in cleartext, and TLS anywhere, are accepted.
    for url in [
        "smtp://127.0.0.1:2525",
        "smtp://localhost",
        "smtp://[::1]:25",
        "smtps://user:pass@mail.example.org",
        "smtp://mail.example.org:587?tls=required",
    ] {
        SmtpSender::from_url(url, "codes@prover.example", timeout)
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn smtp_refuses_a_bad_from() {
    for from in ["", "not a mailbox", "codes@", "Prover <codes>"] {
        let err =
            SmtpSender::from_url("smtp://127.0.0.1:25", from, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.flag(), "--smtp-from", "{from:?}: {err}");
        assert!(err.to_string().starts_with("--smtp-from:"), "{err}");
    }
}

#[tokio::test]
async fn smtp_fails_fast_when_nothing_listens() {
    let url = format!("smtp://127.0.0.1:{}", free_port());
    let sender =
        SmtpSender::from_url(&url, "codes@prover.example", Duration::from_secs(5)).unwrap();
    let started = Instant::now();
    let result = sender
        .send(&code_notice("mailto:alice@example.org", CODE))
        .await;
    let detail = failed_detail(result, "smtp");
    assert!(started.elapsed() < Duration::from_secs(3), "{detail}");
    assert!(!detail.contains(CODE), "{detail}");
}

#[tokio::test]
async fn smtp_refuses_a_tel_cpi() {
    let sender = SmtpSender::from_url(
        "smtp://127.0.0.1:1",
        "codes@prover.example",
        Duration::from_secs(5),
    )
    .unwrap();
    let result = sender.send(&code_notice("tel:+14155550100", CODE)).await;
    failed_detail(result, "smtp");
}

// ---- Webhook ------------------------------------------------------------------------------

#[tokio::test]
async fn webhook_posts_json_with_the_bearer_token() {
    let (addr, seen) = start_receiver(StatusCode::OK, false).await;
    let sender = WebhookSender::new(
        &format!("http://{addr}/sms"),
        Some("s3cret-token".to_owned()),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(sender.channel(), "webhook");
    let notice = code_notice("tel:+14155550100", CODE);
    sender.send(&notice).await.unwrap();
    let reminder = reminder_notice("tel:+14155550100");
    sender.send(&reminder).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let first = &seen[0];
    assert_eq!(first.path, "/sms");
    assert_eq!(first.authorization.as_deref(), Some("Bearer s3cret-token"));
    assert_eq!(first.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        first.body,
        serde_json::json!({
            "to": "+14155550100",
            "text": notice.text(),
            "kind": "code",
            "msp": "msp.example",
        })
    );
    assert!(first.body["text"].as_str().unwrap().contains(CODE));
    assert_eq!(seen[1].body["kind"], "reminder");
    assert_eq!(seen[1].body["text"], reminder.text());
}

#[tokio::test]
async fn webhook_sends_no_authorization_without_a_token() {
    let (addr, seen) = start_receiver(StatusCode::NO_CONTENT, false).await;
    let sender =
        WebhookSender::new(&format!("http://{addr}/sms"), None, Duration::from_secs(5)).unwrap();
    sender
        .send(&code_notice("tel:+14155550100", CODE))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization, None);
}

#[tokio::test]
async fn webhook_reports_a_refusal_without_the_code() {
    let (addr, _) = start_receiver(StatusCode::SERVICE_UNAVAILABLE, false).await;
    let sender =
        WebhookSender::new(&format!("http://{addr}/sms"), None, Duration::from_secs(5)).unwrap();
    let result = sender.send(&code_notice("tel:+14155550100", CODE)).await;
    let detail = failed_detail(result, "webhook");
    assert!(detail.contains("503"), "{detail}");
    assert!(detail.contains("gateway down"), "{detail}");

    // A gateway that quotes the text back: the code stays out of the detail.
    let (addr, seen) = start_receiver(StatusCode::SERVICE_UNAVAILABLE, true).await;
    let sender =
        WebhookSender::new(&format!("http://{addr}/sms"), None, Duration::from_secs(5)).unwrap();
    let result = sender.send(&code_notice("tel:+14155550100", CODE)).await;
    let detail = failed_detail(result, "webhook");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(detail.contains("503"), "{detail}");
    assert!(!detail.contains(CODE), "{detail}");
    assert!(detail.len() < 400, "{detail}");
}

#[tokio::test]
async fn webhook_follows_no_redirect() {
    let (addr, seen) = start_receiver(StatusCode::TEMPORARY_REDIRECT, false).await;
    let sender =
        WebhookSender::new(&format!("http://{addr}/sms"), None, Duration::from_secs(5)).unwrap();
    let result = sender.send(&code_notice("tel:+14155550100", CODE)).await;
    let detail = failed_detail(result, "webhook");
    assert!(detail.contains("307"), "{detail}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/sms");
}

#[tokio::test]
async fn webhook_times_out_on_a_silent_receiver() {
    // Accepts connections, reads nothing, answers nothing.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let sender = WebhookSender::new(
        &format!("http://{addr}/sms"),
        None,
        Duration::from_millis(300),
    )
    .unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        sender.send(&code_notice("tel:+14155550100", CODE)),
    )
    .await
    .expect("the sender's own timeout bounds the send");
    let elapsed = started.elapsed();
    let detail = failed_detail(result, "webhook");
    assert!(
        elapsed >= Duration::from_millis(250),
        "{elapsed:?}: {detail}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}: {detail}");
    assert!(detail.contains("300ms"), "{detail}");
}

#[tokio::test]
async fn webhook_fails_fast_when_nothing_listens() {
    let sender = WebhookSender::new(
        &format!("http://127.0.0.1:{}/sms", free_port()),
        Some("s3cret-token".to_owned()),
        Duration::from_secs(5),
    )
    .unwrap();
    let started = Instant::now();
    let result = sender.send(&code_notice("tel:+14155550100", CODE)).await;
    let detail = failed_detail(result, "webhook");
    assert!(started.elapsed() < Duration::from_secs(3), "{detail}");
    assert!(!detail.contains("s3cret"), "{detail}");
}

#[tokio::test]
async fn webhook_refuses_a_mailto_cpi() {
    let sender =
        WebhookSender::new("http://127.0.0.1:1/sms", None, Duration::from_secs(5)).unwrap();
    let result = sender
        .send(&code_notice("mailto:alice@example.org", CODE))
        .await;
    failed_detail(result, "webhook");
}

#[test]
fn webhook_refuses_cleartext_to_a_remote_gateway() {
    let timeout = Duration::from_secs(5);
    for url in [
        "http://sms.example/send",
        "http://192.0.2.1/send?token=hunter2",
        "http://10.0.0.1:8080/",
    ] {
        let err = WebhookSender::new(url, None, timeout).unwrap_err();
        assert_eq!(err.flag(), "--sms-webhook", "{url}: {err}");
        let message = err.to_string();
        assert!(message.starts_with("--sms-webhook:"), "{message}");
        assert!(message.contains("cleartext"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
    for url in ["ftp://sms.example/", "sms.example/send", "https://"] {
        let err = WebhookSender::new(url, None, timeout).unwrap_err();
        assert_eq!(err.flag(), "--sms-webhook", "{url}: {err}");
    }
    let err = WebhookSender::new(
        "https://sms.example/send",
        Some("bad\ntoken".to_owned()),
        timeout,
    )
    .unwrap_err();
    assert_eq!(err.flag(), "--sms-webhook");
    assert!(!err.to_string().contains("bad"), "{err}");
    for url in [
        "https://sms.example/send",
        "http://127.0.0.1:8080/sms",
        "http://localhost/sms",
        "http://[::1]:8080/sms",
    ] {
        WebhookSender::new(url, Some("token".to_owned()), timeout)
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

// ---- File ---------------------------------------------------------------------------------

#[tokio::test]
async fn file_appends_one_json_line_per_notice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("codes.jsonl");
    let sender = FileSender::new(path.clone());
    assert_eq!(sender.channel(), "file");
    assert_eq!(sender.path(), path);

    let first = code_notice("mailto:alice@example.org", "111111");
    let second = code_notice("mailto:alice@example.org", "222222");
    let other = code_notice("tel:+14155550100", "333333");
    let reminder = reminder_notice("mailto:alice@example.org");
    for notice in [&first, &second, &other, &reminder] {
        sender.send(notice).await.unwrap();
    }

    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    sender.check().unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        serde_json::json!({
            "to": "mailto:alice@example.org",
            "msp": "msp.example",
            "kind": "code",
            "code": "111111",
            "expires_at": EXPIRES_AT,
            "text": first.text(),
        })
    );
    assert_eq!(
        lines[3],
        serde_json::json!({
            "to": "mailto:alice@example.org",
            "msp": "msp.example",
            "kind": "reminder",
            "not_after": EXPIRES_AT,
            "text": reminder.text(),
        })
    );

    let notices = FileSender::read_codes(&path).unwrap();
    assert_eq!(notices.len(), 4);
    assert_eq!(notices[1].code.as_deref(), Some("222222"));
    assert_eq!(notices[1].text, second.text());
    assert_eq!(
        FileSender::latest_code(&path, "mailto:alice@example.org")
            .unwrap()
            .as_deref(),
        Some("222222")
    );
    assert_eq!(
        FileSender::latest_code(&path, "tel:+14155550100")
            .unwrap()
            .as_deref(),
        Some("333333")
    );
    assert_eq!(
        FileSender::latest_code(&path, "mailto:bob@example.org").unwrap(),
        None
    );
    assert_eq!(
        FileSender::latest_code(&dir.path().join("missing"), "tel:+14155550100").unwrap(),
        None
    );
}

#[tokio::test]
async fn file_keeps_concurrent_lines_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("codes.jsonl");
    let sender = Arc::new(FileSender::new(path.clone()));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let sender = sender.clone();
            tokio::spawn(async move {
                let notice = code_notice("tel:+14155550100", &format!("{i:06}"));
                sender.send(&notice).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let notices = FileSender::read_codes(&path).unwrap();
    assert_eq!(notices.len(), 20);
}

#[test]
fn file_check_refuses_a_readable_file_and_a_bad_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("codes.jsonl");
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = FileSender::new(path.clone()).check().unwrap_err();
    assert_eq!(err.flag(), "--code-file", "{err}");
    assert!(err.to_string().starts_with("--code-file"), "{err}");

    let err = FileSender::new(dir.path().join("no/such/dir/codes.jsonl"))
        .check()
        .unwrap_err();
    assert_eq!(err.flag(), "--code-file", "{err}");

    // check creates a missing file owner-only.
    let fresh = dir.path().join("fresh.jsonl");
    FileSender::new(fresh.clone()).check().unwrap();
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

#[tokio::test]
async fn file_reports_an_unwritable_path() {
    let dir = tempfile::tempdir().unwrap();
    let sender = FileSender::new(dir.path().join("no/such/dir/codes.jsonl"));
    let result = sender
        .send(&code_notice("mailto:alice@example.org", CODE))
        .await;
    let detail = failed_detail(result, "file");
    assert!(!detail.contains(CODE), "{detail}");
}

#[test]
fn read_codes_refuses_a_line_that_is_not_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let path: &Path = &dir.path().join("codes.jsonl");
    std::fs::write(path, "{\"to\":\"tel:+1\"}\n").unwrap();
    let err = FileSender::read_codes(path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
}
