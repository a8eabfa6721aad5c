//! `pir-server`: serve a snapshot over gRPC, and the DP's tooling to make one.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use pir_core::{SchemeParams, Snapshot};
use pir_server::{DiscoveryService, ServeOptions, ServerError, tools};

#[derive(Parser)]
#[command(
    version,
    about = "Private discovery lookups over Spiral PIR: server and DP tooling"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a snapshot over gRPC (pir.v1, health, reflection).
    Serve {
        /// The snapshot file.
        #[arg(long)]
        snapshot: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Largest gRPC message, MiB.
        #[arg(long, default_value_t = 32)]
        max_message_mib: usize,
        /// Most queries in one request.
        #[arg(long, default_value_t = 32)]
        max_queries_per_request: u32,
        /// Memory budget of registered client keys, MiB.
        #[arg(long, default_value_t = 2048)]
        key_cache_mib: u64,
        /// Requests answered at once; more get RESOURCE_EXHAUSTED.
        #[arg(long, default_value_t = 64)]
        max_pending: usize,
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
    Build {
        /// Input mappings.
        #[arg(long)]
        mappings: PathBuf,
        /// Trusted issuer public keys (one base64url key a line).
        #[arg(long)]
        trust: PathBuf,
        /// Output snapshot.
        #[arg(long)]
        out: PathBuf,
        /// Leave out invalid lines instead of failing.
        #[arg(long)]
        skip_invalid: bool,
        /// Epoch (default: now, unix seconds).
        #[arg(long)]
        epoch: Option<u64>,
        /// Use the small test-only shape (NOT vetted; for experiments).
        #[arg(long)]
        danger_test_params: bool,
    },
    /// Describe a snapshot file: header, shape, parameters, sizes, packing efficiency.
    Inspect {
        /// The snapshot file.
        snapshot: PathBuf,
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
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn run(command: Command) -> Result<(), ServerError> {
    match command {
        Command::Serve {
            snapshot,
            listen,
            max_message_mib,
            max_queries_per_request,
            key_cache_mib,
            max_pending,
        } => {
            let opts = ServeOptions {
                max_message_bytes: max_message_mib << 20,
                max_queries_per_request,
                key_cache_bytes: key_cache_mib << 20,
                max_pending_answers: max_pending,
            };
            let loaded = Snapshot::load(&snapshot)?;
            tracing::info!(
                epoch = loaded.header().epoch,
                mappings = loaded.header().mapping_count,
                items = loaded.header().scheme.num_items(),
                "snapshot loaded"
            );
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| ServerError::io("starting the runtime", e))?;
            runtime.block_on(async {
                let service = DiscoveryService::new(loaded, opts)?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| ServerError::io(format!("binding {listen}"), e))?;
                tracing::info!(%listen, "serving");
                pir_server::serve(service, listener, async {
                    let _ = tokio::signal::ctrl_c().await;
                    tracing::info!("shutting down");
                })
                .await
            })
        }
        Command::IssuerKeygen { out, force } => {
            let key = tools::issuer_keygen(&out, force)?;
            println!(
                "issuer key {} written to {} (public key: {})",
                key.id(),
                out.display(),
                tools::public_key_path(&out).display()
            );
            Ok(())
        }
        Command::Synth {
            count,
            issuer_key,
            out,
            seed,
        } => {
            let issuer = tools::read_issuer_key(&issuer_key)?;
            let mappings = tools::synth(count, &issuer, seed, pir_core::unix_now());
            tools::write_jsonl(&out, &mappings)?;
            println!("{} mappings written to {}", mappings.len(), out.display());
            Ok(())
        }
        Command::Build {
            mappings,
            trust,
            out,
            skip_invalid,
            epoch,
            danger_test_params,
        } => {
            let summary = tools::build(&tools::BuildArgs {
                mappings,
                trust,
                out: out.clone(),
                skip_invalid,
                epoch,
                scheme: danger_test_params.then(SchemeParams::danger_test_only_small),
                progress: true,
            })?;
            let r = &summary.report;
            if summary.skipped_invalid > 0 {
                println!("skipped {} invalid line(s)", summary.skipped_invalid);
            }
            println!(
                "built {} in {:.1} s: {} mappings stored ({} read, {} expired dropped, {} replaced), \
                 {} items, packing efficiency {:.3}, {:.1} MiB",
                out.display(),
                summary.build_secs,
                r.stored_mappings,
                r.input_mappings,
                r.expired_dropped,
                r.duplicates_replaced,
                summary.header.scheme.num_items(),
                r.packing_efficiency,
                summary.file_bytes as f64 / (1 << 20) as f64
            );
            Ok(())
        }
        Command::Inspect { snapshot } => {
            print!("{}", tools::inspect(&snapshot)?);
            Ok(())
        }
        #[cfg(feature = "demo")]
        Command::Demo { count, dir } => demo::run(count, dir),
    }
}

#[cfg(feature = "demo")]
mod demo;
