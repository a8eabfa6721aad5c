//! `pir-server demo`: the whole flow on loopback, through the real gRPC client.
//!
//! issuer and OPRF keys -> a handful of CPIs enrolled through the ID prover (the three-way
//! handshake, codes by file) -> synthetic signed mappings and an opt-out -> snapshot keyed by the
//! OPRF -> server (PIR host and evaluator) on 127.0.0.1 -> private lookups of enrolled, present,
//! absent and opted-out CPIs -> every answer checked against the input -> exit.

#![allow(clippy::print_stdout)]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::PathBuf,
    time::Instant,
};

use pir_client::{
    ClientOptions, PirClient,
    enroll::{ProverClient, ProverOptions},
    human_bytes, outcome_text,
};
use pir_core::{Cpi, IssuerKey, Mapping, Snapshot, TrustStore, identity::OptOut};
use pir_issuer::sender::{CodeSender, FileSender, Senders};
use pir_server::{RunningServer, ServeOptions, ServerError};

use crate::CliError;

/// The CPI whose user opted out of discovery (should a synthetic mapping use it, the opt-out
/// withholds that mapping, and the demo expects it withheld).
const OPTED_OUT: &str = "tel:+1 (415) 555-0199";

fn append_line(path: &std::path::Path, line: &str) -> Result<(), ServerError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| ServerError::io(format!("appending to {}", path.display()), e))?;
    writeln!(file, "{line}")
        .map_err(|e| ServerError::io(format!("appending to {}", path.display()), e))
}

/// The real-looking users the demo enrolls through the prover: CPI, MSP, PSI, and whether the
/// user counter-signs with their own key.
const ENROLLED: [(&str, &str, Option<&str>, bool); 4] = [
    (
        "tel:+1 (415) 555-2671",
        "chat.example",
        Some("@ada:chat.example"),
        true,
    ),
    (
        "mailto:ada.lovelace@example.org",
        "mail.example",
        None,
        false,
    ),
    (
        "tel:+44 20 7946 0321",
        "chat.example",
        Some("@grace:chat.example"),
        false,
    ),
    ("mailto:grace@example.com", "talk.example", None, true),
];

fn failed(what: &str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Internal(format!("{what}: {e}"))
}

/// Step 2: an ID prover on loopback (the demo's issuer key signs, codes go to a file), three
/// MSPs registered with it, and the handshake for each of [`ENROLLED`]; returns the mappings
/// it issued, read back from its delta feed.
async fn enroll(dir: &std::path::Path, issuer: IssuerKey) -> Result<Vec<Mapping>, ServerError> {
    let msp_keys = dir.join("msps");
    std::fs::create_dir_all(&msp_keys)
        .map_err(|e| ServerError::io(format!("creating {}", msp_keys.display()), e))?;
    let mut keys = BTreeMap::new();
    for (_, msp, _, _) in ENROLLED {
        if keys.contains_key(msp) {
            continue;
        }
        // What an MSP runs (`pir-client msp-keygen`), and gives the prover its .pub.
        let key_path = dir.join(format!("{msp}.key"));
        let key = pir_client::enroll::msp_keygen(&key_path, true).map_err(|e| failed(msp, e))?;
        let public = pir_client::enroll::public_key_path(&key_path);
        let registered = msp_keys.join(format!("{msp}.pub"));
        std::fs::copy(&public, &registered)
            .map_err(|e| ServerError::io(format!("copying {}", public.display()), e))?;
        keys.insert(msp, key);
    }
    let codes = dir.join("codes.jsonl");
    let feed = dir.join("feed.jsonl");
    let _ = std::fs::remove_file(&codes);
    let _ = std::fs::remove_file(&feed);
    let _ = std::fs::remove_file(dir.join("issuer-state.redb"));
    let sender =
        std::sync::Arc::new(FileSender::new(codes.clone())) as std::sync::Arc<dyn CodeSender>;
    let prover = pir_issuer::start(pir_issuer::IssuerConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        issuer_key: issuer,
        msp_keys,
        state: dir.join("issuer-state.redb"),
        feed: feed.clone(),
        name: "Demo Prover".into(),
        senders: Senders {
            email: Some(sender.clone()),
            phone: Some(sender),
        },
        operator: None,
        policy: pir_issuer::Policy::default(),
        tls: None,
        sweep_interval: std::time::Duration::from_secs(3600),
    })
    .await
    .map_err(|e| failed("starting the ID prover", e))?;
    let url = format!("http://{}", prover.addr());
    let client = ProverClient::connect(&url, &ProverOptions::default())
        .await
        .map_err(|e| failed("connecting to the ID prover", e))?;
    let t = Instant::now();
    for (cpi, msp, psi, consent) in ENROLLED {
        let cpi = Cpi::parse(cpi)?;
        let user = if consent {
            Some(pir_core::identity::UserKey::generate())
        } else {
            None
        };
        let started = client
            .start(msp, &keys[msp], &cpi, psi, None, user.as_ref())
            .await
            .map_err(|e| failed(cpi.as_str(), e))?;
        // The user reads the code (here: from the file sender) and gives it to their MSP.
        let code = FileSender::latest_code(&codes, cpi.as_str())
            .map_err(|e| ServerError::io(format!("reading {}", codes.display()), e))?
            .ok_or_else(|| failed(cpi.as_str(), "no code was sent"))?;
        client
            .complete(msp, &keys[msp], &started, &code, user.as_ref())
            .await
            .map_err(|e| failed(cpi.as_str(), e))?;
    }
    let text = std::fs::read_to_string(&feed)
        .map_err(|e| ServerError::io(format!("reading {}", feed.display()), e))?;
    let mut issued = Vec::new();
    for line in text.lines() {
        if let pir_core::identity::DeltaLine::Upsert(m) =
            pir_core::identity::DeltaLine::from_json_line(line)?
        {
            issued.push(*m);
        }
    }
    println!(
        "2. ID prover on {url}: {} CPIs enrolled through the three-way handshake (MSP signs \
         the request, code to the user -> {}, MSP relays it, {} with the user's own \
         signature), {:.0} ms each -> delta feed {}",
        issued.len(),
        codes.display(),
        ENROLLED.iter().filter(|e| e.3).count(),
        t.elapsed().as_secs_f64() * 1000.0 / ENROLLED.len() as f64,
        feed.display()
    );
    prover.stop().await;
    Ok(issued)
}

