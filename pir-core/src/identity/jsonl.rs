//! The JSON Lines form of a signed mapping: the DP's input file, one mapping a line.
//!
//! ```json
//! {"cpi":"tel:+14155550100","msp":"chat.example","psi":"@alice:chat.example","context":"work",
//!  "not_before":1767225600,"not_after":1798761600,"issuer":"q5Ezd9Hcv2w","sig":"...",
//!  "user_key":"...","user_sig":"..."}
//! ```
//!
//! Binary fields are base64url without padding; `psi`, `context`, `user_key` and `user_sig` may
//! be absent or `null`; unknown fields are refused.

use serde::{Deserialize, Serialize};

use super::{
    b64,
    cpi::{Cpi, normalise_domain},
    keys::IssuerId,
    mapping::{Mapping, MappingFields, UserConsent},
    opt_out::OptOut,
};
use crate::error::{CoreError, FieldError, Result};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingLine {
    cpi: String,
    msp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    psi: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<String>,
    not_before: u64,
    not_after: u64,
    issuer: String,
    sig: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_sig: Option<String>,
}

fn bin<const N: usize>(field: &'static str, text: &str) -> Result<[u8; N]> {
    b64::decode_array(text).map_err(|e| CoreError::field(field, FieldError::Base64(e)))
}

