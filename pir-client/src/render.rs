//! How lookups and server configurations are shown: JSON values for scripts, text for people.

use pir_core::{Cpi, Mapping};
use pir_proto::ConfigIn;
use serde_json::{Value, json};

use crate::{ClientError, client::LookupOutcome};

/// One lookup as a JSON object, the `--json` line of `pir-client lookup`:
///
/// ```json
/// {"cpi": "tel:+14155550100", "found": true, "opted_out": false,
///  "mappings": [{"msp": "chat.example", "psi": "@alice:chat.example", "context": null,
///                "not_before": 1700000000, "not_after": 1800000000}],
///  "bytes_sent": 123456, "bytes_received": 54321, "millis": 87.5}
/// ```
///
/// `cpi` is normalised, `psi` and `context` are `null` when absent, times are unix seconds.
/// `opted_out` is true when the CPI's user opted out of discovery (an issuer-signed opt-out):
/// then `found` is false and `opt_out` gives the opt-out's issuer and validity.
pub fn outcome_json(outcome: &LookupOutcome) -> Value {
    let r = &outcome.result;
    json!({
        "cpi": r.cpi.as_str(),
        "found": r.found(),
        "opted_out": r.opted_out(),
        "opt_out": r.opt_out.as_ref().map(|o| json!({
            "issuer": o.issuer.to_string(),
            "not_before": o.not_before,
            "not_after": o.not_after,
        })),
        "mappings": r.mappings.iter().map(mapping_json).collect::<Vec<_>>(),
        "outside_validity": r.outside_validity,
        "untrusted_issuers": r.untrusted.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "bytes_sent": outcome.bytes_sent,
        "bytes_received": outcome.bytes_received,
        "millis": outcome.millis,
    })
}

fn mapping_json(m: &Mapping) -> Value {
    let f = &m.fields;
    json!({
        "msp": f.msp,
        "psi": f.psi,
        "context": f.context,
        "not_before": f.not_before,
        "not_after": f.not_after,
    })
}

/// A failed lookup as one JSON object (`lookup --json`): `{"cpi", "error"}`.
pub fn error_json(cpi: &Cpi, error: &ClientError) -> Value {
    json!({ "cpi": cpi.as_str(), "error": error.to_string() })
}

/// A failed lookup as text, naming the CPI once.
pub fn error_text(cpi: &Cpi, error: &ClientError) -> String {
    match error {
        // Already "lookup of CPI: ...".
        ClientError::Lookup { .. } | ClientError::BatchEvaluation { .. } => error.to_string(),
        _ => format!("{cpi}: {error}"),
    }
}

/// One lookup as text: a header line, then one indented line per mapping.
///
/// ```text
/// tel:+14155550100: 1 mapping (sent 110.2 KiB, received 20.3 KiB, 87.5 ms)
///   chat.example  psi @alice:chat.example  valid 2023-11-14T22:13:20Z to 2027-01-15T08:00:00Z
/// ```
pub fn outcome_text(outcome: &LookupOutcome) -> String {
    let r = &outcome.result;
    let cost = format!(
        "sent {}, received {}, {:.1} ms",
        human_bytes(outcome.bytes_sent),
        human_bytes(outcome.bytes_received),
        outcome.millis
    );
    let mut out = if let Some(o) = &r.opt_out {
        format!(
            "{}: opted out of discovery, signed by issuer {} (valid {} to {}) ({cost})",
            r.cpi,
            o.issuer,
            timestamp(o.not_before),
            timestamp(o.not_after)
        )
    } else if r.found() {
        let n = r.mappings.len();
        let s = if n == 1 { "" } else { "s" };
        format!("{}: {n} mapping{s} ({cost})", r.cpi)
    } else {
        format!("{}: not found ({cost})", r.cpi)
    };
    for m in &r.mappings {
        let f = &m.fields;
        out.push_str("\n  ");
        out.push_str(&f.msp);
        if let Some(psi) = &f.psi {
            out.push_str(&format!("  psi {psi}"));
        }
        if let Some(context) = &f.context {
            out.push_str(&format!("  context {context}"));
        }
        out.push_str(&format!(
            "  valid {} to {}",
            timestamp(f.not_before),
            timestamp(f.not_after)
        ));
    }
    if r.outside_validity > 0 {
        out.push_str(&format!(
            "\n  ({} signed mapping(s) ignored: expired or not yet valid)",
            r.outside_validity
        ));
    }
    if !r.untrusted.is_empty() {
        let mut issuers: Vec<String> = r.untrusted.iter().map(ToString::to_string).collect();
        issuers.dedup();
        out.push_str(&format!(
            "\n  ({} mapping(s) skipped: signed by issuer {} not in --trust; add the issuer's \
             public key to the trust file to accept them)",
            r.untrusted.len(),
            issuers.join(", ")
        ));
    }
    out
}

