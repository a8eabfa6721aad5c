//! What an enrollment at the ID prover costs, measured in one run against a prover started in
//! process (`pir_issuer::start`, gRPC on loopback, the file code sender, rate limits off):
//!
//! - the wire: an enrollment is two round trips from the MSP (`StartEnrollment`,
//!   `CompleteEnrollment`) plus one message to the user carrying the code; the bytes of each
//!   request and response (protobuf plus the 5-byte gRPC framing; HTTP/2 headers not counted),
//!   with and without the user's consent;
//! - the latency of each RPC as the MSP sees it (p50, p90, mean over N sequential enrollments,
//!   `tel:` and `mailto:` CPIs alternating, each CPI new), the whole enrollment (signing both
//!   requests and reading the code included), and enrollments per second sequentially and with
//!   `--concurrency` MSPs enrolling at once (each its own key and connection);
//! - a baseline measured in the same run, interleaved with the sequential enrollments, so the
//!   figures read as ratios on a noisy machine: one fsync'd append of a 300-byte line to a file
//!   in the same directory (opened with `O_APPEND`, written, `sync_data`), what dominates both
//!   RPCs (a start commits the state store and syncs the code file; a completion syncs the
//!   delta feed and commits the store); a `StartEnrollment` the prover refuses unsigned,
//!   before any disk work (the floor of an RPC on loopback); and an Ed25519 signature of a
//!   mapping (`IssuerKey`).
//!
//! The code is read from the code file as it grows (each notice parsed once, where
//! `FileSender::latest_code` rereads the whole file).
//!
//! `cargo run --release -p pir-benches --bin enrollment -- --enrollments 200`
//!
//! `--dir` puts the prover's files (state store, delta feed, code file) and the baseline's file
//! in a fresh directory inside the one given, to measure that disk; `--json` prints one object.

#![allow(clippy::print_stdout)]

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use pir_benches::{median, oprf_cost::GRPC_FRAME_BYTES};
use pir_core::{
    Cpi, IssuerKey, Mapping, MappingFields, TrustStore,
    identity::{ENROLLMENT_ID_LEN, MspKey, MspRequest, UserKey},
};
use pir_issuer::{
    IssuerConfig, Policy,
    sender::{CodeSender, FileNotice, FileSender, Senders},
};
use pir_proto::issuer_v1::{
    CompleteEnrollmentRequest, MspAuth, StartEnrollmentRequest, issuer_client::IssuerClient,
};
use prost::Message;
use serde::Serialize;
use tonic::transport::Channel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The baseline's line: about a code file's line.
const BASELINE_LINE_BYTES: usize = 300;

/// The MSP of the sequential enrollments; the concurrent ones are `msp<k>.example`.
const SEQUENTIAL_MSP: &str = "chat.example";

#[derive(Parser)]
struct Args {
    /// Enrollments timed sequentially, then as many again spread over `--concurrency` MSPs.
    #[arg(long, default_value_t = 200)]
    enrollments: usize,
    /// MSPs enrolling at once for the concurrent figure, each its own key and connection.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Untimed enrollments first (connection, state store and page cache warm).
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// The timed enrollments carry the user's consent (a user key at the start, its signature
    /// at completion); the wire bytes are reported both ways regardless.
    #[arg(long)]
    consent: bool,
    /// Directory in which a fresh directory for the prover's files and the baseline's file is
    /// made (and removed afterwards): point it at the disk to measure (default: the system's
    /// temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// One JSON object instead of the Markdown tables.
    #[arg(long)]
    json: bool,
}

/// One message's bytes on the wire: protobuf plus gRPC's framing.
fn framed(message: &impl Message) -> usize {
    message.encoded_len() + GRPC_FRAME_BYTES
}

/// The `i`th CPI: `tel:` for even `i`, `mailto:` for odd, each distinct.
fn cpi_of(i: u64) -> String {
    if i.is_multiple_of(2) {
        format!("tel:+{}", 14_155_550_000 + i)
    } else {
        format!("mailto:u{i}@example.org")
    }
}

/// The bytes of one enrollment.
#[derive(Clone, Copy, Default)]
struct Wire {
    start_request: usize,
    start_response: usize,
    complete_request: usize,
    complete_response: usize,
    /// The notice's text, as an SMS or an email body carries it.
    code_text: usize,
    /// The notice's line in the code file.
    code_line: usize,
    /// Whether the CPI is a `tel:` one (its code goes by SMS).
    tel: bool,
}

