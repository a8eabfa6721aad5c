//! End to end on small shapes: queries decrypt to their rows, the noise is within the estimate,
//! malformed queries are refused.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::arith::{self, N, ring};
use super::client::{phase, read_ciphertext};
use super::params::{LOG2_P, LOG2_Q_A};
use super::*;
use crate::error::{CoreError, PirBytesError};
use crate::pir::{Kernel, ring::MODULI};

fn random_items(params: &YpirParams, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..params.num_items() * params.item_bytes())
        .map(|_| rng.r#gen())
        .collect()
}

fn item(params: &YpirParams, items: &[u8], index: usize) -> Vec<u8> {
    items[index * params.item_bytes()..][..params.item_bytes()].to_vec()
}

#[test]
fn queries_decrypt_to_their_rows() {
    let params = YpirParams::new(11, 1).unwrap();
    let items = random_items(&params, 1);
    let db = YpirDatabase::encode(params, &items).unwrap();
    for (n, index) in [0, 1, 1000, params.num_items() - 1].into_iter().enumerate() {
        let (secret, q) = query_from_seed(&params, index, [n as u8; 32]).unwrap();
        assert_eq!(q.len(), params.query_bytes());
        let response = db.answer(&q).unwrap();
        assert_eq!(response.len(), params.response_bytes());
        assert_eq!(
            decode(&secret, &response).unwrap(),
            item(&params, &items, index)
        );
    }
}

/// Two blocks of rows and two instances per row, answered as one batch.
#[test]
fn a_batch_over_blocks_and_instances_decrypts() {
    let params = YpirParams::new(12, 2).unwrap();
    let items = random_items(&params, 2);
    let db = YpirDatabase::encode(params, &items).unwrap();
    let indices = [5, N + 7, params.num_items() - 1];
    let queries: Vec<_> = indices
        .iter()
        .map(|&i| query(&params, i).unwrap())
        .collect();
    let bytes: Vec<&[u8]> = queries.iter().map(|(_, q)| q.as_slice()).collect();
    let mut first = None;
    for kernel in Kernel::available() {
        let responses = db.answer_batch_with_kernel(&bytes, kernel).unwrap();
        for ((secret, _), (response, &index)) in queries.iter().zip(responses.iter().zip(&indices))
        {
            assert_eq!(
                decode(secret, response).unwrap(),
                item(&params, &items, index),
                "{kernel:?}"
            );
        }
        // Every kernel (SIMD first pass and packing: `simd.rs`) gives the same bytes.
        assert!(
            first.get_or_insert(responses.clone()) == &responses,
            "{kernel:?}"
        );
    }
}

/// Every kernel answers with the same bytes, in a batch (packed 4 + 1) and each query alone:
/// random rows and queries, and the extremes (every element 0x3fff, a query whose every residue
/// is its modulus - 1), on one instance and on two.
#[test]
fn every_kernel_answers_the_same_bytes() {
    let largest = |params: &YpirParams| {
        let mut q = Vec::with_capacity(params.query_bytes());
        while q.len() < params.query_bytes() {
            arith::put_word(&mut q, MODULI[0] - 1, MODULI[1] - 1);
        }
        q
    };
    for (params, items) in [
        (YpirParams::new(11, 1).unwrap(), None),
        (YpirParams::new(12, 2).unwrap(), Some(0xffu8)),
    ] {
        let items = match items {
            Some(byte) => vec![byte; params.num_items() * params.item_bytes()],
            None => random_items(&params, 4),
        };
        let db = YpirDatabase::encode(params, &items).unwrap();
        let mut queries: Vec<Vec<u8>> = (0..4)
            .map(|n| {
                query_from_seed(&params, n * 97, [n as u8 + 20; 32])
                    .unwrap()
                    .1
            })
            .collect();
        queries.push(largest(&params));
        let bytes: Vec<&[u8]> = queries.iter().map(Vec::as_slice).collect();
        let answers: Vec<Vec<Vec<u8>>> = Kernel::available()
            .map(|kernel| db.answer_batch_with_kernel(&bytes, kernel).unwrap())
            .collect();
        for (kernel, batch) in Kernel::available().zip(&answers) {
            assert!(batch == &answers[0], "{params}: {:?} batch", kernel.kind());
            for (n, (query, answer)) in bytes.iter().zip(batch).enumerate() {
                let alone = db.answer_batch_with_kernel(&[query], kernel).unwrap();
                assert!(
                    alone[0] == *answer,
                    "{params}: {:?} query {n}",
                    kernel.kind()
                );
            }
        }
    }
}

