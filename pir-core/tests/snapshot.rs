//! Snapshot files: round trip, refusal of damaged files and of older formats, format stability,
//! and what a snapshot's bytes do not show.

use std::{
    collections::{BTreeSet, HashMap},
    path::PathBuf,
};

use pir_core::{
    BuildOptions, CoreError, Cpi, Mapping, Snapshot,
    error::SnapshotError,
    identity::OptOut,
    keyword::{LAYOUT_VERSION, ShardPosition},
    snapshot::SNAPSHOT_FORMAT_VERSION,
    testing::{
        FIXTURE_CREATED_AT, NOW, build_records, file_bytes as to_bytes,
        fixture_snapshot as build_fixture, issuer, lookup_result, mapping_valid, msps, oprf_key,
        read_bytes as read, small_scheme, tiny_scheme, trust,
    },
};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture_path() -> PathBuf {
    fixture_dir().join("tiny-v4.pirsnap")
}

/// The format 1, 2 and 3 fixtures, kept committed unchanged so that their refusal stays tested.
fn old_fixture_path(version: u32) -> PathBuf {
    fixture_dir().join(format!("tiny-v{version}.pirsnap"))
}

/// Regenerates the committed fixture. Only after a deliberate format version bump:
/// `cargo test -p pir-core --release --test snapshot -- --ignored regenerate_fixture`
#[test]
#[ignore]
fn regenerate_fixture() {
    build_fixture().write(&fixture_path()).unwrap();
}

#[test]
fn committed_fixture_keeps_loading_and_answering() {
    let bytes = std::fs::read(fixture_path()).expect("fixture is committed");
    let snapshot = Snapshot::load(&fixture_path()).unwrap();
    let h = snapshot.header();
    assert_eq!(
        SNAPSHOT_FORMAT_VERSION, 4,
        "bump the fixture with the version"
    );
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 4);
    assert_eq!(h.epoch, 3);
    assert_eq!(h.created_at, FIXTURE_CREATED_AT);
    assert_eq!(h.mapping_count, 3);
    assert_eq!(h.opt_out_count, 1);
    assert_eq!(h.cpi_count, 3, "two CPIs with mappings, one opted out");
    assert!(h.bucket_bytes > h.record_bytes, "{h:?}");
    assert_eq!(
        h.layout.msps,
        ["chat.example", "mail.example", "talk.example"]
    );
    assert_eq!(h.layout.issuers, [issuer().id().0]);
    assert!(h.record_bytes > 0);
    assert_eq!(h.scheme, tiny_scheme().into());
    assert_eq!(h.layout.version, LAYOUT_VERSION);
    assert_eq!(h.layout.salt, [9; 32]);
    assert_eq!(h.layout.oprf_key, oprf_key().public());
    assert_eq!(h.layout.shard, ShardPosition::SINGLE);
    // Writing what was read gives the same bytes: the encoding is pinned both ways.
    assert_eq!(to_bytes(&snapshot), bytes);
    // And today's builder produces the same file from the same input.
    assert_eq!(to_bytes(&build_fixture()), bytes);
    assert_eq!(
        msps(&snapshot, "tel:+14155550100", NOW),
        ["chat.example", "talk.example"]
    );
    assert_eq!(
        msps(&snapshot, "mailto:carol@example.com", NOW),
        ["mail.example"]
    );
    let opted = lookup_result(&snapshot, trust(), "tel:+14155550199", NOW).unwrap();
    assert!(opted.opted_out() && !opted.found(), "{opted:?}");
    let absent = lookup_result(&snapshot, trust(), "mailto:dave@example.com", NOW).unwrap();
    assert!(!absent.found() && !absent.opted_out(), "{absent:?}");
}

/// A format 1 file (entries under a public hash of the CPI), a format 2 file (no shard
/// position) and a format 3 file (layout version 2: fixed-size slots, one hash per CPI) are
/// refused by their version, with a message that says to rebuild, before anything of their
/// content is used.
#[test]
fn older_formats_are_refused_with_a_rebuild_hint() {
    for version in [1, 2, 3] {
        let path = old_fixture_path(version);
        let bytes = std::fs::read(&path).expect("the old fixtures stay committed");
        assert_eq!(&bytes[..8], b"PIRSNAP\0");
        assert_eq!(
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
            version
        );
        for err in [
            Snapshot::load(&path).unwrap_err(),
            Snapshot::load_plaintext(&path).unwrap_err(),
            Snapshot::read_header(&path).unwrap_err(),
        ] {
            match &err {
                CoreError::Snapshot {
                    path: Some(p),
                    reason:
                        SnapshotError::Version {
                            found,
                            supported: SNAPSHOT_FORMAT_VERSION,
                        },
                } if *p == path && *found == version => {}
                other => panic!("wrong error: {other}"),
            }
            let message = err.to_string();
            assert!(message.contains("rebuild"), "{message}");
            assert!(
                message.contains(&format!("tiny-v{version}.pirsnap")),
                "{message}"
            );
        }
        let err = read(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::Snapshot {
                    reason: SnapshotError::Version { found, supported: SNAPSHOT_FORMAT_VERSION },
                    ..
                } if found == version
            ),
            "{err}"
        );
    }
}