fn secs(start: Instant) -> String {
    format!("{:.2} s", start.elapsed().as_secs_f64())
}

/// CPIs to look up: some with several MSPs, some with a PSI, and some that are absent.
fn pick_cpis(by_cpi: &BTreeMap<Cpi, BTreeSet<String>>, mappings: &[Mapping]) -> Vec<Cpi> {
    let mut picked: Vec<Cpi> = Vec::new();
    let mut take = |pred: &dyn Fn(&Cpi) -> bool, n: usize| {
        let found: Vec<Cpi> = by_cpi
            .keys()
            .filter(|c| pred(c) && !picked.contains(c))
            .take(n)
            .cloned()
            .collect();
        picked.extend(found);
    };
    take(
        &|c| by_cpi[c].len() == 3 && c.as_str().starts_with("tel:"),
        1,
    );
    take(&|c| by_cpi[c].len() == 2, 1);
    take(&|c| c.as_str().starts_with("mailto:"), 1);
    let with_psi: BTreeSet<&Cpi> = mappings
        .iter()
        .filter(|m| m.fields.psi.is_some())
        .map(|m| &m.fields.cpi)
        .collect();
    take(
        &|c| with_psi.contains(c) && c.as_str().starts_with("tel:"),
        1,
    );
    for absent in [
        "tel:+1 (415) 555-0123",
        "mailto:nobody@absent.example",
        "tel:+33 6 12 34 56 78",
    ] {
        if let Ok(cpi) = Cpi::parse(absent)
            && !by_cpi.contains_key(&cpi)
        {
            picked.push(cpi);
        }
    }
    picked
}