/// The server's configuration as a JSON object (`pir-client info --json`).
pub fn info_json(info: &ConfigIn) -> Value {
    let c = info.lookup();
    let s = &c.scheme();
    let sizes = info.sizes();
    json!({
        "epoch": c.epoch(),
        "created_at": info.created_at(),
        "shape": {
            "items": s.num_items(),
            "item_bytes": s.item_bytes(),
            "capacity_bytes": s.capacity_bytes(),
            "engine": s.engine(),
            "scheme": s,
        },
        "layout": {
            "version": c.layout().version,
            "num_buckets": c.layout().num_buckets,
            "num_groups": c.layout().num_groups,
            "msps": c.layout().msps.len(),
            "issuers": c.layout().issuers.len(),
            "oprf_suite": pir_core::oprf::SUITE_NAME,
            "oprf_public_key": c.layout().oprf_key.to_string(),
        },
        "sizes": {
            "public_keys": sizes.public_keys,
            "query": sizes.query,
            "response": sizes.response,
        },
        "limits": {
            "max_queries_per_request": info.max_queries_per_request(),
            "max_message_bytes": info.max_message_bytes(),
        },
        "mapping_count": info.mapping_count(),
        "cpi_count": info.cpi_count(),
        "packing_efficiency": info.packing_efficiency(),
        "vetted_params": vetted(s),
        "snapshot": {
            "header_hash": info.header_hash().map(|h| hex(&h)),
            "signed_by": signer(info),
        },
        "directory": info.manifest().map(|m| json!({
            "shard": c.layout().shard.index,
            "shards": m.count(),
            "served_shards": info.served_shards(),
            "manifest_epoch": m.epoch,
            "mapping_count": m.mapping_count(),
            "manifest_signed_by": m.signature.as_ref()
                .map(|sig| pir_core::identity::IssuerId(sig.key_id).to_string()),
        })),
    })
}

