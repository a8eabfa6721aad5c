//! `pir-issuer`: the ID prover's binary. `serve` runs the prover (`pir_issuer::start`);
//! `issue` signs one mapping from fields for operators who verify ownership elsewhere;
//! `export` prints every mapping the prover's state holds (for a DP's full build).

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::{Args, Parser, Subcommand};
use pir_core::{Cpi, IssuerKey, MappingFields, identity::UserKey};
use pir_issuer::{
    IssuerConfig, OperatorToken, Policy,
    sender::{CodeSender, FileSender, Senders, SmtpSender, WebhookSender},
};

#[derive(Parser)]
#[command(
    version,
    about = "The ID prover: proves a user holds a CPI with a one-time code, then issues the \
             signed mapping to their MSP"
)]
struct Cli {
    /// More log detail (-v debug). RUST_LOG, when set, decides instead.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves pir.issuer.v1.Issuer until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Signs one mapping from its fields and prints its JSON line, for operators who have
    /// verified ownership some other way.
    Issue(IssueArgs),
    /// Prints every mapping the state holds (not withdrawn, not expired), one JSON line each:
    /// the input of a DP's full build. The prover must be stopped (the state is its alone).
    Export {
        /// The prover's state file.
        #[arg(long, env = "PIR_ISSUER_STATE")]
        state: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PIR_ISSUER_LISTEN", default_value = "127.0.0.1:50061")]
    listen: SocketAddr,
    /// The issuer's secret key (from `pir-server issuer-keygen`): it signs the mappings.
    #[arg(long, env = "PIR_ISSUER_KEY")]
    issuer_key: PathBuf,
    /// Directory of the registered MSPs' public keys, `<msp domain>.pub` each (the .pub of
    /// `pir-client msp-keygen`). Read on each request: adding or removing a file takes effect
    /// at once.
    #[arg(long, env = "PIR_ISSUER_MSP_KEYS")]
    msp_keys: PathBuf,
    /// The state store (redb, created owner-only): pending enrollments and issued mappings.
    #[arg(long, env = "PIR_ISSUER_STATE")]
    state: PathBuf,
    /// The delta feed (JSON Lines) issued mappings and removals are appended to; the DP's
    /// `pir-server update --delta` reads it.
    #[arg(long, env = "PIR_ISSUER_FEED")]
    feed: PathBuf,
    /// The prover's name, as users see it in codes and reminders.
    #[arg(long, default_value = "pir-issuer")]
    name: String,
    /// SMTP relay for codes to mailto: CPIs: smtps://USER:PASS@HOST, smtp://HOST?tls=required
    /// (STARTTLS), or smtp://HOST:PORT (cleartext, loopback only).
    #[arg(long, env = "PIR_ISSUER_SMTP")]
    smtp: Option<String>,
    /// The From: address of code emails.
    #[arg(long, env = "PIR_ISSUER_SMTP_FROM", requires = "smtp")]
    smtp_from: Option<String>,
    /// An SMS gateway's webhook for codes to tel: CPIs: HTTPS (http:// only to loopback); each
    /// code is POSTed as JSON {to, text, kind, msp}.
    #[arg(long, env = "PIR_ISSUER_SMS_WEBHOOK")]
    sms_webhook: Option<String>,
    /// A file holding the webhook's bearer token (owner-only).
    #[arg(long, requires = "sms_webhook")]
    sms_webhook_token_file: Option<PathBuf>,
    /// Append codes as JSON lines to this file instead (owner-only), for every CPI kind no
    /// other sender takes: for the demo, or for operators who deliver codes themselves.
    #[arg(long, env = "PIR_ISSUER_CODE_FILE")]
    code_file: Option<PathBuf>,
    /// A file holding the operator's token (owner-only, at least 16 characters): RevokeMapping
    /// with `authorization: Bearer <token>` withdraws any mapping.
    #[arg(long, env = "PIR_ISSUER_OPERATOR_TOKEN_FILE")]
    operator_token_file: Option<PathBuf>,
    /// Serve plaintext on an address that is not loopback (behind a TLS-terminating proxy
    /// only: CPIs, codes and mappings cross the wire).
    #[arg(long)]
    insecure_plaintext: bool,
    /// PEM certificate chain to serve TLS with (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long an issued mapping is valid before ownership must be proven again.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "365d")]
    validity: Duration,
    /// How long a code can be used.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    code_ttl: Duration,
    /// Digits in a code (6 to 10).
    #[arg(long, default_value_t = Policy::default().code_digits)]
    code_digits: u32,
    /// Wrong codes an enrollment survives.
    #[arg(long, default_value_t = Policy::default().code_attempts)]
    code_attempts: u32,
    /// Remind users this long before their mapping expires.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30d")]
    remind_before: Duration,
    /// Allowed difference between an MSP's request timestamp and the prover's clock.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    max_clock_skew: Duration,
    /// Codes sent to one CPI per hour (0: unlimited).
    #[arg(long, default_value_t = Policy::default().starts_per_cpi_per_hour)]
    starts_per_cpi_per_hour: u32,
    /// Enrollments one MSP may start per minute (0: unlimited).
    #[arg(long, default_value_t = Policy::default().starts_per_msp_per_minute)]
    starts_per_msp_per_minute: u32,
    /// Requests from one address (IPv6: its /64) per minute (0: unlimited).
    #[arg(long, default_value_t = Policy::default().requests_per_address_per_minute)]
    requests_per_address_per_minute: u32,
    /// How often reminders are sent and expired mappings withdrawn.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    sweep_interval: Duration,
    /// Seconds a code sender may take.
    #[arg(long, default_value_t = 10)]
    send_timeout: u64,
}

#[derive(Args)]
struct IssueArgs {
    /// The issuer's secret key.
    #[arg(long, env = "PIR_ISSUER_KEY")]
    issuer_key: PathBuf,
    /// The CPI (tel: or mailto:).
    #[arg(long)]
    cpi: String,
    /// The MSP's domain.
    #[arg(long)]
    msp: String,
    /// The user's identifier at the MSP.
    #[arg(long)]
    psi: Option<String>,
    /// A context label.
    #[arg(long)]
    context: Option<String>,
    /// Start of validity, unix seconds (default: now).
    #[arg(long)]
    not_before: Option<u64>,
    /// How long the mapping is valid.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "365d")]
    validity: Duration,
    /// The user's secret key (from `pir-client user-keygen`), when the user counter-signs
    /// here.
    #[arg(long)]
    user_key: Option<PathBuf>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn senders(args: &ServeArgs) -> Result<Senders, String> {
    let timeout = Duration::from_secs(args.send_timeout.max(1));
    let mut senders = Senders::default();
    if let Some(url) = &args.smtp {
        let from = args
            .smtp_from
            .as_deref()
            .ok_or("--smtp needs --smtp-from (the From: address of code emails)")?;
        let sender = SmtpSender::from_url(url, from, timeout).map_err(|e| e.to_string())?;
        senders.email = Some(Arc::new(sender) as Arc<dyn CodeSender>);
    }
    if let Some(url) = &args.sms_webhook {
        let token = args
            .sms_webhook_token_file
            .as_ref()
            .map(|p| {
                pir_core::fs::read_secret_text(p)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| format!("--sms-webhook-token-file {}: {e}", p.display()))
            })
            .transpose()?;
        let sender = WebhookSender::new(url, token, timeout).map_err(|e| e.to_string())?;
        senders.phone = Some(Arc::new(sender) as Arc<dyn CodeSender>);
    }
    if let Some(path) = &args.code_file {
        let sender = FileSender::new(path.clone());
        sender.check().map_err(|e| e.to_string())?;
        let sender = Arc::new(sender) as Arc<dyn CodeSender>;
        senders.email.get_or_insert_with(|| sender.clone());
        senders.phone.get_or_insert(sender);
    }
    Ok(senders)
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    if !args.listen.ip().is_loopback() && args.tls_cert.is_none() && !args.insecure_plaintext {
        return Err(format!(
            "--listen {}: not a loopback address, and no TLS: give --tls-cert and --tls-key, or \
             --insecure-plaintext when a TLS-terminating proxy is in front",
            args.listen
        ));
    }
    let issuer_key =
        IssuerKey::from_file(&args.issuer_key).map_err(|e| format!("--issuer-key: {e}"))?;
    let operator = args
        .operator_token_file
        .as_deref()
        .map(OperatorToken::from_file)
        .transpose()?;
    let policy = Policy {
        validity: args.validity,
        code_ttl: args.code_ttl,
        code_digits: args.code_digits,
        code_attempts: args.code_attempts,
        max_clock_skew: args.max_clock_skew,
        remind_before: args.remind_before,
        starts_per_cpi_per_hour: args.starts_per_cpi_per_hour,
        starts_per_msp_per_minute: args.starts_per_msp_per_minute,
        requests_per_address_per_minute: args.requests_per_address_per_minute,
    };
    let running = pir_issuer::start(IssuerConfig {
        listen: args.listen,
        issuer_key,
        msp_keys: args.msp_keys.clone(),
        state: args.state.clone(),
        feed: args.feed.clone(),
        name: args.name.clone(),
        senders: senders(&args)?,
        operator,
        policy,
        tls: args.tls_cert.clone().zip(args.tls_key.clone()),
        sweep_interval: args.sweep_interval,
    })
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!(addr = %running.addr(), "ready");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

fn issue(args: IssueArgs) -> Result<String, String> {
    let issuer =
        IssuerKey::from_file(&args.issuer_key).map_err(|e| format!("--issuer-key: {e}"))?;
    let cpi = Cpi::parse(&args.cpi).map_err(|e| format!("--cpi: {e}"))?;
    let not_before = args.not_before.unwrap_or_else(now);
    let fields = MappingFields::new(
        cpi,
        &args.msp,
        args.psi.as_deref(),
        args.context.as_deref(),
        not_before,
        not_before.saturating_add(args.validity.as_secs()),
    )
    .map_err(|e| format!("the mapping's fields: {e}"))?;
    let user = args
        .user_key
        .as_deref()
        .map(|p| UserKey::from_file(p).map_err(|e| format!("--user-key: {e}")))
        .transpose()?;
    let mapping = match user {
        None => fields.sign(&issuer, None),
        Some(user) => {
            let key = user.public_bytes();
            let bytes = fields.user_signed_bytes(&issuer.id(), &key);
            let sig = user.sign_consent(&bytes).map_err(|e| e.to_string())?;
            fields.sign_with_consent(&issuer, pir_core::identity::UserConsent { key, sig })
        }
    }
    .map_err(|e| e.to_string())?;
    Ok(mapping.to_json_line())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        match cli.verbose {
            0 => "warn,pir_issuer=info",
            _ => "warn,pir_issuer=debug",
        }
        .to_owned()
    });
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the runtime: {e}"))
            .and_then(|rt| rt.block_on(serve(*args))),
        Command::Issue(args) => issue(args).map(|line| println_out(&line)),
        Command::Export { state } => {
            pir_issuer::export(&state)
                .map_err(|e| e.to_string())
                .map(|lines| {
                    for line in lines {
                        println_out(&line);
                    }
                })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn println_out(line: &str) {
    println!("{line}");
}
