//! A sharded batch's routing: which shard each query of the batch goes to, whose lookup it
//! belongs to, and whether it is a CPI's real query or a cover query, in a random order.
//!
//! `shard` mode: each CPI's query to its shard; with padding, cover queries bring every shard
//! up to the busiest shard's count. `all-shards` mode: each CPI's real query to its shard and a
//! cover query to every other shard. A cover query is a fresh encryption of a random bucket,
//! made with the same keys: the servers cannot tell it from a real one. The order is shuffled
//! so that where a query stands in the batch says nothing about what it is.

use rand::{Rng, seq::SliceRandom};

use crate::client::options::ShardPrivacy;

/// One query of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Send {
    /// The shard it goes to.
    pub(super) shard: u32,
    /// The CPI (index in the batch) whose lookup it is part of, whose bytes it counts in;
    /// `None` for padding.
    pub(super) cpi: Option<usize>,
    /// The CPI's real query (decoded once the batch is sent), else a cover query.
    pub(super) real: bool,
}

/// The batch's queries, shuffled: `homes[i]` is CPI `i`'s shard (`None`: its evaluation
/// failed and it sends nothing), of `count` shards.
pub(super) fn plan(
    homes: &[Option<u32>],
    count: u32,
    privacy: ShardPrivacy,
    pad: bool,
    rng: &mut impl Rng,
) -> Vec<Send> {
    let mut sends = Vec::new();
    for (i, home) in homes.iter().enumerate() {
        let Some(home) = *home else { continue };
        match privacy {
            ShardPrivacy::Shard => sends.push(Send {
                shard: home,
                cpi: Some(i),
                real: true,
            }),
            ShardPrivacy::AllShards => sends.extend((0..count).map(|shard| Send {
                shard,
                cpi: Some(i),
                real: shard == home,
            })),
        }
    }
    if pad && privacy == ShardPrivacy::Shard {
        let per_shard = per_shard(&sends, count);
        let busiest = per_shard.iter().copied().max().unwrap_or(0);
        for (shard, n) in (0..count).zip(per_shard) {
            sends.extend((n..busiest).map(|_| Send {
                shard,
                cpi: None,
                real: false,
            }));
        }
    }
    sends.shuffle(rng);
    sends
}

/// Queries per shard.
pub(super) fn per_shard(sends: &[Send], count: u32) -> Vec<usize> {
    let mut n = vec![0; count as usize];
    for s in sends {
        n[s.shard as usize] += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> rand::rngs::StdRng {
        rand::SeedableRng::seed_from_u64(7)
    }

    const HOMES: [Option<u32>; 6] = [Some(2), Some(2), Some(0), None, Some(2), Some(3)];

    fn real_queries(sends: &[Send]) -> Vec<(usize, u32)> {
        let mut real: Vec<_> = sends
            .iter()
            .filter(|s| s.real)
            .map(|s| (s.cpi.unwrap(), s.shard))
            .collect();
        real.sort_unstable();
        real
    }

    #[test]
    fn shard_mode_sends_each_cpi_to_its_shard_only() {
        let sends = plan(&HOMES, 4, ShardPrivacy::Shard, false, &mut rng());
        assert_eq!(
            real_queries(&sends),
            [(0, 2), (1, 2), (2, 0), (4, 2), (5, 3)]
        );
        assert_eq!(sends.len(), 5, "no cover queries");
        // What the counts tell without padding: how many CPIs fall in each shard.
        assert_eq!(per_shard(&sends, 4), [1, 0, 3, 1]);
    }

    #[test]
    fn padding_gives_every_shard_the_busiest_shards_count() {
        let sends = plan(&HOMES, 4, ShardPrivacy::Shard, true, &mut rng());
        assert_eq!(per_shard(&sends, 4), [3, 3, 3, 3]);
        assert_eq!(
            real_queries(&sends),
            [(0, 2), (1, 2), (2, 0), (4, 2), (5, 3)]
        );
        assert!(sends.iter().filter(|s| !s.real).all(|s| s.cpi.is_none()));
        // Shuffled: the cover queries are not all at the end.
        let first_cover = sends.iter().position(|s| !s.real).unwrap();
        assert!(first_cover < 5, "{sends:?}");
    }

    #[test]
    fn all_shards_mode_queries_every_cpi_in_every_shard_and_decodes_one() {
        for pad in [false, true] {
            let sends = plan(&HOMES, 4, ShardPrivacy::AllShards, pad, &mut rng());
            assert_eq!(per_shard(&sends, 4), [5, 5, 5, 5]);
            assert_eq!(
                real_queries(&sends),
                [(0, 2), (1, 2), (2, 0), (4, 2), (5, 3)]
            );
            for i in [0, 1, 2, 4, 5] {
                let of_i: Vec<_> = sends.iter().filter(|s| s.cpi == Some(i)).collect();
                assert_eq!(of_i.len(), 4, "CPI {i} in every shard");
            }
        }
    }
}