/// Runs the demo with `count` synthetic mappings, in `dir` or a temporary directory.
pub(crate) fn run(count: usize, dir: Option<PathBuf>) -> Result<(), CliError> {
    let tmp;
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)
                .map_err(|e| ServerError::io(format!("creating {}", d.display()), e))?;
            d
        }
        None => {
            tmp = tempfile::tempdir().map_err(|e| ServerError::io("creating a temp dir", e))?;
            tmp.path().to_path_buf()
        }
    };
    println!("pir-discovery demo: private lookups over Spiral PIR, on loopback");
    println!("working directory: {}\n", dir.display());

    let key_path = dir.join("issuer.key");
    let t = Instant::now();
    let issuer = pir_dp::issuer_keygen(&key_path, true)?;
    println!(
        "1. issuer key {} -> {} (owner-only) and {}",
        issuer.id(),
        key_path.display(),
        pir_dp::public_key_path(&key_path).display()
    );

    let oprf_path = dir.join("oprf.key");
    let oprf_key = pir_dp::oprf_keygen(&oprf_path, true)?;
    println!(
        "   OPRF key {} (owner-only; RFC 9497 VOPRF, ristretto255-SHA512), public key {}",
        oprf_path.display(),
        oprf_key.public()
    );

    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| ServerError::io("starting the runtime", e))?;
    let enrolled = runtime.block_on(enroll(&dir, issuer.clone()))?;

    let t_synth = Instant::now();
    let now = pir_core::unix_now();
    let mappings = pir_dp::synth(count, &issuer, 7, now)?;
    let mappings_path = dir.join("mappings.jsonl");
    pir_dp::write_jsonl(&mappings_path, &mappings)?;
    // One user who asked not to be discoverable: the issuer signs an opt-out for the CPI.
    let opted_out = Cpi::parse(OPTED_OUT)?;
    let opt_out = OptOut::sign(opted_out.clone(), now - 60, now + 365 * 86_400, &issuer)?;
    append_line(&mappings_path, &opt_out.to_json_line())?;
    // The DP's input: its synthetic mappings, and what the prover issued (its delta feed).
    for m in &enrolled {
        append_line(&mappings_path, &m.to_json_line())?;
    }
    let mut by_cpi: BTreeMap<Cpi, BTreeSet<String>> = BTreeMap::new();
    for m in mappings.iter().chain(&enrolled) {
        by_cpi
            .entry(m.fields.cpi.clone())
            .or_default()
            .insert(m.fields.msp.clone());
    }
    by_cpi.remove(&opted_out);
    println!(
        "3. {} signed synthetic mappings, the {} enrolled ones and an opt-out for {}: {} CPIs \
         -> {} ({})",
        mappings.len(),
        enrolled.len(),
        opted_out,
        by_cpi.len(),
        mappings_path.display(),
        secs(t_synth)
    );

    let snapshot_path = dir.join("db.pirsnap");
    let summary = pir_dp::build(&pir_dp::BuildArgs {
        mappings: mappings_path,
        trust: pir_dp::public_key_path(&key_path),
        out: snapshot_path.clone(),
        skip_invalid: false,
        epoch: None,
        replaces: None,
        scheme: None,
        engine: pir_core::Engine::Spiral,
        progress: false,
        dp_key: None,
        oprf_key: oprf_path.clone(),
        fill_percent: None,
    })?;
    let h = &summary.header;
    println!(
        "4. snapshot {}: {} items x {} B, {} groups, buckets {:.1}% full, packing efficiency \
         {:.3}, {} on disk ({:.2} s to build)",
        snapshot_path.display(),
        h.scheme.num_items(),
        h.scheme.item_bytes(),
        h.layout.num_groups,
        100.0 * h.bucket_bytes as f64 / h.scheme.capacity_bytes() as f64,
        summary.report.packing_efficiency,
        human_bytes(summary.file_bytes),
        summary.build_secs
    );

    let t_load = Instant::now();
    let snapshot = Snapshot::load(&snapshot_path)?;
    let sizes = snapshot.message_sizes()?;
    println!(
        "5. snapshot loaded and checked ({}, no NTT redone)",
        secs(t_load)
    );

    let served: Result<(), ServerError> = runtime.block_on(async move {
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let server =
            RunningServer::start(snapshot, addr, ServeOptions::default(), Some(oprf_key)).await?;
        println!(
            "6. serving pir.v1 on {} (PIR queries, and OPRF evaluations with the DP's key)",
            server.url()
        );

        let trust = TrustStore::from_file(&pir_dp::public_key_path(&key_path))?;
        let t_connect = Instant::now();
        let mut client = PirClient::connect(&server.url(), ClientOptions::new(trust))
            .await
            .map_err(|e| ServerError::Internal(format!("client: {e}")))?;
        println!(
            "7. client connected: keys generated and registered ({}); public keys {}, \
             query {}, response {}",
            secs(t_connect),
            human_bytes(sizes.public_keys as u64),
            human_bytes(sizes.query as u64),
            human_bytes(sizes.response as u64)
        );

        println!(
            "8. private lookups, one blinded evaluation and one PIR query each (the server \
             learns neither the CPI nor the outcome):\n"
        );
        let (mut total_ms, mut sent, mut received) = (0.0, 0, 0);
        let mut cpis: Vec<Cpi> = enrolled.iter().map(|m| m.fields.cpi.clone()).collect();
        let synthetic: BTreeMap<Cpi, BTreeSet<String>> = by_cpi
            .iter()
            .filter(|(c, _)| !cpis.contains(c))
            .map(|(c, m)| (c.clone(), m.clone()))
            .collect();
        cpis.extend(pick_cpis(&synthetic, &mappings));
        cpis.push(opted_out.clone());
        for cpi in &cpis {
            let outcome = client
                .lookup(cpi)
                .await
                .map_err(|e| ServerError::Internal(format!("lookup of {cpi}: {e}")))?;
            println!("{}\n", outcome_text(&outcome));
            total_ms += outcome.millis;
            sent += outcome.bytes_sent;
            received += outcome.bytes_received;
            let got: BTreeSet<String> = outcome
                .result
                .msps()
                .into_iter()
                .map(String::from)
                .collect();
            let want = by_cpi.get(cpi).cloned().unwrap_or_default();
            if outcome.result.opted_out() != (*cpi == opted_out) {
                return Err(ServerError::Internal(format!(
                    "{cpi}: opted out {}, expected {}",
                    outcome.result.opted_out(),
                    *cpi == opted_out
                )));
            }
            if got != want {
                return Err(ServerError::Internal(format!(
                    "{cpi}: got {got:?}, expected {want:?}"
                )));
            }
        }
        let n = cpis.len().max(1);
        println!(
            "{} lookups, all answers match the input ({:.0} ms per lookup on average, {} \
             sent and {} received per lookup on the wire)",
            cpis.len(),
            total_ms / n as f64,
            human_bytes(sent / n as u64),
            human_bytes(received / n as u64)
        );
        server.stop().await?;
        println!("done in {}", secs(t));
        Ok(())
    });
    Ok(served?)
}
