//! `pir-client`: private discovery lookups from the command line.
//!
//! Parses arguments and calls the library; logs go to stderr, results to stdout. Besides
//! lookups, the MSP operator's side of enrollment with an ID prover (`msp-keygen`,
//! `user-keygen`, `enroll start|complete|run|revoke`; `pir_client::enroll`).

use std::{
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use clap::{Args, Parser, Subcommand};
use pir_client::{
    ClientOptions, ShardMap, ShardPrivacy, ShardedClient,
    enroll::{EnrollError, ProverClient, ProverOptions, Started},
};
use pir_core::{
    CoreError, Cpi, DpKeys, Mapping, TrustStore,
    identity::{MspKey, UserKey},
};
use tracing_subscriber::EnvFilter;

/// What the exit status says, shown in `--help`.
const EXIT_CODES: &str = "Exit codes: 0 every lookup answered (found or not); 1 a lookup failed \
or the server could not be reached or used (bench: every lookup failed; keygen and enroll: it \
failed or the ID prover refused); 2 usage error.";

/// Private discovery lookups: which messaging providers can reach a phone number or an email
/// address, asked so that the server cannot tell which one.
#[derive(Debug, Parser)]
#[command(name = "pir-client", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// More logging on stderr (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Looks up CPIs privately and prints their verified mappings.
    Lookup(LookupArgs),
    /// Prints the server's configuration: epoch, database shape, message sizes.
    Info(InfoArgs),
    /// Load generator: concurrent clients look up random CPIs; prints lookups/s and latency.
    Bench(BenchArgs),
    /// Generates the MSP's Ed25519 key, which signs its requests to an ID prover: the secret
    /// (owner-only file) and its public key beside it (.pub), for the prover's operator.
    MspKeygen(KeygenArgs),
    /// Generates a user's Ed25519 key (secret and .pub), with which a user counter-signs their
    /// mapping; for demonstrations and tests: a real user's key stays on their device.
    UserKeygen(KeygenArgs),
    /// Enrolls a CPI with an ID prover, which proves with a one-time code that the user holds
    /// it and issues the signed mapping to this MSP; or revokes a mapping.
    #[command(subcommand)]
    Enroll(EnrollCommand),
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Secret key file to create (mode 0600); the public key is written beside it, with the
    /// extension .pub (mode 0644).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Overwrite an existing key file (the key in it is lost).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Subcommand)]
enum EnrollCommand {
    /// Starts an enrollment: the ID prover sends a one-time code to the CPI; the enrollment is
    /// saved (--save) for `enroll complete`.
    Start(StartArgs),
    /// Completes a saved enrollment with the code the user received; prints the issued mapping
    /// (one JSON line) or appends it to --out.
    Complete(CompleteArgs),
    /// Starts an enrollment, asks for the code on the terminal (again after a wrong one, while
    /// attempts remain) and completes it.
    Run(RunArgs),
    /// Withdraws this MSP's mapping of a CPI: the prover records a removal for the DP.
    Revoke(RevokeArgs),
    /// The user withdraws their own mapping, signed with the user key it carries, without the
    /// MSP: the prover records a removal for the DP.
    Withdraw(WithdrawArgs),
}

/// How to reach the ID prover.
#[derive(Debug, Args)]
struct ProverArgs {
    /// The ID prover's address: https://HOST:PORT, or HOST:PORT (TLS too); http://HOST:PORT
    /// (plaintext) only to a loopback address unless --insecure-plaintext.
    #[arg(long, value_name = "URL")]
    issuer: String,
    /// PEM CA certificate for an https:// prover (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Allow plaintext http:// to an address that is not loopback (anyone on the path could
    /// pose as the prover, and read the CPIs and codes).
    #[arg(long)]
    insecure_plaintext: bool,
    /// Seconds to wait for the connection, and for each answer from the prover (sending a code
    /// takes it a mail or an SMS gateway's answer).
    #[arg(long, value_name = "SECS", default_value_t = pir_client::DEFAULT_REQUEST_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

impl ProverArgs {
    fn options(&self) -> ProverOptions {
        let timeout = Duration::from_secs(self.timeout);
        ProverOptions {
            tls_ca: self.ca.clone(),
            insecure_plaintext: self.insecure_plaintext,
            connect_timeout: Some(timeout.min(pir_client::enroll::DEFAULT_CONNECT_TIMEOUT)),
            request_timeout: Some(timeout),
        }
    }

    async fn connect(&self) -> Result<ProverClient, ExitCode> {
        ProverClient::connect(&self.issuer, &self.options())
            .await
            .map_err(|e| fail(&e))
    }
}

/// The MSP that signs.
#[derive(Debug, Args)]
struct MspArgs {
    /// The MSP's domain, e.g. chat.example: the prover holds its public key as
    /// <DOMAIN>.pub in its --msp-keys directory, and the mapping names it.
    #[arg(long, value_name = "DOMAIN")]
    msp: String,
    /// The MSP's secret key file, written by msp-keygen (mode 0600: refused when group or
    /// others may read it).
    #[arg(long, value_name = "FILE")]
    msp_key: PathBuf,
}

/// The mapping asked for.
#[derive(Debug, Args)]
struct MappingArgs {
    /// The CPI to enroll, where the prover sends the code: tel:+14155550100 (E.164) or
    /// mailto:alice@example.com.
    #[arg(long, value_name = "CPI", value_parser = parse_cpi)]
    cpi: Cpi,
    /// The user's identifier at the MSP (e.g. @alice:chat.example), carried in the mapping.
    #[arg(long, value_name = "PSI")]
    psi: Option<String>,
    /// A context label carried in the mapping (e.g. work, personal).
    #[arg(long, value_name = "LABEL")]
    context: Option<String>,
    /// The user's secret key file (from user-keygen): the mapping then carries the user's
    /// consent, signed with it at completion.
    #[arg(long, value_name = "FILE")]
    user_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct StartArgs {
    #[command(flatten)]
    prover: ProverArgs,
    #[command(flatten)]
    msp: MspArgs,
    #[command(flatten)]
    mapping: MappingArgs,
    /// Where to save the enrollment (JSON, mode 0600, replaced if it exists), which `enroll
    /// complete --enrollment` reads.
    #[arg(long, value_name = "FILE")]
    save: PathBuf,
}

#[derive(Debug, Args)]
struct CompleteArgs {
    #[command(flatten)]
    prover: ProverArgs,
    #[command(flatten)]
    msp: MspArgs,
    /// The enrollment file written by `enroll start --save`.
    #[arg(long, value_name = "FILE")]
    enrollment: PathBuf,
    /// The code the user received (spaces and dashes are ignored by the prover).
    #[arg(long, value_name = "CODE")]
    code: String,
    /// The user's secret key file, when the enrollment was started with --user-key.
    #[arg(long, value_name = "FILE")]
    user_key: Option<PathBuf>,
    /// Append the mapping to this file (JSON Lines, created with mode 0640) instead of
    /// printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    prover: ProverArgs,
    #[command(flatten)]
    msp: MspArgs,
    #[command(flatten)]
    mapping: MappingArgs,
    /// Append the mapping to this file (JSON Lines, created with mode 0640) instead of
    /// printing it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    #[command(flatten)]
    prover: ProverArgs,
    #[command(flatten)]
    msp: MspArgs,
    /// The CPI whose mapping to this MSP is withdrawn.
    #[arg(long, value_name = "CPI", value_parser = parse_cpi)]
    cpi: Cpi,
}

#[derive(Debug, Args)]
struct WithdrawArgs {
    #[command(flatten)]
    prover: ProverArgs,
    /// The MSP the mapping names.
    #[arg(long, value_name = "DOMAIN")]
    msp: String,
    /// The CPI whose mapping is withdrawn.
    #[arg(long, value_name = "CPI", value_parser = parse_cpi)]
    cpi: Cpi,
    /// The user's secret key file (from user-keygen): the key the mapping carries.
    #[arg(long, value_name = "FILE")]
    user_key: PathBuf,
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Server address: https://HOST:PORT, or HOST:PORT (TLS too); http://HOST:PORT
    /// (plaintext) only to a loopback address unless --insecure-plaintext.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The DP's OPRF evaluator (same forms as --server), when --server is a PIR host that does
    /// not hold the OPRF key. Default: --server evaluates too. The keys are registered with
    /// both. Repeat for more evaluators, tried in order when one fails (unreachable,
    /// UNAVAILABLE, past --timeout), each attempt blinded afresh.
    #[arg(long, value_name = "URL")]
    evaluator: Vec<String>,
    /// Seconds to wait for the connection.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    connect_timeout: u64,
    /// Seconds to wait for each answer from the server (a query's answer scans the whole
    /// database); past it the RPC fails with a clear error.
    #[arg(long, value_name = "SECS", default_value_t = pir_client::DEFAULT_REQUEST_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// PEM CA certificate for an https:// server (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The DP's public key file: the snapshot the server serves must be signed by it, match
    /// the configuration, and not be older than the newest one verified (remembered in
    /// --key-file). Without it none of this is checked (mappings are still verified).
    #[arg(long, value_name = "FILE")]
    dp_pub: Option<PathBuf>,
    /// Allow plaintext http:// to an address that is not loopback (anyone on the path could
    /// pose as the server).
    #[arg(long)]
    insecure_plaintext: bool,
    /// For test and research servers only: accept scheme parameters that are not one of the
    /// vetted presets (their security and failure probability are unknown).
    #[arg(long)]
    allow_custom_params: bool,
    /// Print JSON (one object per line) instead of text.
    #[arg(long)]
    json: bool,
}

impl ServerArgs {
    /// Client options for these arguments, trusting `trust`; a DP key file that does not read
    /// is an error naming --dp-pub.
    fn options(&self, trust: TrustStore) -> Result<ClientOptions, ExitCode> {
        let dp_keys = match &self.dp_pub {
            Some(path) => Some(DpKeys::from_file(path).map_err(|e| {
                eprintln!("error: --dp-pub {}: {e}", path.display());
                ExitCode::FAILURE
            })?),
            None => None,
        };
        Ok(ClientOptions {
            connect_timeout: Some(Duration::from_secs(self.connect_timeout)),
            request_timeout: Some(Duration::from_secs(self.timeout)),
            tls_ca: self.ca.clone(),
            dp_keys,
            insecure_plaintext: self.insecure_plaintext,
            allow_custom_params: self.allow_custom_params,
            ..ClientOptions::new(trust).with_evaluators(self.evaluator.clone())
        })
    }
}

/// How lookups reach a sharded directory's shards (unused against an unsharded server).
#[derive(Debug, Args)]
struct ShardArgs {
    /// URL of every shard's endpoint, `{i}` standing for the shard's index, e.g.
    /// 'https://pir-shard-{i}.discovery.svc:50051' (a name that resolves to all the shard's
    /// replicas); repeat for replicas at other names. Default: --server serves every shard.
    #[arg(long, value_name = "PATTERN", conflicts_with = "shard_map")]
    shard_endpoints: Vec<String>,
    /// File naming each shard's endpoints, one line per shard: `INDEX URL [URL...]` (several
    /// URLs: replicas), `#` comments.
    #[arg(long, value_name = "FILE")]
    shard_map: Option<PathBuf>,
    /// shard: each CPI is queried in its own shard only, and the servers learn which shard
    /// (log2 of the shard count bits of the CPI's OPRF output, not the CPI); all-shards: each
    /// CPI is queried in every shard (shard-count times the cost), nothing learnt from routing.
    #[arg(long, value_name = "MODE", default_value_t = ShardPrivacy::Shard)]
    shard_privacy: ShardPrivacy,
    /// In shard mode, pad a batch with cover queries so that every shard gets as many queries
    /// as the busiest one; without it the servers see how many of the batch's CPIs fall in
    /// each shard.
    #[arg(long)]
    pad_shards: bool,
    /// Most attempts of one query across its shard's replicas (an unavailable replica is
    /// left for the next).
    #[arg(long, value_name = "N", default_value_t = pir_client::DEFAULT_SHARD_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..))]
    shard_attempts: u32,
}

impl ShardArgs {
    /// `options` with these flags; a shard map that does not read is an error naming it.
    fn apply(&self, options: ClientOptions) -> Result<ClientOptions, ExitCode> {
        let fail = |e: pir_client::ShardMapError| {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        };
        let shard_map = match (&self.shard_map, self.shard_endpoints.is_empty()) {
            (Some(path), _) => Some(ShardMap::from_file(path).map_err(fail)?),
            (None, false) => Some(ShardMap::patterns(self.shard_endpoints.clone()).map_err(fail)?),
            (None, true) => None,
        };
        Ok(ClientOptions {
            shard_map,
            shard_privacy: self.shard_privacy,
            pad_shards: self.pad_shards,
            shard_attempts: self.shard_attempts,
            ..options
        })
    }
}

#[derive(Debug, Args)]
struct LookupArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    shards: ShardArgs,
    /// Trusted issuer public keys: one or more SPKI PEM blocks (issuers' .pub files).
    #[arg(long, value_name = "FILE")]
    trust: PathBuf,
    /// Keeps the client keys between runs (created with mode 0600), saving key generation
    /// and upload; with --dp-pub it also remembers the newest snapshot verified.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Generates and registers fresh keys (replacing those in --key-file), so the server cannot
    /// link these lookups to earlier ones by key id; costs one key upload.
    #[arg(long)]
    rotate_keys: bool,
    /// CPIs to look up: tel:+14155550100 (E.164) or mailto:Alice@example.com (the part before @
    /// is case-sensitive; the domain is not, and may be internationalised).
    #[arg(value_name = "CPI", required = true, value_parser = parse_cpi)]
    cpis: Vec<Cpi>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Concurrent clients (sharing one set of keys).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Trusted issuer keys, to verify the mappings of CPIs that are found.
    #[arg(long, value_name = "FILE")]
    trust: Option<PathBuf>,
    /// CPIs to look up, one per line (e.g. those of the served mappings); random CPIs, almost
    /// all absent, without it. Needs --trust, to verify what is found.
    #[arg(long, value_name = "FILE", requires = "trust")]
    cpis: Option<PathBuf>,
}

/// Reads a CPI list: one per line, blank lines skipped; a bad line is an error with its number.
fn read_cpis(path: &std::path::Path) -> Result<Vec<Cpi>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            Cpi::parse(line.trim()).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))
        })
        .collect()
}

