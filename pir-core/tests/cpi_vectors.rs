//! Known answers for CPI normalisation (`docs/mapping-format.md`, section 1), pinned in
//! `test_vectors/cpi_normalisation.json`: each input with its normalised CPI and warning, or the
//! error that refuses it.
//!
//! The JSON file is written by `regenerate_cpi_vectors` from the implementation, never by hand:
//!
//! ```text
//! cargo test -p pir-core --test cpi_vectors -- --ignored regenerate
//! ```
//!
//! The other tests read the committed file, check every case against the implementation, check
//! the document's examples (section 1.5) against it too, check that the dependency versions the
//! file and the document name are the locked ones, and check that every number the format
//! accepted before keeps its normalised form.

use std::path::PathBuf;

use pir_core::{
    CoreError, Cpi,
    error::{CpiError, DomainError},
};
use serde::{Deserialize, Serialize};

const FILE: &str = "cpi_normalisation.json";

/// The versions whose behaviour the vectors pin: libphonenumber's metadata (through the
/// `phonenumber` crate) for `tel:`, and UTS-46 (the `idna` crate, whose Unicode data comes with
/// `idna_adapter`) for `mailto:` domains.
const PHONENUMBER: &str = "0.3.10+9.0.33";
const IDNA: &str = "1.1.0";
const IDNA_ADAPTER: &str = "1.2.2";

// ---- file schema ------------------------------------------------------------------------------

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CpiVectorFile {
    description: Vec<String>,
    phonenumber_crate: String,
    idna_crate: String,
    idna_adapter_crate: String,
    uts46: Uts46Options,
    cases: Vec<CpiCase>,
}

/// The UTS-46 flags, by their names in UTS #46 section 4.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Uts46Options {
    applies_to: String,
    transitional_processing: bool,
    use_std3_ascii_rules: bool,
    check_hyphens: String,
    check_bidi: bool,
    check_joiners: bool,
    verify_dns_length: String,
    ignore_invalid_punycode: bool,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CpiCase {
    /// The text given to `Cpi::parse`.
    input: String,
    /// Its normalised form, or `null` when refused.
    normalised: Option<String>,
    /// The warning's name (`CpiWarning::name`), when accepted with one.
    warning: Option<String>,
    /// The error's name (`error_name`), when refused.
    error: Option<String>,
}

// ---- helpers ----------------------------------------------------------------------------------

fn vector_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test_vectors")
        .join(FILE)
}

fn to_pretty<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap();
    text.push('\n');
    text
}

/// The stable name of a refusal, as the vectors and section 1.5 of the document spell it.
fn error_name(reason: &CpiError) -> String {
    let domain = |d: &DomainError| match d {
        DomainError::Length => "length",
        DomainError::LabelChars { .. } => "label_chars",
        DomainError::LabelHyphen { .. } => "label_hyphen",
        DomainError::Uts46 => "uts46",
        other => panic!("name the new domain error {other:?}"),
    };
    match reason {
        CpiError::NotAUri => "not_a_uri".into(),
        CpiError::Scheme => "scheme".into(),
        CpiError::TooLong => "too_long".into(),
        CpiError::TelParameters => "tel_parameters".into(),
        CpiError::NotGlobal => "not_global".into(),
        CpiError::NotAPhoneNumber(_) => "not_a_phone_number".into(),
        CpiError::Extension => "extension".into(),
        CpiError::TelCharacters => "tel_characters".into(),
        CpiError::TelTooLong { .. } => "tel_too_long".into(),
        CpiError::TelUnstable { .. } => "tel_unstable".into(),
        CpiError::MailtoHeaders => "mailto_headers".into(),
        CpiError::NoAt => "no_at".into(),
        CpiError::LocalPartLength => "local_part_length".into(),
        CpiError::LocalPartChars => "local_part_chars".into(),
        CpiError::Domain(d) => format!("domain:{}", domain(d)),
        other => panic!("name the new CPI error {other:?}"),
    }
}

fn case_for(input: &str) -> CpiCase {
    match Cpi::parse(input) {
        Ok(cpi) => CpiCase {
            input: input.into(),
            normalised: Some(cpi.as_str().into()),
            warning: cpi.warning().map(|w| w.name().into()),
            error: None,
        },
        Err(CoreError::InvalidCpi { reason, .. }) => CpiCase {
            input: input.into(),
            normalised: None,
            warning: None,
            error: Some(error_name(&reason)),
        },
        Err(other) => panic!("{input}: not a CPI error: {other}"),
    }
}

// ---- the inputs -------------------------------------------------------------------------------

