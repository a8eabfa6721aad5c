//! `pir-server`: serve a snapshot over gRPC (`pir_server::process`), and the DP's tooling to make
//! one (`pir-dp`). Only flags, logs and dispatch live here.

use std::{io::IsTerminal, path::PathBuf, process::ExitCode};

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use pir_core::{Engine, Scheme, SchemeParams};
use pir_server::{ServerError, process::ProcessError};
use serve_args::ServeArgs;

#[derive(Parser)]
#[command(
    version,
    about = "Private discovery lookups over Spiral PIR: server and DP tooling",
    after_help = EXIT_CODES
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, env = "PIR_LOG_FORMAT")]
    log_format: LogFormat,
    /// More log detail from this program (-v debug, -vv trace); other libraries stay at warn.
    /// RUST_LOG, when set, decides instead (e.g. RUST_LOG=h2=debug).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
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
    /// Trusted issuer public keys: one or more SPKI PEM blocks (issuers' .pub files).
    #[arg(long)]
    trust: PathBuf,
    /// Output snapshot (with `build --shards`: the directory of the shards and manifest; with
    /// `update --manifest`: the new manifest, which may be the old one's path).
    #[arg(long)]
    out: PathBuf,
    /// Leave out invalid lines instead of failing.
    #[arg(long)]
    skip_invalid: bool,
    /// Epoch: must rise above the epoch of the snapshot it follows (an update's --snapshot,
    /// the file --out replaces, build's --replaces), or servers refuse it. Default: now, unix
    /// seconds, or one above those if they are later.
    #[arg(long)]
    epoch: Option<u64>,
    /// Sign the snapshot with this DP key.
    #[arg(long)]
    dp_key: Option<PathBuf>,
    /// The DP's OPRF secret key (from `oprf-keygen`): each CPI's bucket, tags and entry key
    /// come from its OPRF output under this key. An update needs the key the snapshot was
    /// built with; a new key means a full build.
    #[arg(long)]
    oprf_key: PathBuf,
}