/// One enrollment, timed.
struct Sample {
    /// `StartEnrollment`, seconds.
    start_s: f64,
    /// `CompleteEnrollment`, seconds.
    complete_s: f64,
    /// The whole enrollment: both requests signed, both RPCs, the code read, seconds.
    total_s: f64,
    wire: Wire,
    /// The issued mapping's JSON line.
    mapping: String,
}

/// A code delivered to the user.
struct Delivered {
    code: String,
    text: usize,
    line: usize,
}

/// The code file, read as it grows: each notice is parsed once and kept until its
/// enrollment takes it.
struct Codes {
    path: PathBuf,
    read: Mutex<CodesRead>,
}

#[derive(Default)]
struct CodesRead {
    /// Bytes of whole lines already parsed.
    offset: u64,
    /// Codes not yet taken, by normalised CPI.
    pending: HashMap<String, Delivered>,
}

impl Codes {
    /// The code sent to `cpi` (normalised). The prover syncs the notice before its start
    /// returns, so it is in the file by then.
    fn take(&self, cpi: &str) -> Result<Delivered, BoxError> {
        let mut read = self
            .read
            .lock()
            .map_err(|_| BoxError::from("the code reader's lock is poisoned"))?;
        if let Some(d) = read.pending.remove(cpi) {
            return Ok(d);
        }
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(read.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        read.offset += whole as u64;
        for line in bytes[..whole].split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let notice: FileNotice = serde_json::from_slice(line)?;
            if notice.kind != "code" {
                continue;
            }
            if let Some(code) = notice.code {
                let delivered = Delivered {
                    code,
                    text: notice.text.len(),
                    line: line.len() + 1,
                };
                read.pending.insert(notice.to, delivered);
            }
        }
        read.pending
            .remove(cpi)
            .ok_or_else(|| format!("no code was sent to {cpi}").into())
    }
}

/// An MSP: its domain, its key, its connection to the prover.
struct Msp {
    name: String,
    key: MspKey,
    rpc: IssuerClient<Channel>,
}

/// One enrollment of the `i`th CPI by `msp`, with the user's consent when `user` is given.
async fn enroll(
    msp: &mut Msp,
    i: u64,
    user: Option<&UserKey>,
    codes: &Codes,
) -> Result<Sample, BoxError> {
    let began = Instant::now();
    let cpi = Cpi::parse(&cpi_of(i))?;
    let psi = format!("@u{i}:{}", msp.name);
    let user_key = user.map(UserKey::public_bytes);
    let at = pir_core::unix_now();
    let signature = MspRequest::Start {
        cpi: &cpi,
        psi: Some(&psi),
        context: None,
        user_key: user_key.as_ref(),
    }
    .sign(&msp.key, &msp.name, at);
    let request = StartEnrollmentRequest {
        cpi: cpi.as_str().to_owned(),
        msp: msp.name.clone(),
        psi: Some(psi),
        context: None,
        user_key: user_key.map(|k| k.to_vec()),
        auth: Some(MspAuth {
            timestamp: at,
            signature: signature.to_vec(),
        }),
    };
    let start_request = framed(&request);
    let t = Instant::now();
    let started = msp.rpc.start_enrollment(request).await?.into_inner();
    let start_s = t.elapsed().as_secs_f64();
    let start_response = framed(&started);

    // The user reads the code and gives it to the MSP (with their consent, if asked).
    let delivered = codes.take(&started.cpi)?;
    let id: [u8; ENROLLMENT_ID_LEN] = started.enrollment_id.as_slice().try_into()?;
    let user_sig = match user {
        Some(user) => Some(user.sign_consent(&started.user_signed_bytes)?),
        None => None,
    };
    let at = pir_core::unix_now();
    let signature = MspRequest::Complete {
        enrollment: &id,
        code: &delivered.code,
        user_sig: user_sig.as_ref(),
    }
    .sign(&msp.key, &msp.name, at);
    let request = CompleteEnrollmentRequest {
        enrollment_id: id.to_vec(),
        code: delivered.code,
        user_sig: user_sig.map(|s| s.to_vec()),
        msp: msp.name.clone(),
        auth: Some(MspAuth {
            timestamp: at,
            signature: signature.to_vec(),
        }),
    };
    let complete_request = framed(&request);
    let t = Instant::now();
    let issued = msp.rpc.complete_enrollment(request).await?.into_inner();
    let complete_s = t.elapsed().as_secs_f64();
    Ok(Sample {
        start_s,
        complete_s,
        total_s: began.elapsed().as_secs_f64(),
        wire: Wire {
            start_request,
            start_response,
            complete_request,
            complete_response: framed(&issued),
            code_text: delivered.text,
            code_line: delivered.line,
            tel: i.is_multiple_of(2),
        },
        mapping: issued.mapping,
    })
}