#[test]
fn file_round_trip() {
    let dir = std::env::temp_dir().join(format!("pir-core-snap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.pirsnap");
    let snapshot = build_fixture();
    snapshot.write(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        snapshot.file_len().unwrap()
    );
    let loaded = Snapshot::load(&path).unwrap();
    assert_eq!(loaded.header(), snapshot.header());
    assert_eq!(
        msps(&loaded, "mailto:carol@example.com", NOW),
        ["mail.example"]
    );
    assert!(
        lookup_result(&loaded, trust(), "tel:+14155550199", NOW)
            .unwrap()
            .opted_out()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn expect_invalid(bytes: &[u8], expected: fn(&SnapshotError) -> bool) {
    match read(bytes) {
        Err(CoreError::Snapshot { reason, .. }) => {
            assert!(expected(&reason), "wrong reason {reason}")
        }
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("damaged snapshot accepted"),
    }
}

#[test]
fn damaged_files_are_refused_with_a_clear_error() {
    use SnapshotError as E;
    let good = to_bytes(&build_fixture());
    let header_len = u32::from_le_bytes(good[12..16].try_into().unwrap()) as usize;
    let payload = 16 + header_len + 32;

    expect_invalid(&good[..5], |e| {
        matches!(e, E::Truncated { part: "preamble" })
    });
    expect_invalid(&good[..payload + 10], |e| matches!(e, E::Short { .. }));
    expect_invalid(&good[..good.len() - 1], |e| matches!(e, E::Short { .. }));
    expect_invalid(&[good.clone(), vec![0]].concat(), |e| {
        matches!(e, E::TrailingBytes { extra: 1 })
    });

    let mut bad = good.clone();
    bad[0] = b'X';
    expect_invalid(&bad, |e| matches!(e, E::BadMagic));

    // An older and a newer version number on otherwise valid bytes.
    for (version, older) in [(1u8, true), (2, true), (3, true), (5, false)] {
        let mut bad = good.clone();
        bad[8] = version;
        let err = read(&bad).unwrap_err();
        assert!(
            matches!(
                &err,
                CoreError::Snapshot {
                    reason: E::Version { found, supported: SNAPSHOT_FORMAT_VERSION },
                    ..
                } if *found == u32::from(version)
            ),
            "{err}"
        );
        assert_eq!(err.to_string().contains("rebuild"), older, "{err}");
    }

    let mut bad = good.clone();
    bad[20] ^= 1;
    expect_invalid(&bad, |e| matches!(e, E::HeaderChecksum));

    let mut bad = good.clone();
    bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    expect_invalid(&bad, |e| matches!(e, E::HeaderLength));

    // One flipped bit in a bucket, then one in the NTT words.
    let mut bad = good.clone();
    bad[payload + 3] ^= 0x10;
    expect_invalid(&bad, |e| matches!(e, E::BucketChecksum));
    let mut bad = good.clone();
    bad[good.len() - 4] ^= 0x10;
    expect_invalid(&bad, |e| matches!(e, E::DatabaseChecksum));
}

// ---------------------------------------------------------------- what the bytes do not show

/// Distinctive tokens, at least 8 bytes each: every CPI, MSP, PSI and context of the dump test
/// contains one, so a token found nowhere means none of those strings is anywhere either.
const TOKENS: [&str; 6] = [
    "ZebraCorn",
    "QuokkaVille",
    "pangolins",
    "NarwhalIsh",
    "axolotls",
    "WombatTy",
];

/// Mappings of `cpis` CPIs with 1 to 4 MSPs each, of varied lengths, with and without PSI and
/// context: every text field carries a token of [`TOKENS`].
fn distinctive_mappings(cpis: usize) -> Vec<Mapping> {
    let window = (NOW - 1000, NOW + 1000);
    let mut out = Vec::new();
    for i in 0..cpis {
        let cpi = if i % 3 == 0 {
            // Spelled with upper case and separators: stored (and signed) normalised.
            format!("tel:+1 (415) 7{:02}-{:04}", i % 100, 1000 + i)
        } else {
            format!("mailto:ZebraCorn.{i}@QuokkaVille{}.example", i % 7)
        };
        for j in 0..=(i % 4) {
            let msp = format!("pangolins-{j}{}.example", "x".repeat(i % 11));
            let psi = (j % 2 == 0).then(|| format!("@NarwhalIsh{i}:{msp}"));
            let context = (i % 5 != 0).then(|| format!("axolotls-WombatTy-{}", i % 13));
            out.push(mapping_valid(
                &cpi,
                &msp,
                psi.as_deref(),
                context.as_deref(),
                window,
                None,
            ));
        }
    }
    out
}

/// Every position in `haystack` where one of `needles` (each at least 8 bytes) starts, as
/// (needle index, position). One pass over the haystack, however many needles.
fn occurrences(haystack: &[u8], needles: &[Vec<u8>]) -> Vec<(usize, usize)> {
    let mut by_prefix: HashMap<[u8; 8], Vec<usize>> = HashMap::new();
    for (i, n) in needles.iter().enumerate() {
        assert!(n.len() >= 8, "needle {i} is too short to search for");
        by_prefix
            .entry(n[..8].try_into().unwrap())
            .or_default()
            .push(i);
    }
    let mut found = Vec::new();
    for (pos, window) in haystack.windows(8).enumerate() {
        if let Some(candidates) = by_prefix.get(<&[u8; 8]>::try_from(window).unwrap()) {
            for &i in candidates {
                if haystack[pos..].starts_with(&needles[i]) {
                    found.push((i, pos));
                }
            }
        }
    }
    found
}

/// A snapshot's buckets show no CPI, MSP, PSI or context, in any case and in no encoding the
/// builder has for them (the signature), and its file shows MSP names only in the header's
/// dictionary; every bucket is a count of masked locators and sealed records: each record
/// belongs to one CPI and opens only under that CPI's key, however long it is.
#[test]
fn buckets_and_files_show_no_identifier_and_only_sealed_records() {
    let mappings = distinctive_mappings(150);
    assert!(mappings.len() >= 300, "{}", mappings.len());
    let opt_outs: Vec<OptOut> = (0..5)
        .map(|i| {
            let cpi = Cpi::parse(&format!("mailto:ZebraCorn.optout{i}@QuokkaVille.example"));
            OptOut::sign(cpi.unwrap(), NOW - 1000, NOW + 1000, &issuer()).unwrap()
        })
        .collect();
    let opts = BuildOptions {
        epoch: 1,
        now: NOW,
        salt: Some([2; 32]),
        scheme: Some(small_scheme().into()),
        engine: pir_core::Engine::Spiral,
        fill_percent: None,
    };
    let snapshot = build_records(mappings.clone(), opt_outs.clone(), &opts);
    let h = snapshot.header();
    assert_eq!(h.mapping_count as usize, mappings.len());
    assert_eq!(h.opt_out_count, 5);
    let msp_names: BTreeSet<String> = mappings.iter().map(|m| m.fields.msp.clone()).collect();
    assert_eq!(h.layout.msps, msp_names.iter().cloned().collect::<Vec<_>>());

    // What must not appear: the tokens in every case, each CPI (normalised and as spelled,
    // with its digits alone for numbers), and each statement's signature.
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for token in TOKENS {
        for form in [
            token.to_string(),
            token.to_lowercase(),
            token.to_uppercase(),
        ] {
            needles.push(form.into_bytes());
        }
    }
    let mut cpis: BTreeSet<Cpi> = mappings.iter().map(|m| m.fields.cpi.clone()).collect();
    cpis.extend(opt_outs.iter().map(|o| o.cpi.clone()));
    for cpi in &cpis {
        needles.push(cpi.as_str().as_bytes().to_vec());
        needles.push(cpi.as_str().to_lowercase().into_bytes());
        if let Some(digits) = cpi.as_str().strip_prefix("tel:+") {
            needles.push(digits.as_bytes().to_vec());
        }
    }
    for m in &mappings {
        needles.push(m.issuer_sig.to_vec());
    }
    for o in &opt_outs {
        needles.push(o.issuer_sig.to_vec());
    }
    // The search itself finds what is there: every needle in a plain listing of the input.
    let mut listing: Vec<u8> = Vec::new();
    for m in &mappings {
        listing.extend(m.to_json_line().bytes());
        listing.extend(m.to_json_line().to_lowercase().bytes());
        listing.extend(m.to_json_line().to_uppercase().bytes());
        listing.extend(m.issuer_sig);
    }
    for o in &opt_outs {
        listing.extend(o.to_json_line().bytes());
        listing.extend(o.to_json_line().to_lowercase().bytes());
        listing.extend(o.issuer_sig);
    }
    // Spellings the builder normalises away (an upper-case email domain) appear only as given.
    listing.extend(TOKENS.join(" ").bytes());
    let seen: BTreeSet<usize> = occurrences(&listing, &needles)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let missed: Vec<String> = (0..needles.len())
        .filter(|i| !seen.contains(i))
        .map(|i| String::from_utf8_lossy(&needles[i]).into_owned())
        .collect();
    assert!(missed.is_empty(), "the search misses needles: {missed:?}");

    let file = to_bytes(&snapshot);
    let item_bytes = h.scheme.item_bytes();
    let mut buckets = Vec::new();
    for i in 0..h.scheme.num_items() {
        buckets.extend_from_slice(snapshot.bucket(i).unwrap());
    }
    assert_eq!(buckets.len(), h.scheme.num_items() * item_bytes);
    assert!(snapshot.bucket(h.scheme.num_items()).is_none());
    let hits = occurrences(&buckets, &needles);
    assert!(
        hits.is_empty(),
        "buckets show {} needle(s), first {:?} at {}",
        hits.len(),
        String::from_utf8_lossy(&needles[hits[0].0]),
        hits[0].1
    );
    // The file shows the MSP names (the header's dictionary: "pangolins") and nothing else.
    let header_len = u32::from_le_bytes(file[12..16].try_into().unwrap()) as usize;
    let hits: Vec<_> = occurrences(&file, &needles)
        .into_iter()
        .filter(|(i, pos)| {
            !(*pos < 16 + header_len
                && String::from_utf8_lossy(&needles[*i]).to_lowercase() == "pangolins")
        })
        .collect();
    assert!(
        hits.is_empty(),
        "the file shows {:?} at {}",
        String::from_utf8_lossy(&needles[hits[0].0]),
        hits[0].1
    );

    // Every bucket: a count and a blob length, the locators, the blob, then zeros.
    let layout = &h.layout;
    let (mut total, mut filled) = (0, 0);
    for i in 0..h.scheme.num_items() {
        let item = snapshot.bucket(i).unwrap();
        let count = usize::from(u16::from_le_bytes([item[0], item[1]]));
        let blob = usize::from(u16::from_le_bytes([item[2], item[3]]));
        let end = 4 + 6 * count + blob;
        assert!(end <= item_bytes, "bucket {i}");
        assert!(item[end..].iter().all(|&b| b == 0), "bucket {i} padding");
        total += count;
        filled += end;
    }
    assert_eq!(total as u64, h.cpi_count);
    assert_eq!(filled as u64, h.bucket_bytes);

    // Each CPI's locator, unmasked (section 9), names the range its record opens in: all the
    // records there are, of many lengths.
    let word = |b: &[u8], i: usize| u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
    let mut lengths = BTreeSet::new();
    let mut sealed_bytes = 0;
    for cpi in &cpis {
        let secrets = layout.locate(&oprf_key().evaluate(cpi).unwrap());
        let mask = secrets.mask();
        let item = snapshot
            .bucket(secrets.location().bucket.0 as usize)
            .unwrap();
        let count = usize::from(u16::from_le_bytes([item[0], item[1]]));
        let blob = &item[4 + 6 * count..];
        let opened: Vec<usize> = (0..count)
            .filter_map(|k| {
                let locator = &item[4 + 6 * k..][..6];
                if word(locator, 2) != word(&mask, 2) {
                    return None;
                }
                let offset = usize::from(word(locator, 0).wrapping_sub(word(&mask, 0)));
                let len = usize::from(word(locator, 1).wrapping_sub(word(&mask, 1)));
                let sealed = blob.get(offset..offset + len)?;
                secrets.open(sealed).ok().map(|_| len)
            })
            .collect();
        assert_eq!(opened.len(), 1, "{cpi}: one record");
        lengths.insert(opened[0]);
        sealed_bytes += opened[0];
    }
    assert_eq!(
        (sealed_bytes + 6 * total + 4 * h.scheme.num_items()) as u64,
        h.bucket_bytes,
        "bytes that belong to no CPI"
    );
    assert!(lengths.len() >= 10, "{lengths:?}");
}
