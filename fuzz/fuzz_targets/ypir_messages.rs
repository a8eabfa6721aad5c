//! YPIR+SP's messages on its smallest shape: a query as the server parses and answers it
//! (`YpirDatabase::check_query`, `answer`) and a response as the client decrypts it
//! (`ypir::decode`). Each must return `Ok` or `Err`, never panic.
//!
//! Valid messages have exact lengths (a query is 487,424 bytes here), which random inputs never
//! hit. The first byte picks a mode: the input as it is, the input tiled to the query's length
//! (its words mostly unreduced, so refused), the same with every word's residues forced below
//! their moduli (so the server answers it), or the input tiled to a response's length.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pir_core::pir::ypir::{self, YpirDatabase, YpirParams, YpirSecret};

/// The two CRT moduli of q; a 7-byte word is their residues, 28 bits each.
const MODULI: [u64; 2] = [268_369_921, 249_561_089];

struct World {
    params: YpirParams,
    database: YpirDatabase,
    secret: YpirSecret,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let params = YpirParams::new(11, 1).expect("the smallest shape");
        let items: Vec<u8> = (0..params.num_items() * params.item_bytes())
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let database = YpirDatabase::encode(params, &items).expect("the items fit");
        let (secret, _) = ypir::query_from_seed(&params, 7, [3; 32]).expect("a query");
        World {
            params,
            database,
            secret,
        }
    })
}

fn tiled(data: &[u8], len: usize) -> Vec<u8> {
    if data.is_empty() {
        return vec![0; len];
    }
    data.iter().copied().cycle().take(len).collect()
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let (mode, rest) = match data.split_first() {
        Some((m, r)) => (*m % 4, r),
        None => return,
    };
    match mode {
        0 => {
            let _ = YpirDatabase::check_query(&w.params, rest);
            let _ = w.database.answer(rest);
            let _ = ypir::decode(&w.secret, rest);
        }
        1 => {
            let query = tiled(rest, w.params.query_bytes());
            let _ = w.database.answer(&query);
        }
        2 => {
            let mut query = tiled(rest, w.params.query_bytes());
            for word in query.chunks_exact_mut(7) {
                let mut le = [0u8; 8];
                le[..7].copy_from_slice(word);
                let v = u64::from_le_bytes(le);
                let r0 = (v & ((1 << 28) - 1)) % MODULI[0];
                let r1 = (v >> 28) % MODULI[1];
                word.copy_from_slice(&(r0 | (r1 << 28)).to_le_bytes()[..7]);
            }
            YpirDatabase::check_query(&w.params, &query).expect("reduced words are a query");
            let response = w
                .database
                .answer(&query)
                .expect("a checked query is answered");
            assert_eq!(response.len(), w.params.response_bytes());
            let _ = ypir::decode(&w.secret, &response);
        }
        _ => {
            let response = tiled(rest, w.params.response_bytes());
            let item = ypir::decode(&w.secret, &response).expect("any bytes of its length decode");
            assert_eq!(item.len(), w.params.item_bytes());
        }
    }
});