/// `--engine`: an engine's name (`spiral`, `ypir-sp`).
fn parse_engine(s: &str) -> Result<Engine, String> {
    s.parse()
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a snapshot over gRPC (pir.v1, health, reflection).
    Serve(Box<ServeArgs>),
    /// Apply a delta (signed mappings to insert or replace, removals) to a snapshot, re-encoding
    /// only the items that change. Layout and parameters stay, so clients' keys stay valid.
    #[command(after_help = EXIT_CODES)]
    #[command(group = clap::ArgGroup::new("base").required(true).args(["snapshot", "manifest"]))]
    Update {
        /// The snapshot to start from.
        #[arg(long)]
        snapshot: Option<PathBuf>,
        /// The manifest of a sharded directory to update instead: the delta is split by shard,
        /// only the shards it names are rewritten (as shard-NNNNN.eEPOCH.pirsnap beside the
        /// old ones), and a new manifest is written to --out.
        #[arg(long, conflicts_with = "snapshot")]
        manifest: Option<PathBuf>,
        /// Delta file: JSON Lines of signed mappings, signed opt-outs ({"opt_out": {...}}) and
        /// removals ({"remove": {"cpi": ..., "msp": ...}}).
        #[arg(long)]
        delta: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
        /// Write a self-contained full snapshot (rewrites the whole database) instead of a delta
        /// that refers to the old snapshot beside it.
        #[arg(long)]
        full: bool,
        /// Refuse to start from a snapshot not signed by a DP key in this file. Required with
        /// --dp-key: what is signed again must have verified first.
        #[arg(long)]
        dp_pub: Option<PathBuf>,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Check a snapshot file completely (structure and checksums, a delta with its base) and,
    /// with --dp-pub, its DP signature; or a shard manifest: its signature, then every shard it
    /// names, completely, and that each is the one it names.
    #[command(after_help = EXIT_CODES)]
    Verify {
        /// The snapshot or manifest file.
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
    /// Generate the DP's OPRF key (RFC 9497 VOPRF, ristretto255-SHA512) in an owner-only file.
    /// Its public key is written into every snapshot built with it; give the file only to
    /// `build`, `update` and the server that answers evaluations (`serve --oprf-key`).
    OprfKeygen {
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
        /// The snapshot this build replaces where it is served (e.g. current.pirsnap), when
        /// --out is a new name: refuse an --epoch not above its epoch.
        #[arg(long, value_name = "SNAPSHOT")]
        replaces: Option<PathBuf>,
        /// The PIR engine: spiral (clients register evaluation keys once, 16 KB queries) or
        /// ypir-sp (no keys on the server: every query carries its own, about 0.5 to 1 MB; a
        /// fraction of Spiral's server time per lookup).
        #[arg(long, default_value = "spiral", value_parser = parse_engine)]
        engine: Engine,
        /// Use the small test-only shape (NOT vetted; for experiments).
        #[arg(long)]
        danger_test_params: bool,
        /// Fill buckets to at most this percent of an item, leaving the rest for updates (a
        /// delta that overflows a bucket is refused: rebuild). Lower means a larger shape
        /// sooner. Default: 98.
        #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=100))]
        fill: Option<u8>,
        /// Split the directory into this many shards by each CPI's OPRF output: --out is then a
        /// directory that receives shard-NNNNN.pirsnap files (one scheme for all, so one client
        /// key set fits every shard) and manifest.pirman, signed with --dp-key.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
        shards: Option<u32>,
        /// Build only this shard (from the whole input), e.g. on one machine of many (a
        /// Kubernetes Indexed Job); needs --epoch, the same on every machine. Assemble the
        /// manifest with `manifest` once every shard is built.
        #[arg(long, requires = "shards")]
        shard_index: Option<u32>,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Assemble and sign the manifest of a sharded directory whose shards were built apart
    /// (`build --shards N --shard-index I`): checks that DIR holds every shard 0..N-1 exactly
    /// once, of one scheme and OPRF key, and writes DIR/manifest.pirman.
    #[command(after_help = EXIT_CODES)]
    Manifest {
        /// The directory of shard-NNNNN.pirsnap files.
        #[arg(long)]
        dir: PathBuf,
        /// Sign the manifest with this DP key (servers and clients with --dp-pub need it).
        #[arg(long)]
        dp_key: Option<PathBuf>,
        /// Where to write it (default: DIR/manifest.pirman).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Describe a snapshot file from its header (shape, parameters, sizes, packing
    /// efficiency), or a shard manifest (its shards, epochs and counts).
    #[command(after_help = EXIT_CODES)]
    Inspect {
        /// The snapshot or manifest file.
        snapshot: PathBuf,
        #[command(flatten)]
        report: ReportArgs,
    },
    /// Write a TLS certificate and key for test deployments: a self-signed leaf certificate,
    /// or with --ca-out a fresh CA and a leaf it issues. Clients trust the leaf (or the CA).
    TlsSelfsigned {
        /// A DNS name or IP address clients connect to (repeat for more).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Where the certificate goes (PEM; give it to serve --tls-cert).
        #[arg(long)]
        cert_out: PathBuf,
        /// Where its private key goes (PEM, owner-only; give it to serve --tls-key).
        #[arg(long)]
        key_out: PathBuf,
        /// Also make a CA that issues the certificate, and write the CA's certificate here.
        #[arg(long)]
        ca_out: Option<PathBuf>,
        /// Days until the certificates expire.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script, e.g. `pir-server completions bash >
    /// /etc/bash_completion.d/pir-server`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `pir-server man | man -l -`; with --out-dir, write one
    /// page per subcommand there (pir-server.1, pir-server-serve.1, ...).
    Man {
        /// Write the pages into this directory instead.
        #[arg(long)]
        out_dir: Option<PathBuf>,
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

/// This program's crates at `level`, every library (h2, hyper, tonic, ...) at warn.
fn project_filter(level: &str) -> String {
    let mut filter = String::from("warn");
    for target in [
        "pir_server",
        "pir_core",
        "pir_dp",
        "pir_proto",
        "pir_client",
    ] {
        filter.push_str(&format!(",{target}={level}"));
    }
    filter
}

/// Logs on stderr, coloured only on a terminal; RUST_LOG, when set, filters instead of `-v`.
fn init_logs(format: LogFormat, verbose: u8, default_level: &str) {
    let level = match verbose {
        0 => default_level,
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(project_filter(level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
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
    init_logs(cli.log_format, cli.verbose, default_level);
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
    #[error(transparent)]
    SelfSigned(#[from] pir_server::SelfSignedError),
}

#[allow(clippy::print_stdout)]
fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve(args) => Ok(pir_server::process::run(args.config())?),
        Command::Update {
            manifest: Some(manifest),
            delta,
            output,
            full,
            dp_pub,
            report,
            ..
        } => {
            let summary = pir_dp::update_sharded(&pir_dp::ShardedUpdateArgs {
                manifest,
                delta,
                trust: output.trust,
                oprf_key: output.oprf_key,
                out: Some(output.out),
                epoch: output.epoch,
                dp_key: output.dp_key,
                dp_pub,
                skip_invalid: output.skip_invalid,
                full,
                progress: true,
            })?;
            Ok(pir_dp::Report::print(&summary, report.json)?)
        }
        Command::Update {
            snapshot,
            delta,
            output,
            full,
            dp_pub,
            report,
            ..
        } => {
            let args = pir_dp::UpdateArgs {
                snapshot: snapshot.unwrap_or_default(),
                delta,
                trust: output.trust,
                out: output.out,
                skip_invalid: output.skip_invalid,
                epoch: output.epoch,
                dp_key: output.dp_key,
                full,
                oprf_key: output.oprf_key,
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
            if pir_dp::is_manifest(&snapshot) {
                let verified = pir_dp::verify_manifest(&snapshot, dp_pub.as_deref(), true)?;
                return Ok(pir_dp::Report::print(&verified, report.json)?);
            }
            let verified = pir_dp::verify(&snapshot, dp_pub.as_deref(), true)?;
            Ok(pir_dp::Report::print(&verified, report.json)?)
        }
        Command::IssuerKeygen { out, force } => {
            let id = pir_dp::issuer_keygen(&out, force)?.id();
            key_written(id, &out);
            Ok(())
        }
        Command::OprfKeygen { out, force } => {
            let key = pir_dp::oprf_keygen(&out, force)?;
            println!(
                "wrote {} (mode 0600): OPRF public key {}",
                out.display(),
                key.public()
            );
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
            replaces,
            engine,
            danger_test_params,
            fill,
            shards,
            shard_index,
            report,
        } => {
            let args = pir_dp::BuildArgs {
                mappings,
                trust: output.trust,
                out: output.out,
                skip_invalid: output.skip_invalid,
                epoch: output.epoch,
                replaces,
                // The small test shape is Spiral's; YPIR+SP's smallest is its first preset.
                scheme: match engine {
                    Engine::Spiral => danger_test_params
                        .then(|| Scheme::Spiral(SchemeParams::danger_test_only_small())),
                    Engine::YpirSp => None,
                },
                engine,
                progress: true,
                dp_key: output.dp_key,
                oprf_key: output.oprf_key,
                fill_percent: fill,
            };
            match shards {
                Some(shards) => {
                    let summary = pir_dp::build_sharded(&pir_dp::ShardedBuildArgs {
                        build: args,
                        shards,
                        shard_index,
                    })?;
                    Ok(pir_dp::Report::print(&summary, report.json)?)
                }
                None => Ok(pir_dp::Report::print(&pir_dp::build(&args)?, report.json)?),
            }
        }
        Command::Manifest {
            dir,
            dp_key,
            out,
            report,
        } => {
            let summary = pir_dp::assemble_manifest(&pir_dp::ManifestArgs { dir, dp_key, out })?;
            Ok(pir_dp::Report::print(&summary, report.json)?)
        }
        Command::Inspect { snapshot, report } => {
            if pir_dp::is_manifest(&snapshot) {
                let description = pir_dp::inspect_manifest(&snapshot)?;
                pir_dp::Report::print(&description, report.json)?;
            } else {
                let description = pir_dp::inspect(&snapshot)?;
                pir_dp::Report::print(&description, report.json)?;
            }
            Ok(())
        }
        Command::TlsSelfsigned {
            hosts,
            cert_out,
            key_out,
            ca_out,
            days,
            force,
        } => {
            let made = pir_server::tls_selfsigned(&pir_server::SelfSignedRequest {
                hosts,
                days,
                ca_out,
                cert_out,
                key_out,
                force,
            })?;
            println!("{made}");
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "pir-server",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man { out_dir } => man(out_dir),
        #[cfg(feature = "demo")]
        Command::Demo { count, dir } => demo::run(count, dir),
    }
}

/// `pir-server man`: the top page on stdout, or every page into `out_dir`.
fn man(out_dir: Option<PathBuf>) -> Result<(), CliError> {
    let command = Cli::command();
    match out_dir {
        Some(dir) => clap_mangen::generate_to(command, &dir)
            .map_err(|e| ServerError::io(format!("writing man pages to {}", dir.display()), e))?,
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .map_err(|e| ServerError::io("writing the man page", e))?,
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn key_written(id: pir_core::identity::IssuerId, out: &std::path::Path) {
    println!(
        "key {id} written to {} (public key: {})",
        out.display(),
        pir_dp::public_key_path(out).display()
    );
}

#[cfg(feature = "demo")]
mod demo;
mod serve_args;