/// A `StartEnrollment` without its signature, which the prover refuses before any disk work:
/// the floor of an RPC on loopback. Seconds.
async fn refused_start(msp: &mut Msp, i: u64) -> Result<f64, BoxError> {
    let request = StartEnrollmentRequest {
        cpi: cpi_of(i),
        msp: msp.name.clone(),
        psi: None,
        context: None,
        user_key: None,
        auth: None,
    };
    let t = Instant::now();
    let answer = msp.rpc.start_enrollment(request).await;
    let seconds = t.elapsed().as_secs_f64();
    match answer {
        Err(status) if status.code() == tonic::Code::Unauthenticated => Ok(seconds),
        Err(status) => Err(format!("an unsigned start: {status}").into()),
        Ok(_) => Err("an unsigned start was accepted".into()),
    }
}

/// `n` enrollments of the CPIs from `first` on, spread over `msps` enrolling at once; the
/// samples and the wall-clock seconds.
async fn concurrently(
    msps: Vec<Msp>,
    first: u64,
    n: usize,
    consent: bool,
    codes: Arc<Codes>,
) -> Result<(Vec<Sample>, f64), BoxError> {
    let next = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for mut msp in msps {
        let (next, codes) = (next.clone(), codes.clone());
        tasks.push(tokio::spawn(async move {
            let user = consent.then(|| UserKey::from_seed(&[7; 32]));
            let mut samples = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n as u64 {
                    break;
                }
                samples.push(enroll(&mut msp, first + k, user.as_ref(), &codes).await?);
            }
            Ok::<_, BoxError>(samples)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all, began.elapsed().as_secs_f64()))
}

/// One fsync'd append of `line` to `path`, as the code sender and the feed do one: opened
/// with `O_APPEND`, one write, `sync_data`. Seconds.
fn fsync_append(path: &Path, line: &[u8]) -> std::io::Result<f64> {
    let t = Instant::now();
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(line)?;
    file.sync_data()?;
    Ok(t.elapsed().as_secs_f64())
}

/// p50, p90 and mean of samples in seconds, in milliseconds.
#[derive(Clone, Copy, Serialize)]
struct Stats {
    p50_ms: f64,
    p90_ms: f64,
    mean_ms: f64,
}

fn stats(seconds: impl Iterator<Item = f64>) -> Stats {
    let mut xs: Vec<f64> = seconds.map(|s| s * 1e3).collect();
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    // Nearest rank.
    let p90 = match n {
        0 => f64::NAN,
        _ => xs[((n * 9).div_ceil(10)).clamp(1, n) - 1],
    };
    let mean = xs.iter().sum::<f64>() / n as f64;
    Stats {
        p50_ms: median(xs),
        p90_ms: p90,
        mean_ms: mean,
    }
}

/// The mean bytes of an enrollment's messages.
#[derive(Clone, Copy, Serialize)]
struct WireMean {
    start_request: f64,
    start_response: f64,
    complete_request: f64,
    complete_response: f64,
    /// Both requests, MSP to prover.
    up: f64,
    /// Both responses, prover to MSP.
    down: f64,
    /// The code's message to the user, its text.
    code_text: f64,
    /// Its line in the code file.
    code_line: f64,
    /// The longest text of a code sent by SMS (to a `tel:` CPI).
    sms_text_max: usize,
}

fn wire_mean(samples: &[Sample]) -> WireMean {
    let n = samples.len().max(1) as f64;
    let mean = |f: fn(&Wire) -> usize| samples.iter().map(|s| f(&s.wire) as f64).sum::<f64>() / n;
    let (sq, sr) = (mean(|w| w.start_request), mean(|w| w.start_response));
    let (cq, cr) = (mean(|w| w.complete_request), mean(|w| w.complete_response));
    WireMean {
        start_request: sq,
        start_response: sr,
        complete_request: cq,
        complete_response: cr,
        up: sq + cq,
        down: sr + cr,
        code_text: mean(|w| w.code_text),
        code_line: mean(|w| w.code_line),
        sms_text_max: samples
            .iter()
            .filter(|s| s.wire.tel)
            .map(|s| s.wire.code_text)
            .max()
            .unwrap_or(0),
    }
}

#[derive(Serialize)]
struct Report {
    enrollments: usize,
    concurrency: usize,
    /// Whether the timed enrollments carried the user's consent.
    consent: bool,
    dir: String,
    /// Round trips from the MSP per enrollment.
    rpcs_per_enrollment: u32,
    /// Messages to the user per enrollment (the code).
    user_messages_per_enrollment: u32,
    wire_without_consent: WireMean,
    wire_with_consent: WireMean,
    start: Stats,
    complete: Stats,
    /// The whole sequential enrollment: signing, both RPCs, reading the code.
    enrollment: Stats,
    start_concurrent: Stats,
    complete_concurrent: Stats,
    /// The baseline: one fsync'd append of a 300-byte line in the same directory.
    fsync_append: Stats,
    /// A `StartEnrollment` refused unsigned, before any disk work: an RPC's floor.
    refused_start: Stats,
    /// An Ed25519 signature of a mapping (canonical body and signature).
    ed25519_sign: Stats,
    start_p50_over_fsync_p50: f64,
    complete_p50_over_fsync_p50: f64,
    enrollments_per_s_sequential: f64,
    enrollments_per_s_concurrent: f64,
}

fn print_markdown(r: &Report) {
    let fsync = r.fsync_append.p50_ms;
    println!(
        "## Enrollment at the ID prover: {} sequential enrollments, then {} over {} MSPs at once; \
         user consent {}; files in {}\n",
        r.enrollments,
        r.enrollments,
        r.concurrency,
        if r.consent { "given" } else { "not asked" },
        r.dir
    );
    println!(
        "Each enrollment: {} round trips from the MSP (StartEnrollment, CompleteEnrollment), \
         {} message to the user (the code).\n",
        r.rpcs_per_enrollment, r.user_messages_per_enrollment
    );
    println!("| message (protobuf + 5 B gRPC framing) | without consent, B | with consent, B |");
    println!("| --- | ---: | ---: |");
    let (a, b) = (&r.wire_without_consent, &r.wire_with_consent);
    let rows: [(&str, f64, f64); 7] = [
        (
            "StartEnrollment request (MSP → prover)",
            a.start_request,
            b.start_request,
        ),
        (
            "StartEnrollment response",
            a.start_response,
            b.start_response,
        ),
        (
            "CompleteEnrollment request (MSP → prover)",
            a.complete_request,
            b.complete_request,
        ),
        (
            "CompleteEnrollment response (the signed mapping)",
            a.complete_response,
            b.complete_response,
        ),
        ("per enrollment, up (MSP → prover)", a.up, b.up),
        ("per enrollment, down (prover → MSP)", a.down, b.down),
        (
            "the code's message to the user (text)",
            a.code_text,
            b.code_text,
        ),
    ];
    for (what, x, y) in rows {
        println!("| {what} | {x:.0} | {y:.0} |");
    }
    println!(
        "| the code's SMS (tel:), longest text (one GSM-7 SMS holds 160) | {} | {} |",
        a.sms_text_max, b.sms_text_max
    );
    println!(
        "\n| on loopback, as the MSP sees it | p50 ms | p90 ms | mean ms | p50 / fsync'd append p50 |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    let k = r.concurrency;
    let rows: [(String, Stats); 8] = [
        ("StartEnrollment".into(), r.start),
        ("CompleteEnrollment".into(), r.complete),
        (
            "whole enrollment (signing, both RPCs, reading the code)".into(),
            r.enrollment,
        ),
        (
            format!("StartEnrollment, {k} MSPs at once"),
            r.start_concurrent,
        ),
        (
            format!("CompleteEnrollment, {k} MSPs at once"),
            r.complete_concurrent,
        ),
        (
            format!("baseline: fsync'd append of {BASELINE_LINE_BYTES} B, same directory"),
            r.fsync_append,
        ),
        (
            "StartEnrollment refused unsigned, before any disk work (an RPC's floor)".into(),
            r.refused_start,
        ),
        (
            "Ed25519 signature of a mapping (IssuerKey)".into(),
            r.ed25519_sign,
        ),
    ];
    for (what, s) in rows {
        println!(
            "| {what} | {:.3} | {:.3} | {:.3} | {:.2}x |",
            s.p50_ms,
            s.p90_ms,
            s.mean_ms,
            s.p50_ms / fsync
        );
    }
    println!("\n| throughput | enrollments/s | |");
    println!("| --- | ---: | --- |");
    println!(
        "| sequential, one MSP | {:.1} | |",
        r.enrollments_per_s_sequential
    );
    println!(
        "| {k} MSPs at once | {:.1} | {:.2}x sequential |",
        r.enrollments_per_s_concurrent,
        r.enrollments_per_s_concurrent / r.enrollments_per_s_sequential
    );
    println!(
        "| fsync'd appends/s, sequential (1 / baseline p50), for scale | {:.1} | |",
        1e3 / fsync
    );
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if args.enrollments == 0 || args.concurrency == 0 {
        return Err("--enrollments and --concurrency must be at least 1".into());
    }
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let tmp = tempfile::Builder::new()
        .prefix("pir-enrollment-")
        .tempdir_in(&parent)?;
    let dir = tmp.path();
    let msp_dir = dir.join("msps");
    std::fs::create_dir(&msp_dir)?;
    let mut keys = vec![(SEQUENTIAL_MSP.to_owned(), MspKey::generate())];
    for k in 0..args.concurrency {
        keys.push((format!("msp{k}.example"), MspKey::generate()));
    }
    for (name, key) in &keys {
        std::fs::write(msp_dir.join(format!("{name}.pub")), key.to_public_text())?;
    }
    let issuer = IssuerKey::generate();
    let code_file = dir.join("codes.jsonl");
    let sender = Arc::new(FileSender::new(code_file.clone())) as Arc<dyn CodeSender>;
    let policy = Policy {
        // 0: unlimited. Every CPI is new, and one MSP starts them as fast as it can.
        starts_per_cpi_per_hour: 0,
        starts_per_msp_per_minute: 0,
        requests_per_address_per_minute: 0,
        ..Policy::default()
    };
    let config = IssuerConfig {
        listen: "127.0.0.1:0".parse()?,
        issuer_key: issuer.clone(),
        msp_keys: msp_dir,
        state: dir.join("state.redb"),
        feed: dir.join("feed.jsonl"),
        name: "Bench Prover".into(),
        senders: Senders {
            email: Some(sender.clone()),
            phone: Some(sender),
        },
        operator: None,
        policy,
        tls: None,
        sweep_interval: Duration::from_secs(3600),
    };
    let codes = Arc::new(Codes {
        path: code_file,
        read: Mutex::new(CodesRead::default()),
    });
    let consent_key = UserKey::from_seed(&[7; 32]);
    let user = args.consent.then_some(&consent_key);

    let runtime = tokio::runtime::Runtime::new()?;
    let running = runtime.block_on(pir_issuer::start(config))?;
    let url = format!("http://{}", running.addr());
    let mut msps = Vec::new();
    for (name, key) in keys {
        let rpc = runtime.block_on(IssuerClient::connect(url.clone()))?;
        msps.push(Msp { name, key, rpc });
    }
    let mut sequential = msps.remove(0);
    let mut next: u64 = 0;

    eprintln!("warming up ({} enrollments)...", args.warmup);
    let baseline_file = dir.join("baseline.jsonl");
    let mut line = vec![b'x'; BASELINE_LINE_BYTES - 1];
    line.push(b'\n');
    fsync_append(&baseline_file, &line)?;
    for _ in 0..args.warmup {
        runtime.block_on(enroll(&mut sequential, next, user, &codes))?;
        next += 1;
    }

    eprintln!(
        "{} sequential enrollments, each followed by one fsync'd append and one refused start...",
        args.enrollments
    );
    let mut samples = Vec::with_capacity(args.enrollments);
    let mut fsyncs = Vec::with_capacity(args.enrollments);
    let mut refused = Vec::with_capacity(args.enrollments);
    for _ in 0..args.enrollments {
        samples.push(runtime.block_on(enroll(&mut sequential, next, user, &codes))?);
        fsyncs.push(fsync_append(&baseline_file, &line)?);
        refused.push(runtime.block_on(refused_start(&mut sequential, next))?);
        next += 1;
    }

    eprintln!(
        "{} enrollments over {} MSPs at once...",
        args.enrollments, args.concurrency
    );
    let (parallel, parallel_s) = runtime.block_on(concurrently(
        msps,
        next,
        args.enrollments,
        args.consent,
        codes.clone(),
    ))?;
    next += args.enrollments as u64;

    // The other form's bytes: one tel: and one mailto: enrollment, untimed.
    let other_user = (!args.consent).then_some(&consent_key);
    let mut other = Vec::new();
    for _ in 0..2 {
        other.push(runtime.block_on(enroll(&mut sequential, next, other_user, &codes))?);
        next += 1;
    }

    // What was measured is real: the last mapping verifies under the prover's key.
    let mut trust = TrustStore::new();
    trust.add(issuer.verifying_key())?;
    if let Some(last) = samples.last() {
        Mapping::from_json_line(&last.mapping)?.verify(&trust, pir_core::unix_now())?;
    }
    drop(sequential);
    runtime.block_on(running.stop());

    eprintln!("{} Ed25519 signatures...", args.enrollments);
    let now = pir_core::unix_now();
    let fields = MappingFields::new(
        Cpi::parse(&cpi_of(0))?,
        SEQUENTIAL_MSP,
        Some("@u0:chat.example"),
        None,
        now,
        now + Policy::default().validity.as_secs(),
    )?;
    let mut signs = Vec::with_capacity(args.enrollments);
    for _ in 0..args.enrollments {
        let fields = fields.clone();
        let t = Instant::now();
        std::hint::black_box(fields.sign(&issuer, None)?);
        signs.push(t.elapsed().as_secs_f64());
    }

    let (timed_wire, other_wire) = (wire_mean(&samples), wire_mean(&other));
    let (wire_without_consent, wire_with_consent) = if args.consent {
        (other_wire, timed_wire)
    } else {
        (timed_wire, other_wire)
    };
    let start = stats(samples.iter().map(|s| s.start_s));
    let complete = stats(samples.iter().map(|s| s.complete_s));
    let fsync_append = stats(fsyncs.into_iter());
    let report = Report {
        enrollments: args.enrollments,
        concurrency: args.concurrency,
        consent: args.consent,
        dir: dir.display().to_string(),
        rpcs_per_enrollment: 2,
        user_messages_per_enrollment: 1,
        wire_without_consent,
        wire_with_consent,
        start,
        complete,
        enrollment: stats(samples.iter().map(|s| s.total_s)),
        start_concurrent: stats(parallel.iter().map(|s| s.start_s)),
        complete_concurrent: stats(parallel.iter().map(|s| s.complete_s)),
        fsync_append,
        refused_start: stats(refused.into_iter()),
        ed25519_sign: stats(signs.into_iter()),
        start_p50_over_fsync_p50: start.p50_ms / fsync_append.p50_ms,
        complete_p50_over_fsync_p50: complete.p50_ms / fsync_append.p50_ms,
        enrollments_per_s_sequential: samples.len() as f64
            / samples.iter().map(|s| s.total_s).sum::<f64>(),
        enrollments_per_s_concurrent: parallel.len() as f64 / parallel_s,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_markdown(&report);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpis_are_distinct_and_alternate() {
        let cpis: Vec<String> = (0..4).map(cpi_of).collect();
        assert_eq!(
            cpis,
            [
                "tel:+14155550000",
                "mailto:u1@example.org",
                "tel:+14155550002",
                "mailto:u3@example.org"
            ]
        );
        for c in &cpis {
            assert_eq!(Cpi::parse(c).unwrap().as_str(), c, "already normalised");
        }
    }

    #[test]
    fn stats_of_one_to_ten() {
        let s = stats((1..=10).map(|x| f64::from(x) / 1e3));
        for (got, want) in [(s.p50_ms, 5.5), (s.p90_ms, 9.0), (s.mean_ms, 5.5)] {
            assert!((got - want).abs() < 1e-9, "{got} != {want}");
        }
    }
}
