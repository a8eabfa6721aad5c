//! The PIR messages, on one tiny snapshot (8 items): `EvalKeys::parse` (a client's upload),
//! `Snapshot::answer` (a client's query) and `LookupClient::decode` (a server's response). Each
//! must return `Ok` or `Err`, never panic.
//!
//! Valid messages have exact lengths (a query is 16416 bytes here, the keys over a megabyte),
//! which random inputs never hit. The first byte picks a mode; most modes tile the rest of the
//! input to the exact length, some reduce every word below q so spiral-rs itself runs on it,
//! and some damage a genuine message.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pir_core::{
    ClientKeys, Cpi, EvalKeys, LookupClient, MessageSizes, PendingLookup, SchemeParams, Snapshot,
    oprf::Evaluated,
    testing::{self, NOW},
};
/// The ring's ciphertext modulus q: every word of keys and queries must be below it.
const Q: u64 = 268_369_921 * 249_561_089;
/// spiral-rs prefixes keys and queries with a 32-byte seed.
const SEED_LEN: usize = 32;

struct World {
    snapshot: Snapshot,
    sizes: MessageSizes,
    params: SchemeParams,
    public_keys: Vec<u8>,
    server_keys: EvalKeys,
    client: LookupClient,
    /// The looked-up CPI with its OPRF output under the fixture's DP key.
    evaluated: Evaluated,
    pending: PendingLookup,
    response: Vec<u8>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let params = testing::tiny_scheme();
        let trust = testing::trust();
        let snapshot = testing::fixture_snapshot();
        let keys = ClientKeys::generate(&params).expect("keygen");
        let public_keys = keys.public_bytes().to_vec();
        let server_keys = EvalKeys::parse(&params, &public_keys).expect("own keys parse");
        let client = LookupClient::with_keys(snapshot.config(), keys, trust).expect("client");
        let evaluated = testing::evaluate(&Cpi::parse("tel:+14155550100").expect("valid CPI"));
        let pending = client.query(&evaluated).expect("query");
        let response = snapshot
            .database()
            .unwrap()
            .answer(&server_keys, pending.query())
            .expect("answer");
        assert_eq!(
            client
                .decode(client.query(&evaluated).expect("query"), &response, NOW)
                .expect("decode")
                .mappings
                .len(),
            2,
            "the genuine exchange works"
        );
        World {
            sizes: params.message_sizes().expect("sizes"),
            snapshot,
            params,
            public_keys,
            server_keys,
            client,
            evaluated,
            pending,
            response,
        }
    })
}

/// `body` repeated (or cut) to exactly `len` bytes; zeros if it is empty.
fn tile(body: &[u8], len: usize) -> Vec<u8> {
    if body.is_empty() {
        return vec![0; len];
    }
    body.iter().copied().cycle().take(len).collect()
}

/// Every word after the seed reduced below q, so the adapter's range check lets it through.
fn reduce(mut bytes: Vec<u8>) -> Vec<u8> {
    for word in bytes[SEED_LEN..].chunks_exact_mut(8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes")) % Q;
        word.copy_from_slice(&w.to_le_bytes());
    }
    bytes
}

/// A genuine message with `body` XORed in at an offset taken from its first two bytes.
fn damage(genuine: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = genuine.to_vec();
    let (at, patch) = match body {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) as usize * 8, rest),
        _ => (0, body),
    };
    for (i, x) in patch.iter().enumerate() {
        let n = out.len();
        out[(at + i) % n] ^= x;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let answer = |query: &[u8]| {
        if let Ok(response) = w.snapshot.database().unwrap().answer(&w.server_keys, query) {
            assert_eq!(response.len(), w.sizes.response);
            let _ = w
                .client
                .decode(w.client.query(&w.evaluated).expect("query"), &response, NOW);
        }
    };
    match mode % 8 {
        0 => {
            let _ = EvalKeys::parse(&w.params, body);
            answer(body);
            let _ = w
                .client
                .decode(w.client.query(&w.evaluated).expect("query"), body, NOW);
        }
        1 => answer(&tile(body, w.sizes.query)),
        2 => answer(&reduce(tile(body, w.sizes.query))),
        3 => answer(&damage(w.pending.query(), body)),
        4 => {
            let _ = w.client.decode(
                w.client.query(&w.evaluated).expect("query"),
                &tile(body, w.sizes.response),
                NOW,
            );
        }
        5 => {
            let _ = w.client.decode(
                w.client.query(&w.evaluated).expect("query"),
                &damage(&w.response, body),
                NOW,
            );
        }
        6 => {
            let _ = EvalKeys::parse(&w.params, &tile(body, w.sizes.public_keys));
            let _ = EvalKeys::parse(&w.params, &damage(&w.public_keys, body));
        }
        _ => {
            // Garbage keys that pass the range check: spiral-rs answers with them.
            let keys = reduce(tile(body, w.sizes.public_keys));
            if let Ok(keys) = EvalKeys::parse(&w.params, &keys)
                && let Ok(response) = w
                    .snapshot
                    .database()
                    .unwrap()
                    .answer(&keys, w.pending.query())
            {
                let _ =
                    w.client
                        .decode(w.client.query(&w.evaluated).expect("query"), &response, NOW);
            }
        }
    }
});
