//! `pir-server`: serve a snapshot over gRPC (`pir_server::process`), and the DP's tooling to make
//! one (`pir-dp`). Only flags, logs and dispatch live here.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand, ValueEnum};
use pir_core::SchemeParams;
use pir_server::{
    RateLimit, ServeOptions, ServerError,
    process::{ProcessError, ServeConfig, TlsFiles},
};

#[derive(Parser)]
#[command(
    version,
    about = "Private discovery lookups over Spiral PIR: server and DP tooling",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How `build`, `update`, `verify` and `inspect` report.
#[derive(Args)]
struct ReportArgs {
    /// Print one JSON object on stdout instead of text (errors still go to stderr, as text).
    #[arg(long)]
    json: bool,
}

/// What `build` and `update` share: what to trust, where to write, how strict to be.
#[derive(Args)]
struct OutputArgs {
    /// Trusted issuer public keys (one base64url key a line).
    #[arg(long)]
    trust: PathBuf,
    /// Output snapshot.
    #[arg(long)]
    out: PathBuf,
    /// Leave out invalid lines instead of failing.
    #[arg(long)]
    skip_invalid: bool,
    /// Epoch (default: now, unix seconds; for an update at least the old epoch + 1).
    #[arg(long)]
    epoch: Option<u64>,
    /// Sign the snapshot with this DP key.
    #[arg(long)]
    dp_key: Option<PathBuf>,
}

/// The flags of `serve`. Every default of a [`ServeOptions`] field is read from
/// [`ServeOptions::default`], never restated here.
#[derive(Args)]
struct ServeArgs {
    /// The snapshot file.
    #[arg(long)]
    snapshot: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Largest gRPC message, MiB.
    #[arg(long, default_value_t = ServeOptions::default().max_message_bytes >> 20)]
    max_message_mib: usize,
    /// Most queries in one request.
    #[arg(long, default_value_t = ServeOptions::default().max_queries_per_request)]
    max_queries_per_request: u32,
    /// Memory budget of registered client keys, MiB.
    #[arg(long, default_value_t = ServeOptions::default().key_cache_bytes >> 20)]
    key_cache_mib: u64,
    /// Requests queued or being answered at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = ServeOptions::default().max_pending_answers)]
    max_pending: usize,
    /// Most queries answered together in one pass over the database, across requests
    /// (about 20 MiB of working memory each at 1M mappings). A larger request is answered
    /// alone, in passes of at most this many.
    #[arg(long, default_value_t = ServeOptions::default().max_batch_queries)]
    max_batch: usize,
    /// Refuse snapshots (at start and on reload) not signed by a key in this file.
    #[arg(long)]
    dp_pub: Option<PathBuf>,
    /// Address of the Admin service (hot reload). Only started with --admin-token-file.
    #[arg(long, default_value = "127.0.0.1:50052")]
    admin_listen: SocketAddr,
    /// File holding the admin bearer token (at least 16 characters).
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
    /// Seconds a request may take before DEADLINE_EXCEEDED.
    #[arg(long, default_value_t = ServeOptions::default().request_timeout.as_secs())]
    request_timeout_secs: u64,
    /// PIR queries per registered key: BURST/PER_HOUR, or `off`.
    #[arg(
        long,
        default_value_t = RateArg(ServeOptions::default().per_key_rate),
        value_parser = parse_rate
    )]
    key_rate: RateArg,
    /// PIR queries per peer address: BURST/PER_HOUR, or `off`.
    #[arg(
        long,
        default_value_t = RateArg(ServeOptions::default().per_peer_rate),
        value_parser = parse_rate
    )]
    peer_rate: RateArg,
    /// Key registrations per peer address: BURST/PER_HOUR, or `off`.
    #[arg(
        long,
        default_value_t = RateArg(ServeOptions::default().per_peer_registrations),
        value_parser = parse_rate
    )]
    registration_rate: RateArg,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// PEM certificate chain: serve over TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (loopback needs no flag).
    #[arg(long, conflicts_with = "tls_cert")]
    plaintext: bool,
}

impl ServeArgs {
    /// What these flags ask the serve process to do.
    fn config(self) -> ServeConfig {
        ServeConfig {
            options: self.options(),
            snapshot: self.snapshot,
            listen: self.listen,
            dp_pub: self.dp_pub,
            admin_listen: self.admin_listen,
            admin_token_file: self.admin_token_file,
            metrics_listen: self.metrics_listen,
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
            plaintext: self.plaintext,
        }
    }