#[derive(Debug, Args)]
struct InfoArgs {
    #[command(flatten)]
    server: ServerArgs,
}

fn parse_cpi(s: &str) -> Result<Cpi, CoreError> {
    Cpi::parse(s)
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

/// Writes a line to stdout; a closed pipe (`| head`) ends the program quietly.
fn emit(line: &str) -> Result<(), ExitCode> {
    match writeln!(io::stdout().lock(), "{line}") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Reports an error on stderr: the failure exit status.
fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// Reports an error about the file a flag named: `error: --save FILE: ...`.
fn fail_flag(flag: &'static str) -> impl Fn(EnrollError) -> ExitCode {
    move |e| match e {
        EnrollError::File { .. } => fail(&format_args!("{flag} {e}")),
        other => fail(&other),
    }
}

/// The role of a key pair `keygen` writes.
#[derive(Clone, Copy, Debug)]
enum KeyRole {
    Msp,
    User,
}

fn keygen(args: &KeygenArgs, role: KeyRole) -> Result<ExitCode, ExitCode> {
    let public = pir_client::enroll::public_key_path(&args.out);
    let (out, public) = (args.out.display(), public.display());
    match role {
        KeyRole::Msp => {
            let key = pir_client::enroll::msp_keygen(&args.out, args.force)
                .map_err(fail_flag("--out"))?;
            emit(&format!(
                "MSP key {} written to {out} (mode 0600: keep it secret, give it with --msp-key)",
                key.id()
            ))?;
            emit(&format!(
                "public key written to {public}: give it to the ID prover's operator, who keeps \
                 it as <msp-domain>.pub (e.g. chat.example.pub) in the prover's --msp-keys \
                 directory"
            ))?;
        }
        KeyRole::User => {
            pir_client::enroll::user_keygen(&args.out, args.force).map_err(fail_flag("--out"))?;
            emit(&format!(
                "user key written to {out} (mode 0600; give it with --user-key) and its public \
                 key to {public}; a real user's key stays on their device"
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The keys an enrollment command signs with: the MSP's, and the user's if given.
fn read_keys(
    msp: &MspArgs,
    user_key: Option<&std::path::Path>,
) -> Result<(MspKey, Option<UserKey>), ExitCode> {
    let key = pir_client::enroll::read_msp_key(&msp.msp_key).map_err(|e| fail(&e))?;
    let user = user_key
        .map(pir_client::enroll::read_user_key)
        .transpose()
        .map_err(|e| fail(&e))?;
    Ok((key, user))
}

/// What the prover said when it sent the code.
fn code_sent(started: &Started) -> String {
    format!(
        "A code was sent to {}; it expires at {} ({} attempts)",
        started.cpi(),
        pir_client::timestamp(started.code_expires_at()),
        started.attempts()
    )
}

/// Prints the issued mapping's line, or appends it to `out`.
fn issued(mapping: &Mapping, out: Option<&std::path::Path>) -> Result<(), ExitCode> {
    match out {
        None => emit(&mapping.to_json_line()),
        Some(path) => {
            pir_client::enroll::append_mapping(path, mapping).map_err(fail_flag("--out"))?;
            emit(&format!(
                "the mapping of {} to {} was appended to {}",
                mapping.fields.cpi,
                mapping.fields.msp,
                path.display()
            ))
        }
    }
}

async fn enroll(command: EnrollCommand) -> Result<ExitCode, ExitCode> {
    match command {
        EnrollCommand::Start(args) => enroll_start(args).await,
        EnrollCommand::Complete(args) => enroll_complete(args).await,
        EnrollCommand::Run(args) => enroll_run(args).await,
        EnrollCommand::Revoke(args) => enroll_revoke(args).await,
        EnrollCommand::Withdraw(args) => enroll_withdraw(args).await,
    }
}

async fn start(
    prover: &ProverClient,
    msp: &MspArgs,
    key: &MspKey,
    mapping: &MappingArgs,
    user: Option<&UserKey>,
) -> Result<Started, ExitCode> {
    prover
        .start(
            &msp.msp,
            key,
            &mapping.cpi,
            mapping.psi.as_deref(),
            mapping.context.as_deref(),
            user,
        )
        .await
        .map_err(|e| fail(&e))
}

async fn enroll_start(args: StartArgs) -> Result<ExitCode, ExitCode> {
    let (key, user) = read_keys(&args.msp, args.mapping.user_key.as_deref())?;
    // Before the code goes out, so that the enrollment has somewhere to go.
    pir_client::enroll::check_output_dir(&args.save).map_err(fail_flag("--save"))?;
    let prover = args.prover.connect().await?;
    let started = start(&prover, &args.msp, &key, &args.mapping, user.as_ref()).await?;
    started.save(&args.save).map_err(fail_flag("--save"))?;
    emit(&format!("{}.", code_sent(&started)))?;
    let user_key = match &args.mapping.user_key {
        Some(path) => format!(" --user-key {}", path.display()),
        None => String::new(),
    };
    emit(&format!(
        "Enrollment saved to {save}; complete it with: pir-client enroll complete --issuer {} \
         --msp {} --msp-key {} --enrollment {save} --code CODE{user_key}",
        prover.address(),
        started.msp(),
        args.msp.msp_key.display(),
        save = args.save.display(),
    ))?;
    Ok(ExitCode::SUCCESS)
}

async fn enroll_complete(args: CompleteArgs) -> Result<ExitCode, ExitCode> {
    let (key, user) = read_keys(&args.msp, args.user_key.as_deref())?;
    let started = Started::load(&args.enrollment).map_err(fail_flag("--enrollment"))?;
    if let Some(out) = &args.out {
        pir_client::enroll::check_output_dir(out).map_err(fail_flag("--out"))?;
    }
    let prover = args.prover.connect().await?;
    let mapping = prover
        .complete(
            &args.msp.msp,
            &key,
            &started,
            args.code.trim(),
            user.as_ref(),
        )
        .await
        .map_err(|e| fail(&e))?;
    issued(&mapping, args.out.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// Reads one line from stdin off the runtime; `None` at the end of input.
async fn read_code() -> Result<Option<String>, ExitCode> {
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        io::stdin()
            .read_line(&mut line)
            .map(|n| (n > 0).then_some(line))
    })
    .await
    .map_err(|e| fail(&e))?
    .map_err(|e| fail(&format_args!("reading the code from stdin: {e}")))?;
    Ok(line.map(|l| l.trim().to_owned()))
}

async fn enroll_run(args: RunArgs) -> Result<ExitCode, ExitCode> {
    let (key, user) = read_keys(&args.msp, args.mapping.user_key.as_deref())?;
    if let Some(out) = &args.out {
        pir_client::enroll::check_output_dir(out).map_err(fail_flag("--out"))?;
    }
    let prover = args.prover.connect().await?;
    let started = start(&prover, &args.msp, &key, &args.mapping, user.as_ref()).await?;
    eprintln!("{}; type it here:", code_sent(&started));
    loop {
        let Some(code) = read_code().await? else {
            return Err(fail(&"no code was typed (end of input)"));
        };
        if code.is_empty() {
            eprintln!("type the code sent to {}:", started.cpi());
            continue;
        }
        match prover
            .complete(&args.msp.msp, &key, &started, &code, user.as_ref())
            .await
        {
            Ok(mapping) => {
                issued(&mapping, args.out.as_deref())?;
                return Ok(ExitCode::SUCCESS);
            }
            // Asked again while attempts remain (or the prover did not say how many).
            Err(e @ EnrollError::WrongCode { attempts_left }) if attempts_left != Some(0) => {
                eprintln!("{e}; type it again:");
            }
            Err(e) => return Err(fail(&e)),
        }
    }
}

async fn enroll_revoke(args: RevokeArgs) -> Result<ExitCode, ExitCode> {
    let (key, _) = read_keys(&args.msp, None)?;
    let prover = args.prover.connect().await?;
    let revoked = prover
        .revoke(&args.msp.msp, &key, &args.cpi)
        .await
        .map_err(|e| fail(&e))?;
    if revoked {
        emit(&format!(
            "the mapping of {} to {} was withdrawn",
            args.cpi, args.msp.msp
        ))?;
    } else {
        emit(&format!(
            "the prover had issued no mapping of {} to {}; a removal was recorded anyway",
            args.cpi, args.msp.msp
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn enroll_withdraw(args: WithdrawArgs) -> Result<ExitCode, ExitCode> {
    let user = pir_client::enroll::read_user_key(&args.user_key).map_err(|e| fail(&e))?;
    let prover = args.prover.connect().await?;
    let withdrawn = prover
        .withdraw(&args.msp, &args.cpi, &user)
        .await
        .map_err(|e| fail(&e))?;
    emit(&if withdrawn {
        format!("the mapping of {} to {} was withdrawn", args.cpi, args.msp)
    } else {
        format!(
            "the mapping of {} to {} had already gone; a removal was recorded anyway",
            args.cpi, args.msp
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn lookup(args: LookupArgs) -> Result<ExitCode, ExitCode> {
    let trust = TrustStore::from_file(&args.trust).map_err(|e| {
        eprintln!("error: {}", e.with_flag("--trust"));
        ExitCode::FAILURE
    })?;
    let options = args.shards.apply(ClientOptions {
        key_file: args.key_file.clone(),
        rotate_keys: args.rotate_keys,
        ..args.server.options(trust)?
    })?;
    let mut client = ShardedClient::connect(&args.server.server, options)
        .await
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        })?;
    let mut failed = 0usize;
    // Every query goes out before any answer is verified (see ShardedClient::lookup_many).
    let outcomes = client.lookup_many(&args.cpis).await;
    for (cpi, outcome) in args.cpis.iter().zip(outcomes) {
        match outcome {
            Ok(outcome) if args.server.json => {
                emit(&pir_client::outcome_json(&outcome).to_string())?
            }
            Ok(outcome) => emit(&pir_client::outcome_text(&outcome))?,
            Err(e) => {
                failed += 1;
                if args.server.json {
                    emit(&pir_client::error_json(cpi, &e).to_string())?;
                } else {
                    eprintln!("error: {}", pir_client::error_text(cpi, &e));
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("error: {failed} of {} lookups failed", args.cpis.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn info(args: InfoArgs) -> Result<ExitCode, ExitCode> {
    let options = args.server.options(TrustStore::new())?;
    let config = pir_client::fetch_config(&args.server.server, &options)
        .await
        .map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        })?;
    if args.server.json {
        emit(&pir_client::info_json(&config).to_string())?;
    } else {
        emit(&pir_client::info_text(&config))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench(args: BenchArgs) -> Result<ExitCode, ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    };
    let trust = match &args.trust {
        Some(p) => TrustStore::from_file(p).map_err(|e| fail(&e.with_flag("--trust")))?,
        None => TrustStore::new(),
    };
    let dir = tempfile::tempdir().map_err(|e| fail(&e))?;
    let options = ClientOptions {
        key_file: Some(dir.path().join("bench.keys")),
        ..args.server.options(trust)?
    };
    let cpis = match &args.cpis {
        Some(path) => read_cpis(path).map_err(|e| fail(&e))?,
        None => Vec::new(),
    };
    let report = pir_client::bench::run_with_cpis(
        &args.server.server,
        options,
        args.concurrency,
        Duration::from_secs(args.duration),
        cpis.into(),
    )
    .await
    .map_err(|e| fail(&e))?;
    if args.server.json {
        let json = serde_json::to_string(&report).map_err(|e| fail(&e))?;
        emit(&json)?;
    } else {
        emit(&format!(
            "{} lookups ({} found), {} errors, {:.2} lookups/s, p50 {:.0} ms, p99 {:.0} ms",
            report.lookups,
            report.found,
            report.errors,
            report.lookups_per_sec,
            report.p50_ms,
            report.p99_ms
        ))?;
    }
    if let Some(first) = &report.first_error {
        eprintln!("first error: {first}");
    }
    if report.lookups == 0 && report.errors > 0 {
        eprintln!("error: every lookup failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Lookup(args) => lookup(args).await,
        Command::Info(args) => info(args).await,
        Command::Bench(args) => bench(args).await,
        Command::MspKeygen(args) => keygen(&args, KeyRole::Msp),
        Command::UserKeygen(args) => keygen(&args, KeyRole::User),
        Command::Enroll(command) => enroll(command).await,
    };
    result.unwrap_or_else(|code| code)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_cpi_list_names_its_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpis.txt");
        std::fs::write(
            &path,
            "tel:+14155550100\n\nmailto:bob@example.org\nnot a cpi\n",
        )
        .unwrap();
        let err = read_cpis(&path).unwrap_err();
        assert!(
            err.ends_with(&format!(
                "cpis.txt:4: {}",
                Cpi::parse("not a cpi").unwrap_err()
            )),
            "{err}"
        );
        std::fs::write(&path, "tel:+14155550100\nmailto:bob@example.org\n").unwrap();
        assert_eq!(read_cpis(&path).unwrap().len(), 2);
    }

    /// `pir-client lookup --server .. --trust t.pub` with these CPIs.
    fn lookup_cli(cpis: &[&str]) -> Result<Cli, clap::Error> {
        let head = ["pir-client", "lookup", "--server", "http://127.0.0.1:1"];
        Cli::try_parse_from(
            head.into_iter()
                .chain(["--trust", "t.pub"])
                .chain(cpis.iter().copied()),
        )
    }

    #[test]
    fn cpis_are_parsed_and_normalised() {
        let cli = lookup_cli(&["tel:+1 (415) 555-0100", "mailto:Alice@Example.COM"]).unwrap();
        let Command::Lookup(args) = cli.command else {
            panic!("expected lookup");
        };
        let cpis: Vec<&str> = args.cpis.iter().map(Cpi::as_str).collect();
        assert_eq!(cpis, ["tel:+14155550100", "mailto:Alice@example.com"]);
    }

    #[test]
    fn bench_with_a_cpi_list_needs_a_trust_file() {
        let bench = ["pir-client", "bench", "--server", "http://127.0.0.1:1"];
        let err = Cli::try_parse_from(bench.into_iter().chain(["--cpis", "cpis.txt"])).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(err.to_string().contains("--trust"), "{err}");
        Cli::try_parse_from(
            bench
                .into_iter()
                .chain(["--cpis", "c.txt", "--trust", "t.pub"]),
        )
        .unwrap();
    }

    #[test]
    fn help_states_the_exit_codes_and_the_cpi_forms() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes: 0"), "{help}");
        let lookup = Cli::command()
            .find_subcommand_mut("lookup")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(lookup.contains("case-sensitive"), "{lookup}");
    }

    #[test]
    fn server_flags_default_to_a_deadline_and_safe_checks() {
        let cli = lookup_cli(&["tel:+14155550100"]).unwrap();
        let Command::Lookup(args) = cli.command else {
            panic!("expected lookup");
        };
        let s = &args.server;
        assert_eq!(s.timeout, 30);
        assert!(!s.insecure_plaintext && !s.allow_custom_params && s.dp_pub.is_none());
        let options = s.options(TrustStore::new()).unwrap();
        assert_eq!(options.request_timeout, Some(Duration::from_secs(30)));
        let info = ["pir-client", "info", "--server", "h:1"];
        let err = Cli::try_parse_from(info.into_iter().chain(["--timeout", "0"])).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let cli = Cli::try_parse_from(info.into_iter().chain([
            "--timeout",
            "5",
            "--insecure-plaintext",
            "--allow-custom-params",
        ]))
        .unwrap();
        let Command::Info(args) = cli.command else {
            panic!("expected info");
        };
        let options = args.server.options(TrustStore::new()).unwrap();
        assert_eq!(options.request_timeout, Some(Duration::from_secs(5)));
        assert!(options.insecure_plaintext && options.allow_custom_params);
        // A DP key file that does not read is an error (named on stderr), not a panic.
        let cli = Cli::try_parse_from(info.into_iter().chain(["--dp-pub", "/nonexistent/dp.pub"]))
            .unwrap();
        let Command::Info(args) = cli.command else {
            panic!("expected info");
        };
        assert!(args.server.options(TrustStore::new()).is_err());
    }

    /// `--evaluator` is a server flag of every subcommand: it reaches the options as given (all
    /// of them, in order, when repeated), and without it the server evaluates too.
    #[test]
    fn the_evaluator_flag_reaches_the_options() {
        let cli = lookup_cli(&["tel:+14155550100"]).unwrap();
        let Command::Lookup(args) = cli.command else {
            panic!("expected lookup");
        };
        assert_eq!(
            args.server.options(TrustStore::new()).unwrap().evaluator,
            None
        );
        for command in ["lookup", "info", "bench"] {
            let mut argv = vec![
                "pir-client",
                command,
                "--server",
                "http://127.0.0.1:1",
                "--evaluator",
                "https://evaluator.example:50051",
            ];
            if command == "lookup" {
                argv.extend(["--trust", "t.pub", "tel:+14155550100"]);
            }
            let server = match Cli::try_parse_from(argv).unwrap().command {
                Command::Lookup(args) => args.server,
                Command::Info(args) => args.server,
                Command::Bench(args) => args.server,
                other => panic!("not a lookup command: {other:?}"),
            };
            let options = server.options(TrustStore::new()).unwrap();
            assert_eq!(
                options.evaluator.as_deref(),
                Some("https://evaluator.example:50051"),
                "{command}"
            );
        }
        // Repeated: every evaluator, in order.
        let cli = Cli::try_parse_from([
            "pir-client",
            "info",
            "--server",
            "http://127.0.0.1:1",
            "--evaluator",
            "https://e1.example:50051",
            "--evaluator",
            "https://e2.example:50051",
        ])
        .unwrap();
        let Command::Info(args) = cli.command else {
            panic!("expected info");
        };
        assert_eq!(
            args.server.options(TrustStore::new()).unwrap().evaluators(),
            ["https://e1.example:50051", "https://e2.example:50051"]
        );
    }

    /// The shard flags reach the options: a pattern or a map file, the privacy mode, padding
    /// and the attempts; by default `shard` mode, no padding, 3 attempts, no map.
    #[test]
    fn the_shard_flags_reach_the_options() {
        let options = |extra: &[&str]| {
            let mut argv = vec!["pir-client", "lookup", "--server", "http://127.0.0.1:1"];
            argv.extend(extra);
            argv.extend(["--trust", "t.pub", "tel:+14155550100"]);
            let Command::Lookup(args) = Cli::try_parse_from(argv)?.command else {
                panic!("expected lookup");
            };
            Ok::<_, clap::Error>(
                args.shards
                    .apply(args.server.options(TrustStore::new()).unwrap()),
            )
        };
        let default = options(&[]).unwrap().unwrap();
        assert_eq!(default.shard_map, None);
        assert_eq!(default.shard_privacy, ShardPrivacy::Shard);
        assert!(!default.pad_shards);
        assert_eq!(default.shard_attempts, 3);
        let set = options(&[
            "--shard-endpoints",
            "http://s{i}.svc:50051",
            "--shard-privacy",
            "all-shards",
            "--pad-shards",
            "--shard-attempts",
            "5",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            set.shard_map,
            Some(ShardMap::Patterns(vec!["http://s{i}.svc:50051".into()]))
        );
        assert_eq!(set.shard_privacy, ShardPrivacy::AllShards);
        assert!(set.pad_shards);
        assert_eq!(set.shard_attempts, 5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shards.map");
        std::fs::write(
            &path,
            "0 http://127.0.0.1:1\n1 http://127.0.0.1:2 http://127.0.0.1:3\n",
        )
        .unwrap();
        let mapped = options(&["--shard-map", path.to_str().unwrap()])
            .unwrap()
            .unwrap();
        let map = mapped.shard_map.unwrap();
        assert_eq!(map.replicas(1, 2).unwrap().len(), 2);
        // A pattern without {i}, a map that does not read: errors, not panics.
        assert!(
            options(&["--shard-endpoints", "http://one:1"])
                .unwrap()
                .is_err()
        );
        assert!(
            options(&["--shard-map", "/nonexistent/map"])
                .unwrap()
                .is_err()
        );
        for bad in [
            &["--shard-privacy", "none"][..],
            &["--shard-attempts", "0"],
            &["--shard-map", "m", "--shard-endpoints", "http://s{i}:1"],
        ] {
            assert!(options(bad).is_err(), "{bad:?}");
        }
    }

    /// The enroll subcommands' flags reach their arguments: the prover's with a deadline by
    /// default, the CPI normalised, `run` without `--save`, `complete` with its code.
    #[test]
    fn the_enroll_flags_parse() {
        let base = [
            "--issuer",
            "https://prover.example:50061",
            "--msp",
            "chat.example",
            "--msp-key",
            "msp.key",
        ];
        let parse = |sub: &str, extra: &[&str]| {
            let mut argv = vec!["pir-client", "enroll", sub];
            argv.extend(base);
            argv.extend(extra);
            Cli::try_parse_from(argv)
        };
        let cli = parse(
            "start",
            &["--cpi", "tel:+1 415 555 0100", "--save", "e.json"],
        )
        .unwrap();
        let Command::Enroll(EnrollCommand::Start(args)) = cli.command else {
            panic!("expected enroll start");
        };
        assert_eq!(args.mapping.cpi.as_str(), "tel:+14155550100");
        let options = args.prover.options();
        assert_eq!(options.request_timeout, Some(Duration::from_secs(30)));
        assert_eq!(options.connect_timeout, Some(Duration::from_secs(10)));
        assert!(!options.insecure_plaintext && options.tls_ca.is_none());
        assert_eq!(
            parse("start", &["--cpi", "tel:+14155550100"])
                .unwrap_err()
                .kind(),
            clap::error::ErrorKind::MissingRequiredArgument,
            "start needs --save"
        );
        let err = parse("run", &["--cpi", "tel:+14155550100", "--save", "e.json"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        let cli = parse(
            "run",
            &[
                "--cpi",
                "mailto:Alice@Example.COM",
                "--psi",
                "@alice",
                "--context",
                "work",
                "--user-key",
                "user.key",
                "--out",
                "m.jsonl",
                "--timeout",
                "5",
                "--insecure-plaintext",
                "--ca",
                "ca.pem",
            ],
        )
        .unwrap();
        let Command::Enroll(EnrollCommand::Run(args)) = cli.command else {
            panic!("expected enroll run");
        };
        assert_eq!(args.mapping.cpi.as_str(), "mailto:Alice@example.com");
        assert_eq!(args.mapping.psi.as_deref(), Some("@alice"));
        let options = args.prover.options();
        assert_eq!(options.request_timeout, Some(Duration::from_secs(5)));
        assert_eq!(options.connect_timeout, Some(Duration::from_secs(5)));
        assert!(options.insecure_plaintext && options.tls_ca.is_some());
        let cli = parse("complete", &["--enrollment", "e.json", "--code", "123 456"]).unwrap();
        let Command::Enroll(EnrollCommand::Complete(args)) = cli.command else {
            panic!("expected enroll complete");
        };
        assert_eq!(args.code, "123 456");
        assert!(parse("complete", &["--enrollment", "e.json"]).is_err());
        assert!(parse("revoke", &["--cpi", "tel:+14155550100"]).is_ok());
        assert!(parse("revoke", &["--cpi", "tel:+14155550100", "--timeout", "0"]).is_err());
    }

    #[test]
    fn invalid_cpi_is_a_clear_usage_error() {
        let err = lookup_cli(&["4155550100"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("invalid CPI"), "{err}");
    }
}