/// The inputs the vectors pin, grouped as the document's section 1 is.
fn inputs() -> Vec<String> {
    let long_label = format!("mailto:jo@{}.example", "ü".repeat(60));
    // 64 + 1 + 192 bytes after `mailto:`: each part within its limit, the whole over 261.
    let long_address = format!(
        "mailto:{}@{}.{}.{}.example",
        "a".repeat(64),
        "b".repeat(60),
        "c".repeat(60),
        "d".repeat(60)
    );
    let mut v: Vec<String> = [
        // 1.1: scheme and white space.
        "+14155550100",
        "sms:+14155550100",
        " tel:+33 6 12 34 56 78 ",
        "TEL:+1-415-555-0100",
        // 1.2: numbers the metadata knows as valid (their form is that of format version 1).
        "tel:+1 (415) 555-0100",
        "tel:+14155550100",
        "tel:+44 20 7946 0958",
        "tel:+44 (0)20 7946 0958",
        "tel:+44 020 7946 0958",
        "tel:++44 20 7946 0958",
        "tel:+1-800-FLOWERS",
        "tel:+39 06 1234 5678",
        "tel:+54 011 15 2345 6789",
        "tel:+7 8 495 123 4567",
        "tel:+86 0 138 0013 8000",
        // 1.2: well-formed numbers the metadata does not know: kept, with a warning.
        "tel:+447700900123",
        "tel:+44 7700 900123",
        "tel:+44-7700-900-123",
        "tel:+44\u{00A0}7700\u{2011}900123",
        "tel:+44 (0)7700 900123",
        "tel:+1 415 555",
        "tel:+5215512345678",
        "tel:+440007700900123",
        // 1.2: refused.
        "tel:4155550100",
        "tel:+14155550100;ext=1",
        "tel:+14155550100 x123",
        "tel:+14155550100 ext. 5",
        "tel:+1 banana",
        "tel:+999 1234",
        "tel:+\u{FF11}\u{FF14}\u{FF11}\u{FF15}\u{FF15}\u{FF15}\u{FF15}\u{FF10}\u{FF11}\u{FF10}\u{FF10}",
        "tel:+1 800 FLOWERZZ",
        "tel:+44 20 7946 0958 hello",
        "tel:+447700#900123",
        "tel:+4400077009001234",
        "tel:+1 415 555 0100 0000 00",
        "tel:+44 000 20 7946 0958",
        // 1.3 and 1.4: email addresses, ASCII domains (as in format version 1).
        "mailto:Alice@Example.COM",
        "mailto:alice@example.com",
        "MAILTO:bob@example.org.",
        "mailto:jo@xn--bcher-kva.example",
        "mailto:jo@xn--zz.example",
        "mailto:a%40b@example.com",
        "mailto:alice",
        "mailto:@example.com",
        "mailto:a b@example.com",
        "mailto:alice@exa mple.com",
        "mailto:alice@-x.com",
        "mailto:alice@x..com",
        "mailto:alice@example.com?subject=hi",
        // 1.3: internationalised domains, converted with UTS-46.
        "mailto:alice@Éxample.com",
        "mailto:jo@Bücher.example",
        "mailto:jo@BÜCHER.EXAMPLE.",
        "mailto:Jö@bücher.example",
        "mailto:jo@faß.de",
        "mailto:jo@münchen.de",
        "mailto:jo@日本語。jp",
        "mailto:jo@ｅｘａｍｐｌｅ．ｃｏｍ",
        "mailto:jo@bü_cher.example",
        "mailto:jo@-bücher.example",
        "mailto:jo@bücher.xn--zz.example",
        "mailto:jo@a\u{200D}ü.example",
        "mailto:jo@aא.example",
        "mailto:jo@bücher..example",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(long_label);
    v.push(long_address);
    v
}

fn generate() -> CpiVectorFile {
    CpiVectorFile {
        description: vec![
            "CPI normalisation known answers: docs/mapping-format.md, section 1.".into(),
            "Each case gives the input to Cpi::parse and either its normalised CPI (with the \
             warning a DP's build reports, if any) or the error that refuses it."
                .into(),
            "Written by `cargo test -p pir-core --test cpi_vectors -- --ignored regenerate`; \
             never edit by hand."
                .into(),
        ],
        phonenumber_crate: PHONENUMBER.into(),
        idna_crate: IDNA.into(),
        idna_adapter_crate: IDNA_ADAPTER.into(),
        uts46: Uts46Options {
            applies_to: "email domains with a non-ASCII character".into(),
            transitional_processing: false,
            use_std3_ascii_rules: true,
            check_hyphens: "first and last position only".into(),
            check_bidi: true,
            check_joiners: true,
            verify_dns_length: "no (section 1.4 checks lengths after conversion)".into(),
            ignore_invalid_punycode: false,
        },
        cases: inputs().iter().map(|i| case_for(i)).collect(),
    }
}

/// Rewrites the vector file from the implementation. Run only on purpose, after a reviewed
/// change of normalisation (section 12 of the document says what else must change with it).
#[test]
#[ignore = "rewrites test_vectors/cpi_normalisation.json"]
fn regenerate_cpi_vectors() {
    std::fs::write(vector_path(), to_pretty(&generate())).unwrap();
}

// ---- checks -----------------------------------------------------------------------------------

#[test]
fn file_is_exactly_what_the_generator_writes() {
    let committed = std::fs::read_to_string(vector_path()).unwrap();
    assert!(
        committed == to_pretty(&generate()),
        "{FILE} differs from what the generator writes"
    );
}

#[test]
fn every_case_gives_its_answer() {
    let file: CpiVectorFile =
        serde_json::from_str(&std::fs::read_to_string(vector_path()).unwrap()).unwrap();
    assert!(file.cases.len() > 60);
    for case in &file.cases {
        assert_eq!(&case_for(&case.input), case, "{:?}", case.input);
        assert!(case.normalised.is_some() != case.error.is_some());
        if let Some(normalised) = &case.normalised {
            // Idempotent, with the same warning.
            let again = Cpi::parse(normalised).unwrap();
            assert_eq!(again.as_str(), normalised);
            assert_eq!(again.warning().map(|w| w.name().to_string()), case.warning);
        }
    }
}

#[test]
fn the_reported_cases_are_answered_as_the_issue_asks() {
    // A well-formed UK number from Ofcom's drama range is looked up, with a warning for the DP.
    let drama = case_for("tel:+447700900123");
    assert_eq!(drama.normalised.as_deref(), Some("tel:+447700900123"));
    assert_eq!(drama.warning.as_deref(), Some("not_valid_per_metadata"));
    // Internationalised domains are converted, not refused.
    assert_eq!(
        case_for("mailto:alice@Éxample.com").normalised.as_deref(),
        Some("mailto:alice@xn--xample-9ua.com")
    );
}

/// The pinned versions are the ones `Cargo.lock` builds with: a dependency update that could
/// change normalisation cannot land without a look at the vectors and the document.
#[test]
fn pinned_versions_are_the_locked_ones() {
    let lock =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock"))
            .unwrap();
    for (name, version) in [
        ("phonenumber", PHONENUMBER),
        ("idna", IDNA),
        ("idna_adapter", IDNA_ADAPTER),
    ] {
        let entry = format!("name = \"{name}\"\nversion = \"{version}\"\n");
        assert!(lock.contains(&entry), "Cargo.lock has no {name} {version}");
    }
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/mapping-format.md"),
    )
    .unwrap();
    for version in [PHONENUMBER, IDNA, IDNA_ADAPTER] {
        assert!(
            doc.contains(&format!("`{version}`")),
            "the document does not name {version}"
        );
    }
}

