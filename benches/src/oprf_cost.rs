//! What the OPRF step of a lookup costs, measured in process for the sweep tool: the
//! evaluator's and the client's time, what `Evaluate` and `Query` put on the wire, and the
//! share of a build spent evaluating every CPI.

use pir_core::{
    Cpi, LookupClient, Snapshot,
    oprf::{OprfKey, OprfOutput},
};
use pir_proto::v1;
use prost::Message;
use rayon::prelude::*;

use crate::{median, timed};

/// gRPC's length-prefixed framing of each message: a compression flag byte and a 4-byte length.
pub const GRPC_FRAME_BYTES: usize = 5;

/// Evaluations timed together per repetition of an OPRF timing (one is about 0.1 ms: too short
/// to time alone).
pub const OPRF_ROUNDS: usize = 32;

/// CPIs at most that the build's OPRF share is estimated from.
pub const OPRF_BUILD_SAMPLE: usize = 20_000;

fn ms(s: f64) -> f64 {
    s * 1e3
}

/// The OPRF step of one lookup, in process.
pub struct EvaluationCost {
    /// The evaluator's `evaluate_blinded` of one blinded CPI (with its proof), ms.
    pub server_ms: f64,
    /// The same for a batch of blinded CPIs, per CPI, ms.
    pub server_ms_per_cpi_batched: f64,
    /// The client's blind and finalize (the proof checked) of one CPI, ms.
    pub client_ms: f64,
    /// `Evaluate` of one CPI on the wire: request and response, protobuf plus framing.
    pub wire_bytes: usize,
}

/// Times the evaluation of one CPI (and of a batch of `batch`) on each side, medians of
/// `--repeat` repetitions of [`OPRF_ROUNDS`] evaluations each, on one thread.
pub fn measure_evaluation(
    client: &LookupClient,
    key: &OprfKey,
    cpis: &[Cpi],
    repeat: usize,
    batch: usize,
) -> Result<EvaluationCost, Box<dyn std::error::Error>> {
    let mut rng = rand::rngs::OsRng;
    let cpi = |i: usize| &cpis[i * 104_729 % cpis.len()];
    let mut server = Vec::new();
    let mut batched = Vec::new();
    let mut client_s = Vec::new();
    for r in 0..repeat.max(1) {
        let (mut server_s, mut client_r) = (0.0, 0.0);
        for i in 0..OPRF_ROUNDS {
            let one = std::slice::from_ref(cpi(r * OPRF_ROUNDS + i));
            let (blinded, blind_s) = timed(|| client.blind(one, &mut rng));
            let blinded = blinded?;
            let elements = [*blinded[0].element()];
            let (evaluation, s) = timed(|| key.evaluate_blinded(&mut rng, &elements));
            let evaluation = evaluation?;
            server_s += s;
            let (evaluated, finalize_s) = timed(|| client.finalize(&blinded, &evaluation));
            if evaluated?[0].cpi() != &one[0] {
                return Err("the evaluation came back for another CPI".into());
            }
            client_r += blind_s + finalize_s;
        }
        server.push(server_s / OPRF_ROUNDS as f64);
        client_s.push(client_r / OPRF_ROUNDS as f64);
        let batch: Vec<Cpi> = (0..batch.max(1)).map(|i| cpi(r * 31 + i).clone()).collect();
        let blinded = client.blind(&batch, &mut rng)?;
        let elements: Vec<_> = blinded.iter().map(|b| *b.element()).collect();
        let rounds = OPRF_ROUNDS.div_ceil(batch.len());
        let (evaluations, s) = timed(|| {
            (0..rounds)
                .map(|_| key.evaluate_blinded(&mut rng, &elements))
                .collect::<Result<Vec<_>, _>>()
        });
        client.finalize(&blinded, &evaluations?[0])?;
        batched.push(s / (rounds * batch.len()) as f64);
    }
    // What one lookup's Evaluate puts on the wire.
    let blinded = client.blind(std::slice::from_ref(&cpis[0]), &mut rng)?;
    let elements = [*blinded[0].element()];
    let request = match client.keys() {
        Some(keys) => v1::EvaluateRequest::authenticated(keys, &elements),
        None => v1::EvaluateRequest::keyless(&elements),
    };
    let response = v1::EvaluateResponse::from(key.evaluate_blinded(&mut rng, &elements)?);
    Ok(EvaluationCost {
        server_ms: ms(median(server)),
        server_ms_per_cpi_batched: ms(median(batched)),
        client_ms: ms(median(client_s)),
        wire_bytes: request.encoded_len() + response.encoded_len() + 2 * GRPC_FRAME_BYTES,
    })
}

/// What one lookup's `Query` (one query) puts on the wire: the authenticated request and the
/// response carrying `answer`-sized bytes, protobuf plus framing.
pub fn query_wire_bytes(
    snapshot: &Snapshot,
    client: &LookupClient,
    query: &[u8],
) -> Result<usize, Box<dyn std::error::Error>> {
    let config = v1::GetConfigResponse::for_snapshot(snapshot, v1::Limits::default())?;
    let queries = vec![query.to_vec()];
    let request = match client.keys() {
        Some(keys) => v1::QueryRequest::authenticated(keys, config.epoch, queries),
        None => v1::QueryRequest::keyless(config.epoch, queries),
    };
    let answer = vec![0u8; snapshot.message_sizes()?.response];
    let response = v1::QueryResponse::for_config(&config, vec![answer]);
    Ok(request.encoded_len() + response.encoded_len() + 2 * GRPC_FRAME_BYTES)
}

/// Seconds the build spends in the OPRF, estimated: `OprfKey::evaluate` on every core (as the
/// build runs it) over up to [`OPRF_BUILD_SAMPLE`] of the CPIs (median of `repeat`), scaled to
/// `cpi_count`.
pub fn oprf_build_share(
    key: &OprfKey,
    cpis: &[Cpi],
    cpi_count: u64,
    repeat: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let sample = &cpis[..cpis.len().min(OPRF_BUILD_SAMPLE)];
    let mut per_cpi = Vec::new();
    for _ in 0..repeat.max(1) {
        let (outputs, s) = timed(|| {
            sample
                .par_iter()
                .map(|c| key.evaluate(c))
                .collect::<Result<Vec<OprfOutput>, _>>()
        });
        outputs?;
        per_cpi.push(s / sample.len() as f64);
    }
    Ok(median(per_cpi) * cpi_count as f64)
}