    /// The server's limits these flags ask for.
    fn options(&self) -> ServeOptions {
        ServeOptions {
            max_message_bytes: self.max_message_mib << 20,
            max_queries_per_request: self.max_queries_per_request,
            key_cache_bytes: self.key_cache_mib << 20,
            max_pending_answers: self.max_pending,
            max_batch_queries: self.max_batch,
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            per_key_rate: self.key_rate.0,
            per_peer_rate: self.peer_rate.0,
            per_peer_registrations: self.registration_rate.0,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a snapshot over gRPC (pir.v1, health, reflection).
    Serve(ServeArgs),
    /// Apply a delta (signed mappings to insert or replace, removals) to a snapshot, re-encoding
    /// only the items that change. Layout and parameters stay, so clients' keys stay valid.
    #[command(after_help = EXIT_CODES)]
    Update {
        /// The snapshot to start from.
        #[arg(long)]
        snapshot: PathBuf,
        /// Delta file: JSON Lines of signed mappings and {"remove": {"cpi": ..., "msp": ...}}.
        #[arg(long)]
        delta: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
        /// Write a self-contained full snapshot (rewrites the whole database) instead of a delta
        /// that refers to the old snapshot beside it.
        #[arg(long)]
        full: bool,
        /// Refuse to start from a snapshot not signed by a DP key in this file.
        #[arg(long)]
        dp_pub: Option<PathBuf>,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Check a snapshot file completely (structure and checksums, a delta with its base) and,
    /// with --dp-pub, its DP signature.
    #[command(after_help = EXIT_CODES)]
    Verify {
        /// The snapshot file.
        snapshot: PathBuf,
        /// Trusted DP public keys: refuse a snapshot not signed by one. Without it the signature
        /// is not checked (and the report says so).
        #[arg(long)]
        dp_pub: Option<PathBuf>,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Generate a DP signing key (owner-only file) and its public key beside it (.pub).
    DpKeygen {
        /// Secret key file to create.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Generate an Ed25519 issuer key (owner-only file) and its public key beside it (.pub).
    IssuerKeygen {
        /// Secret key file to create.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Generate realistic synthetic signed mappings (JSON Lines).
    Synth {
        /// Number of mappings.
        #[arg(long)]
        count: usize,
        /// Issuer secret key that signs them.
        #[arg(long)]
        issuer_key: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// RNG seed (same seed, same CPIs).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Build a snapshot from a JSON Lines file of signed mappings.
    #[command(after_help = EXIT_CODES)]
    Build {
        /// Input mappings.
        #[arg(long)]
        mappings: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
        /// Use the small test-only shape (NOT vetted; for experiments).
        #[arg(long)]
        danger_test_params: bool,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Describe a snapshot file from its header: shape, parameters, sizes, packing efficiency.
    #[command(after_help = EXIT_CODES)]
    Inspect {
        /// The snapshot file.
        snapshot: PathBuf,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Run the whole flow on loopback: keys, synthetic mappings, build, serve, private lookups.
    #[cfg(feature = "demo")]
    Demo {
        /// Number of synthetic mappings.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Keep the generated files in this directory (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn init_logs(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo narrates on stdout; per-request logs would bury it (RUST_LOG still overrides).
    #[cfg(feature = "demo")]
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    #[cfg(not(feature = "demo"))]
    let default_level = "info";
    init_logs(cli.log_format, default_level);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// The exit codes, as `--help` lists them.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error: the command could not do its job (a file missing, unreadable or unwritable, a bad
     key file, invalid input lines, a refused option)
  2  usage: the command line is wrong (an unknown flag, a missing argument)
  3  refused: a snapshot that update, verify or inspect read failed verification (damaged:
     structure or checksums, or a delta whose base is not the file it was made from; or not
     signed by a DP key in --dp-pub)";

/// Exit code 3 of [`EXIT_CODES`].
const EXIT_REFUSED: u8 = 3;

impl CliError {
    /// This error's exit code (see [`EXIT_CODES`]; clap exits with 2 itself).
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Dp(e) if e.is_refusal() => ExitCode::from(EXIT_REFUSED),
            _ => ExitCode::FAILURE,
        }
    }
}

/// What a subcommand can fail with: the DP tooling's errors, the serve process's, or (the demo)
/// the server's and the engine's.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Dp(#[from] pir_dp::DpError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Core(#[from] pir_core::CoreError),
}

#[allow(clippy::print_stdout)]
fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve(args) => Ok(pir_server::process::run(args.config())?),
        Command::Update {
            snapshot,
            delta,
            output,
            full,
            dp_pub,
            report,
        } => {
            let args = pir_dp::UpdateArgs {
                snapshot,
                delta,
                trust: output.trust,
                out: output.out,
                skip_invalid: output.skip_invalid,
                epoch: output.epoch,
                dp_key: output.dp_key,
                full,
            };
            let run = pir_dp::UpdateRun {
                dp_pub,
                progress: true,
            };
            let summary = pir_dp::update_with(&args, &run)?;
            Ok(pir_dp::Report::print(&summary, report.json)?)
        }
        Command::Verify {
            snapshot,
            dp_pub,
            report,
        } => {
            let verified = pir_dp::verify(&snapshot, dp_pub.as_deref(), true)?;
            Ok(pir_dp::Report::print(&verified, report.json)?)
        }
        Command::IssuerKeygen { out, force } => {
            let id = pir_dp::issuer_keygen(&out, force)?.id();
            key_written(id, &out);
            Ok(())
        }
        Command::DpKeygen { out, force } => {
            let id = pir_dp::dp_keygen(&out, force)?.id();
            key_written(id, &out);
            Ok(())
        }
        Command::Synth {
            count,
            issuer_key,
            out,
            seed,
        } => {
            let args = pir_dp::SynthArgs {
                count,
                issuer_key,
                out,
                seed,
                progress: true,
            };
            Ok(pir_dp::Report::print(
                &pir_dp::synth_to_file(&args)?,
                false,
            )?)
        }
        Command::Build {
            mappings,
            output,
            danger_test_params,
            report,
        } => {
            let summary = pir_dp::build(&pir_dp::BuildArgs {
                mappings,
                trust: output.trust,
                out: output.out,
                skip_invalid: output.skip_invalid,
                epoch: output.epoch,
                scheme: danger_test_params.then(SchemeParams::danger_test_only_small),
                progress: true,
                dp_key: output.dp_key,
            })?;
            Ok(pir_dp::Report::print(&summary, report.json)?)
        }
        Command::Inspect { snapshot, report } => {
            let description = pir_dp::inspect(&snapshot)?;
            pir_dp::Report::print(&description, report.json)?;
            Ok(())
        }
        #[cfg(feature = "demo")]
        Command::Demo { count, dir } => demo::run(count, dir),
    }
}

#[allow(clippy::print_stdout)]
fn key_written(id: pir_core::identity::IssuerId, out: &std::path::Path) {
    println!(
        "key {id} written to {} (public key: {})",
        out.display(),
        pir_dp::public_key_path(out).display()
    );
}

/// A rate limit from the command line; `off` is `None`.
#[derive(Clone, Copy, Debug)]
struct RateArg(Option<RateLimit>);

impl std::fmt::Display for RateArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(rate) => write!(f, "{rate}"),
            None => f.write_str("off"),
        }
    }
}

fn parse_rate(text: &str) -> Result<RateArg, String> {
    if text == "off" {
        return Ok(RateArg(None));
    }
    let (burst, per_hour) = text
        .split_once('/')
        .ok_or_else(|| "expected BURST/PER_HOUR or off".to_string())?;
    let n = |s: &str| s.trim().parse::<u32>().map_err(|e| format!("{s:?}: {e}"));
    let rate = RateLimit {
        burst: n(burst)?,
        per_hour: n(per_hour)?,
    };
    if rate.burst == 0 || rate.per_hour == 0 {
        return Err("burst and rate must be positive (or say off)".into());
    }
    Ok(RateArg(Some(rate)))
}

#[cfg(feature = "demo")]
mod demo;

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn serve_defaults_are_the_options_defaults() {
        let cli = Cli::try_parse_from(["pir-server", "serve", "--snapshot", "db.pirsnap"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.options(), ServeOptions::default());
    }

    #[test]
    fn cli_is_consistent_and_serve_flags_parse() {
        Cli::command().debug_assert();
        for args in [
            vec!["pir-server", "serve", "--snapshot", "db.pirsnap"],
            vec![
                "pir-server",
                "serve",
                "--snapshot",
                "db.pirsnap",
                "--key-rate",
                "off",
                "--peer-rate",
                "10/100",
                "--max-batch",
                "16",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let Command::Serve(ServeArgs {
                key_rate,
                peer_rate,
                max_batch,
                ..
            }) = cli.command
            else {
                panic!("not serve");
            };
            assert!(key_rate.0.is_none() || key_rate.0.is_some_and(|r| r.burst == 200));
            assert!(peer_rate.0.is_some());
            assert!(max_batch == ServeOptions::default().max_batch_queries || max_batch == 16);
        }
        assert!(
            Cli::try_parse_from(["pir-server", "serve", "--snapshot", "x", "--key-rate", "5"])
                .is_err()
        );
        for rate in ["off", "3/7"] {
            let cli =
                Cli::try_parse_from(["pir-server", "serve", "--snapshot", "x", "--key-rate", rate])
                    .unwrap();
            let Command::Serve(args) = cli.command else {
                panic!("not serve");
            };
            assert_eq!(
                args.key_rate.to_string(),
                rate,
                "a rate prints as it parses"
            );
        }
        assert!(
            Cli::try_parse_from(["pir-server", "serve", "--snapshot", "x", "--tls-cert", "c"])
                .is_err()
        );
    }
}