/// The first pass's column blocks give the same bytes whichever threads sum them: one thread,
/// or three (blocks finishing out of order), for every kernel.
#[test]
fn answers_do_not_depend_on_the_threads() {
    let params = YpirParams::new(11, 2).unwrap();
    let items = random_items(&params, 6);
    let db = YpirDatabase::encode(params, &items).unwrap();
    let queries: Vec<_> = [3, 2000]
        .iter()
        .map(|&i| query(&params, i).unwrap())
        .collect();
    let bytes: Vec<&[u8]> = queries.iter().map(|(_, q)| q.as_slice()).collect();
    for kernel in Kernel::available() {
        let on = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| db.answer_batch_with_kernel(&bytes, kernel).unwrap())
        };
        let one = on(1);
        assert!(one == on(3), "{:?}", kernel.kind());
        assert_eq!(
            decode(&queries[1].0, &one[1]).unwrap(),
            item(&params, &items, 2000)
        );
    }
}

/// The decrypted error, measured over a whole row, stays below the estimate's standard
/// deviation (the estimate bounds the packing's growth by its worst case).
#[test]
fn measured_noise_is_within_the_estimate() {
    let params = YpirParams::new(11, 1).unwrap();
    // Elements at the top of their range make the first pass's error largest.
    let items = vec![0xffu8; params.num_items() * params.item_bytes()];
    let db = YpirDatabase::encode(params, &items).unwrap();
    let (secret, q) = query_from_seed(&params, 3, [9; 32]).unwrap();
    let response = db.answer(&q).unwrap();
    let (a, b) = read_ciphertext(&response);
    let ph = phase(ring(), Kernel::detected(), &secret_s(&secret), &a, &b);
    let modulus = 1i64 << LOG2_Q_A;
    let element = (1i64 << LOG2_P) - 1;
    let errors: Vec<f64> = ph
        .iter()
        .map(|&v| {
            let e = (v as i64 - element * (1 << (LOG2_Q_A - LOG2_P))).rem_euclid(modulus);
            (if e > modulus / 2 { e - modulus } else { e }) as f64
        })
        .collect();
    let sd = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt();
    let bound = params.estimated_error_sd();
    assert!(sd > 0.0 && sd < bound, "measured {sd}, estimate {bound}");
    assert!(
        errors
            .iter()
            .all(|e| e.abs() < f64::from(1u32 << (LOG2_Q_A - LOG2_P - 1)))
    );
}

fn secret_s(secret: &YpirSecret) -> arith::Poly {
    secret.s_ntt_for_tests()
}

#[test]
fn malformed_queries_are_refused_by_name() {
    let params = YpirParams::new(11, 1).unwrap();
    let (_, q) = query_from_seed(&params, 0, [1; 32]).unwrap();
    let short = &q[..q.len() - 1];
    assert!(matches!(
        YpirDatabase::check_query(&params, short),
        Err(CoreError::PirBytes {
            reason: PirBytesError::Length { .. },
            ..
        })
    ));
    for word in [0, 100, q.len() / 7 - 1] {
        let mut bad = q.clone();
        bad[word * 7 + 6] = 0xff;
        let err = YpirDatabase::check_query(&params, &bad).unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::PirBytes {
                    reason: PirBytesError::Unreduced { word: w },
                    ..
                } if w == word
            ),
            "{err}"
        );
    }
    YpirDatabase::check_query(&params, &q).unwrap();
}

#[test]
fn responses_of_another_length_are_refused() {
    let params = YpirParams::new(11, 1).unwrap();
    let (secret, _) = query_from_seed(&params, 0, [1; 32]).unwrap();
    assert!(decode(&secret, &[0u8; 10]).is_err());
    // Any bytes of the right length decode (to garbage the keyword layer refuses).
    let garbage = vec![0xa5u8; params.response_bytes()];
    assert_eq!(
        decode(&secret, &garbage).unwrap().len(),
        params.item_bytes()
    );
}

#[test]
fn elements_pack_and_unpack() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let bytes: Vec<u8> = (0..3584).map(|_| rng.r#gen()).collect();
    let elements = super::client::unpack_elements(&bytes);
    assert_eq!(elements.len(), N);
    let values: Vec<u64> = elements.iter().map(|&e| u64::from(e)).collect();
    assert_eq!(super::client::pack_elements(&values, bytes.len()), bytes);
}