/// Section 1.5's table: every row is what the implementation gives.
#[test]
fn document_examples_match_the_implementation() {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/mapping-format.md"),
    )
    .unwrap();
    let section = doc
        .split("### 1.5 Examples")
        .nth(1)
        .and_then(|s| s.split("\n#").next())
        .expect("section 1.5");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut rows = 0;
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').collect();
        let (input, outcome) = (&ticked(cells[1])[0], cells[2].trim());
        let case = case_for(input);
        let names = ticked(outcome);
        if outcome.starts_with("error") {
            assert_eq!(case.error.as_ref(), Some(&names[0]), "{input}");
        } else {
            assert_eq!(case.normalised.as_ref(), Some(&names[0]), "{input}");
            assert_eq!(case.warning.as_ref(), names.get(1), "{input}");
        }
        rows += 1;
    }
    assert!(rows >= 15, "section 1.5 has {rows} examples");
}

/// Format version 1's `tel:` rule: a number the metadata knows as valid, in E.164. The rule now
/// accepts more numbers, but must give exactly this for every number it accepted before.
fn v1_tel(rest: &str) -> Option<String> {
    if rest.contains(';') || !rest.trim_start().starts_with('+') {
        return None;
    }
    let parsed = phonenumber::parse(None, rest).ok()?;
    (parsed.extension().is_none() && phonenumber::is_valid(&parsed))
        .then(|| parsed.format().mode(phonenumber::Mode::E164).to_string())
}

fn assert_v1_form_kept(rest: &str) -> bool {
    let Some(v1) = v1_tel(rest) else {
        return false;
    };
    let cpi = Cpi::parse(&format!("tel:{rest}")).unwrap();
    assert_eq!(cpi.as_str(), format!("tel:{v1}"), "{rest:?}");
    assert_eq!(cpi.warning(), None, "{rest:?}");
    true
}

#[test]
fn numbers_valid_before_keep_their_form() {
    // Every example number of the metadata, for every region and number type, in several
    // spellings.
    let mut valid = 0;
    for meta in phonenumber::metadata::DATABASE.iter() {
        let d = meta.descriptors();
        let examples = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
            d.voicemail(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|x| x.example());
        for example in examples {
            let cc = meta.country_code();
            let trunk = meta.national_prefix().unwrap_or("");
            let (head, tail) = example.split_at(example.len() / 2);
            for rest in [
                format!("+{cc}{example}"),
                format!("+{cc} {head} {tail}"),
                format!("+{cc}-{head}-{tail}"),
                format!("+{cc} ({trunk}){example}"),
                format!("+{cc} {trunk}{example}"),
            ] {
                valid += usize::from(assert_v1_form_kept(&rest));
            }
        }
    }
    assert!(valid > 2000, "only {valid} valid spellings tried");
    // And random digit strings: a few percent are valid numbers.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random_valid = 0;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let digits = format!("{x}");
        let len = 4 + (x % 12) as usize;
        random_valid += usize::from(assert_v1_form_kept(&format!(
            "+{}",
            &digits[..len.min(digits.len())]
        )));
    }
    assert!(
        random_valid > 100,
        "only {random_valid} valid random numbers"
    );
}