/// One line of a delta file: a signed mapping to insert or replace, or a removal
/// `{"remove": {"cpi": ..., "msp": ...}}` (without `msp`, every mapping of the CPI goes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeltaLine {
    /// An opt-out: the CPI's mappings go and the opt-out takes their place.
    OptOut(Box<OptOut>),
    /// Insert, or replace the mapping for the same CPI and MSP. Not yet verified.
    Upsert(Box<Mapping>),
    /// Remove.
    Remove {
        /// The CPI, normalised.
        cpi: Cpi,
        /// The MSP, normalised; `None` for all.
        msp: Option<String>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveLine {
    remove: RemoveBody,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveBody {
    cpi: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    msp: Option<String>,
}

impl DeltaLine {
    /// The line's JSON form, without a trailing newline: a mapping's or an opt-out's line as
    /// in a mapping file, or `{"remove":{"cpi":…,"msp":…}}`.
    pub fn to_json_line(&self) -> String {
        match self {
            Self::OptOut(o) => o.to_json_line(),
            Self::Upsert(m) => m.to_json_line(),
            Self::Remove { cpi, msp } => serde_json::to_string(&RemoveLine {
                remove: RemoveBody {
                    cpi: cpi.as_str().to_owned(),
                    msp: msp.clone(),
                },
            })
            .unwrap_or_else(|_| unreachable!("two strings always serialise")),
        }
    }

    /// Parses one line of a delta file.
    pub fn from_json_line(line: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(CoreError::MalformedJson)?;
        if value.get("opt_out").is_some() {
            return OptOut::from_json_value(value).map(|o| Self::OptOut(Box::new(o)));
        }
        if value.get("remove").is_none() {
            return Mapping::from_json_line(line).map(|m| Self::Upsert(Box::new(m)));
        }
        let raw: RemoveLine = serde_json::from_value(value).map_err(CoreError::MalformedJson)?;
        let msp = raw
            .remove
            .msp
            .map(|m| {
                normalise_domain(&m).map_err(|r| CoreError::field("msp", FieldError::Domain(r)))
            })
            .transpose()?;
        Ok(Self::Remove {
            cpi: Cpi::parse(&raw.remove.cpi)?,
            msp,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptOutLine {
    opt_out: OptOutBody,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptOutBody {
    cpi: String,
    not_before: u64,
    not_after: u64,
    issuer: String,
    sig: String,
}

/// One line of a mapping file (the build's input): a signed mapping, or an opt-out
/// `{"opt_out": {"cpi", "not_before", "not_after", "issuer", "sig"}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordLine {
    /// A signed mapping.
    Mapping(Box<Mapping>),
    /// A signed opt-out.
    OptOut(Box<OptOut>),
}

impl RecordLine {
    /// Parses one line of a mapping file.
    pub fn from_json_line(line: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(CoreError::MalformedJson)?;
        if value.get("opt_out").is_some() {
            return OptOut::from_json_value(value).map(|o| Self::OptOut(Box::new(o)));
        }
        Mapping::from_json_line(line).map(|m| Self::Mapping(Box::new(m)))
    }

    /// The line's JSON form.
    pub fn to_json_line(&self) -> String {
        match self {
            Self::Mapping(m) => m.to_json_line(),
            Self::OptOut(o) => o.to_json_line(),
        }
    }
}

impl OptOut {
    fn from_json_value(value: serde_json::Value) -> Result<Self> {
        let raw: OptOutLine = serde_json::from_value(value).map_err(CoreError::MalformedJson)?;
        let body = raw.opt_out;
        if body.not_before > body.not_after {
            return Err(CoreError::field("not_before", FieldError::WindowReversed));
        }
        Ok(Self {
            cpi: Cpi::parse(&body.cpi)?,
            not_before: body.not_before,
            not_after: body.not_after,
            issuer: IssuerId(bin("issuer", &body.issuer)?),
            issuer_sig: bin("sig", &body.sig)?,
        })
    }

    /// The JSON Lines form, `{"opt_out": {..}}`.
    #[allow(
        clippy::expect_used,
        reason = "a struct of strings and integers serialises"
    )]
    pub fn to_json_line(&self) -> String {
        let line = OptOutLine {
            opt_out: OptOutBody {
                cpi: self.cpi.to_string(),
                not_before: self.not_before,
                not_after: self.not_after,
                issuer: b64::encode(&self.issuer.0),
                sig: b64::encode(&self.issuer_sig),
            },
        };
        serde_json::to_string(&line).expect("OptOutLine serialises")
    }
}

impl Mapping {
    /// Parses one JSON line (see the module docs). Does not verify signatures.
    pub fn from_json_line(line: &str) -> Result<Self> {
        let raw: MappingLine = serde_json::from_str(line).map_err(CoreError::MalformedJson)?;
        let cpi = Cpi::parse(&raw.cpi)?;
        let fields = MappingFields::new(
            cpi,
            &raw.msp,
            raw.psi.as_deref(),
            raw.context.as_deref(),
            raw.not_before,
            raw.not_after,
        )?;
        let user = match (raw.user_key, raw.user_sig) {
            (None, None) => None,
            (Some(k), Some(s)) => Some(UserConsent {
                key: bin("user_key", &k)?,
                sig: bin("user_sig", &s)?,
            }),
            (Some(_), None) => {
                return Err(CoreError::field(
                    "user_sig",
                    FieldError::Unpaired { other: "user_key" },
                ));
            }
            (None, Some(_)) => {
                return Err(CoreError::field(
                    "user_key",
                    FieldError::Unpaired { other: "user_sig" },
                ));
            }
        };
        Ok(Self {
            fields,
            issuer: IssuerId(bin("issuer", &raw.issuer)?),
            issuer_sig: bin("sig", &raw.sig)?,
            user,
        })
    }

    /// The mapping as one JSON line (no trailing newline).
    #[allow(
        clippy::expect_used,
        reason = "a struct of strings and integers serialises"
    )]
    pub fn to_json_line(&self) -> String {
        let line = MappingLine {
            cpi: self.fields.cpi.to_string(),
            msp: self.fields.msp.clone(),
            psi: self.fields.psi.clone(),
            context: self.fields.context.clone(),
            not_before: self.fields.not_before,
            not_after: self.fields.not_after,
            issuer: b64::encode(&self.issuer.0),
            sig: b64::encode(&self.issuer_sig),
            user_key: self.user.as_ref().map(|u| b64::encode(&u.key)),
            user_sig: self.user.as_ref().map(|u| b64::encode(&u.sig)),
        };
        serde_json::to_string(&line).expect("MappingLine serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::keys::IssuerKey;

    #[test]
    fn delta_lines_round_trip() {
        for text in [
            r#"{"remove":{"cpi":"tel:+14155550100","msp":"chat.example"}}"#,
            r#"{"remove":{"cpi":"mailto:bob@example.org"}}"#,
        ] {
            let line = DeltaLine::from_json_line(text).unwrap();
            assert_eq!(line.to_json_line(), text);
        }
    }

    #[test]
    fn json_round_trip_and_errors() {
        let issuer = IssuerKey::from_seed(&[1; 32]);
        let m = MappingFields::new(
            Cpi::parse("mailto:bob@example.org").unwrap(),
            "mail.example",
            None,
            Some("personal"),
            0,
            u64::MAX,
        )
        .unwrap()
        .sign(&issuer, None)
        .unwrap();
        let line = m.to_json_line();
        assert!(!line.contains("psi"));
        assert_eq!(Mapping::from_json_line(&line).unwrap(), m);

        let err = Mapping::from_json_line(&line.replace("\"msp\"", "\"mps\"")).unwrap_err();
        assert!(
            matches!(&err, CoreError::MalformedJson(e) if e.is_data()),
            "{err}"
        );
        let err = Mapping::from_json_line(&line.replace("mailto:", "sms:")).unwrap_err();
        assert!(matches!(err, CoreError::InvalidCpi { .. }));
        let sig = b64::encode(&m.issuer_sig);
        let err = Mapping::from_json_line(&line.replace(&sig, &sig[..20])).unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::InvalidField {
                    field: "sig",
                    reason: FieldError::Base64(_)
                }
            ),
            "{err}"
        );

        assert_eq!(
            DeltaLine::from_json_line(&line).unwrap(),
            DeltaLine::Upsert(Box::new(m))
        );
        assert_eq!(
            DeltaLine::from_json_line(
                r#"{"remove":{"cpi":"tel:+1 415 555 0100","msp":"Chat.Example"}}"#
            )
            .unwrap(),
            DeltaLine::Remove {
                cpi: Cpi::parse("tel:+14155550100").unwrap(),
                msp: Some("chat.example".into())
            }
        );
        assert!(matches!(
            DeltaLine::from_json_line(r#"{"remove":{"cpi":"mailto:a@b.example"}}"#).unwrap(),
            DeltaLine::Remove { msp: None, .. }
        ));
        for bad in [
            r#"{"remove":{"msp":"x.example"}}"#,
            r#"{"remove":{"cpi":"mailto:a@b.example","extra":1}}"#,
            r#"{"remove":{"cpi":"sms:1"}}"#,
            r#"{"remove":"tel:+14155550100"}"#,
        ] {
            assert!(DeltaLine::from_json_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn opt_out_lines_round_trip_in_mapping_and_delta_files() {
        let issuer = IssuerKey::from_seed(&[1; 32]);
        let o = OptOut::sign(Cpi::parse("tel:+14155550100").unwrap(), 5, 6, &issuer).unwrap();
        let line = o.to_json_line();
        assert!(
            line.starts_with(r#"{"opt_out":{"cpi":"tel:+14155550100""#),
            "{line}"
        );
        assert_eq!(
            RecordLine::from_json_line(&line).unwrap(),
            RecordLine::OptOut(Box::new(o.clone()))
        );
        assert_eq!(
            DeltaLine::from_json_line(&line).unwrap(),
            DeltaLine::OptOut(Box::new(o))
        );
        let err = RecordLine::from_json_line(&line.replace("\"sig\"", "\"sgi\"")).unwrap_err();
        assert!(
            matches!(&err, CoreError::MalformedJson(e) if e.is_data()),
            "{err}"
        );
        let err = RecordLine::from_json_line(&line.replace("\"not_before\":5", "\"not_before\":7"))
            .unwrap_err();
        assert!(matches!(
            err,
            CoreError::InvalidField {
                field: "not_before",
                ..
            }
        ));
    }
}