/// Whether a client takes the parameters without `--allow-custom-params`: a vetted Spiral
/// preset, or any YPIR+SP shape (the engine fixes its parameters).
fn vetted(s: &pir_core::Scheme) -> bool {
    s.spiral().is_none_or(|p| p.as_vetted().is_some())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of the DP key that signed the header, if the server sent a signed one.
fn signer(info: &ConfigIn) -> Option<String> {
    let sig = info.header()?.signature.as_ref()?;
    Some(pir_core::identity::IssuerId(sig.key_id).to_string())
}

/// The server's configuration as text (`pir-client info`).
pub fn info_text(info: &ConfigIn) -> String {
    let c = info.lookup();
    let s = &c.scheme();
    let sizes = info.sizes();
    let limit = if info.max_message_bytes() == 0 {
        "unlimited".to_owned()
    } else {
        human_bytes(info.max_message_bytes())
    };
    let mut lines = vec![
        format!(
            "epoch:              {} (built {})",
            c.epoch(),
            timestamp(info.created_at())
        ),
        format!(
            "shape:              {} items x {} bytes = {}",
            s.num_items(),
            s.item_bytes(),
            human_bytes(s.capacity_bytes())
        ),
        format!(
            "engine:             {}{}",
            s.engine(),
            if s.engine().registers_keys() {
                ""
            } else {
                " (no keys registered: every query carries its own)"
            }
        ),
        format!("scheme:             {s}"),
        format!(
            "layout:             version {}, {} buckets, {} groups, {} MSP names, OPRF key {}",
            c.layout().version,
            c.layout().num_buckets,
            c.layout().num_groups,
            c.layout().msps.len(),
            c.layout().oprf_key
        ),
        format!(
            "sizes:              public keys {}, query {}, response {}",
            human_bytes(sizes.public_keys),
            human_bytes(sizes.query),
            human_bytes(sizes.response)
        ),
        format!(
            "limits:             {} queries per request, messages up to {limit}",
            info.max_queries_per_request()
        ),
        format!(
            "mappings:           {} ({} CPIs)",
            info.mapping_count(),
            info.cpi_count()
        ),
        format!(
            "packing efficiency: {:.2}%",
            info.packing_efficiency() * 100.0
        ),
        format!(
            "parameters:         {}",
            if vetted(s) {
                "a vetted preset"
            } else {
                "not a vetted preset (clients refuse them without --allow-custom-params)"
            }
        ),
        format!(
            "snapshot:           {}",
            match (info.header_hash(), signer(info)) {
                (None, _) => "no header sent (nothing to check with --dp-pub)".to_owned(),
                (Some(h), None) => format!("header {}, not signed by a DP", hex(&h[..8])),
                (Some(h), Some(id)) => format!("header {}, signed by DP key {id}", hex(&h[..8])),
            }
        ),
    ];
    if let Some(m) = info.manifest() {
        lines.push(format!(
            "directory:          shard {} of {} (this endpoint serves {:?}), manifest epoch {}, \
             {} mappings in all, {}",
            c.layout().shard.index,
            m.count(),
            info.served_shards(),
            m.epoch,
            m.mapping_count(),
            match &m.signature {
                Some(sig) => format!(
                    "signed by DP key {}",
                    pir_core::identity::IssuerId(sig.key_id)
                ),
                None => "not signed by a DP".to_owned(),
            }
        ));
    }
    lines.join("\n")
}

/// Bytes with a binary unit: `512 B`, `110.2 KiB`, `8.6 MiB`.
pub fn human_bytes(n: u64) -> String {
    pir_core::human::Bytes(n).to_string()
}

/// A unix time as RFC 3339 UTC (`2027-01-15T08:00:00Z`), or `unix:<seconds>` past year 9999.
pub fn timestamp(unix_seconds: u64) -> String {
    pir_core::human::Time(unix_seconds).to_string()
}

#[cfg(test)]
mod tests {
    use pir_core::{Cpi, IssuerKey, LookupResult, MappingFields};

    use super::*;

    fn mapping(psi: Option<&str>, context: Option<&str>) -> Mapping {
        MappingFields::new(
            Cpi::parse("tel:+1 (415) 555-0100").unwrap(),
            "Chat.Example",
            psi,
            context,
            1_700_000_000,
            1_800_000_000,
        )
        .unwrap()
        .sign(&IssuerKey::from_seed(&[3; 32]), None)
        .unwrap()
    }

    fn outcome(mappings: Vec<Mapping>) -> LookupOutcome {
        LookupOutcome {
            result: LookupResult {
                cpi: Cpi::parse("tel:+1 (415) 555-0100").unwrap(),
                mappings,
                opt_out: None,
                outside_validity: 0,
                untrusted: Vec::new(),
            },
            bytes_sent: 1234,
            bytes_received: 5678,
            millis: 12.5,
        }
    }

    #[test]
    fn json_shape_found() {
        let v = outcome_json(&outcome(vec![
            mapping(Some("@alice:chat.example"), Some("work")),
            mapping(None, None),
        ]));
        assert_eq!(
            v,
            json!({
                "cpi": "tel:+14155550100",
                "found": true,
                "opted_out": false,
                "opt_out": null,
                "mappings": [
                    {"msp": "chat.example", "psi": "@alice:chat.example", "context": "work",
                     "not_before": 1_700_000_000u64, "not_after": 1_800_000_000u64},
                    {"msp": "chat.example", "psi": null, "context": null,
                     "not_before": 1_700_000_000u64, "not_after": 1_800_000_000u64},
                ],
                "bytes_sent": 1234,
                "bytes_received": 5678,
                "millis": 12.5,
                "outside_validity": 0,
                "untrusted_issuers": [],
            })
        );
        // One line per lookup.
        assert!(!v.to_string().contains('\n'));
    }

    #[test]
    fn json_shape_not_found() {
        let v = outcome_json(&outcome(vec![]));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = vec![
            "cpi",
            "found",
            "opted_out",
            "opt_out",
            "mappings",
            "bytes_sent",
            "bytes_received",
            "millis",
            "outside_validity",
            "untrusted_issuers",
        ];
        expected.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(v["found"], json!(false));
        assert_eq!(v["mappings"], json!([]));
        assert_eq!(v["cpi"], json!("tel:+14155550100"));
    }

    #[test]
    fn text_lists_mappings_or_not_found() {
        let text = outcome_text(&outcome(vec![mapping(
            Some("@alice:chat.example"),
            Some("work"),
        )]));
        assert!(text.starts_with("tel:+14155550100: 1 mapping ("), "{text}");
        assert!(
            text.contains("chat.example  psi @alice:chat.example  context work"),
            "{text}"
        );
        assert!(
            text.contains("valid 2023-11-14T22:13:20Z to 2027-01-15T08:00:00Z"),
            "{text}"
        );
        let text = outcome_text(&outcome(vec![]));
        assert!(text.starts_with("tel:+14155550100: not found"), "{text}");
    }

    #[test]
    fn an_opt_out_is_shown_as_such_in_text_and_json() {
        let issuer = IssuerKey::from_seed(&[3; 32]);
        let cpi = Cpi::parse("tel:+1 (415) 555-0100").unwrap();
        let mut o = outcome(vec![]);
        o.result.opt_out = Some(
            pir_core::identity::OptOut::sign(cpi, 1_700_000_000, 1_800_000_000, &issuer).unwrap(),
        );
        let text = outcome_text(&o);
        assert!(
            text.starts_with(&format!(
                "tel:+14155550100: opted out of discovery, signed by issuer {}",
                issuer.id()
            )),
            "{text}"
        );
        assert!(!text.contains("not found"), "{text}");
        let v = outcome_json(&o);
        assert_eq!(v["opted_out"], json!(true));
        assert_eq!(v["found"], json!(false));
        assert_eq!(v["opt_out"]["issuer"], json!(issuer.id().to_string()));
        assert_eq!(v["opt_out"]["not_after"], json!(1_800_000_000u64));
        assert_eq!(outcome_json(&outcome(vec![]))["opted_out"], json!(false));
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(timestamp(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(timestamp(253_402_300_800), "unix:253402300800");
        assert_eq!(timestamp(u64::MAX), format!("unix:{}", u64::MAX));
    }

    #[test]
    fn a_failed_lookup_names_its_cpi_once() {
        let cpi = Cpi::parse("tel:+14155550100").unwrap();
        let lookup = ClientError::Lookup {
            cpi: cpi.to_string(),
            source: pir_core::CoreError::BadIssuerSignature,
        };
        let text = error_text(&cpi, &lookup);
        assert_eq!(text.matches("tel:+14155550100").count(), 1, "{text}");
        let other = ClientError::Protocol("two answers for one query".into());
        assert_eq!(
            error_text(&cpi, &other),
            "tel:+14155550100: protocol violation by the server: two answers for one query"
        );
        assert_eq!(
            error_json(&cpi, &other),
            json!({
                "cpi": "tel:+14155550100",
                "error": "protocol violation by the server: two answers for one query",
            })
        );
    }

    #[test]
    fn byte_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(9 << 20), "9.0 MiB");
    }

    #[test]
    fn info_renders_shape_and_sizes() {
        let raw = pir_proto::testing::config_response();
        let info = ConfigIn::try_from(raw).unwrap();
        let v = info_json(&info);
        assert_eq!(v["epoch"], json!(9));
        assert_eq!(v["shape"]["items"], json!(256));
        assert_eq!(v["shape"]["item_bytes"], json!(8192));
        assert_eq!(v["shape"]["scheme"]["nu_1"], json!(6));
        assert_eq!(v["sizes"]["public_keys"], json!(1 << 20));
        assert_eq!(v["mapping_count"], json!(205));
        assert_eq!(v["packing_efficiency"], json!(0.0123));
        let text = info_text(&info);
        assert!(text.contains("256 items x 8192 bytes"), "{text}");
        assert!(text.contains("public keys 1.0 MiB"), "{text}");
        assert!(text.contains("packing efficiency: 1.23%"), "{text}");
        // The test shape is not a vetted preset; the fixture's header is unsigned.
        assert_eq!(v["vetted_params"], json!(false));
        assert!(text.contains("not a vetted preset"), "{text}");
        let hash = info.header_hash().unwrap();
        assert_eq!(v["snapshot"]["header_hash"], json!(hex(&hash)));
        assert_eq!(v["snapshot"]["signed_by"], json!(null));
        assert!(
            text.contains(&format!("header {}, not signed by a DP", hex(&hash[..8]))),
            "{text}"
        );
    }
}
