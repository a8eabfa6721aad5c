//! `Discovery/Evaluate`, both ways: the server's checked request ([`EvaluateIn`]) and the
//! client's checked response ([`EvaluationIn`]), and the messages each side builds.

use pir_core::{
    ClientKeys, KeyId,
    oprf::{ELEMENT_BYTES, Evaluation, PROOF_BYTES},
    query_auth::QUERY_MAC_BYTES,
};

use crate::v1;

/// Why an Evaluate request was refused before any evaluation.
///
/// Not `#[non_exhaustive]`, for the reason [`crate::QueryError`] is not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvaluateError {
    /// No element.
    #[error("no blinded element in the request")]
    NoElements,
    /// More elements than the server takes at once.
    #[error("{got} blinded elements in one request; at most {max}")]
    TooMany {
        /// Elements sent.
        got: usize,
        /// The server's limit.
        max: u32,
    },
    /// A key id that is not 32 bytes.
    #[error("key id is {got} bytes, expected 32")]
    KeyIdLength {
        /// Bytes sent.
        got: usize,
    },
    /// A MAC that is not 32 bytes (an empty one included: Evaluate has always needed one).
    #[error("mac is {got} bytes, expected {QUERY_MAC_BYTES}")]
    MacLength {
        /// Bytes sent.
        got: usize,
    },
    /// An element that is not 32 bytes.
    #[error("blinded element {index} is {got} bytes, expected {ELEMENT_BYTES}")]
    ElementLength {
        /// Its position.
        index: usize,
        /// Bytes sent.
        got: usize,
    },
}

/// An Evaluate request whose shape was checked: 1 to `max` elements of 32 bytes, a 32-byte key
/// id and MAC. Whether the elements are valid group elements is the evaluator's check.
#[derive(Debug)]
pub struct EvaluateIn {
    /// The key the evaluations are charged to and its MAC; `None` for a request without keys
    /// (a YPIR+SP client's: no key id, no MAC).
    credentials: Option<(KeyId, [u8; QUERY_MAC_BYTES])>,
    blinded: Vec<[u8; ELEMENT_BYTES]>,
}

impl EvaluateIn {
    /// Checks `req` against the server's batch limit.
    pub fn parse(req: v1::EvaluateRequest, max_elements: u32) -> Result<Self, EvaluateError> {
        if req.blinded.is_empty() {
            return Err(EvaluateError::NoElements);
        }
        if req.blinded.len() > max_elements as usize {
            return Err(EvaluateError::TooMany {
                got: req.blinded.len(),
                max: max_elements,
            });
        }
        let credentials = if req.key_id.is_empty() && req.mac.is_empty() {
            None
        } else {
            let key_id = <[u8; 32]>::try_from(req.key_id.as_slice()).map_err(|_| {
                EvaluateError::KeyIdLength {
                    got: req.key_id.len(),
                }
            })?;
            let mac = <[u8; QUERY_MAC_BYTES]>::try_from(req.mac.as_slice())
                .map_err(|_| EvaluateError::MacLength { got: req.mac.len() })?;
            Some((KeyId(key_id), mac))
        };
        let blinded = req
            .blinded
            .iter()
            .enumerate()
            .map(|(index, e)| {
                <[u8; ELEMENT_BYTES]>::try_from(e.as_slice()).map_err(|_| {
                    EvaluateError::ElementLength {
                        index,
                        got: e.len(),
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            credentials,
            blinded,
        })
    }

    /// The key the evaluations are charged to; `None` for a request without keys.
    pub fn key_id(&self) -> Option<KeyId> {
        self.credentials.map(|(id, _)| id)
    }

    /// The blinded elements, in order.
    pub fn blinded(&self) -> &[[u8; ELEMENT_BYTES]] {
        &self.blinded
    }

    /// The request's MAC; `None` for a request without keys.
    pub fn mac(&self) -> Option<&[u8; QUERY_MAC_BYTES]> {
        self.credentials.as_ref().map(|(_, mac)| mac)
    }

    /// The blinded elements, by value.
    pub fn into_blinded(self) -> Vec<[u8; ELEMENT_BYTES]> {
        self.blinded
    }
}

impl From<Evaluation> for v1::EvaluateResponse {
    fn from(e: Evaluation) -> Self {
        Self {
            evaluated: e.elements.iter().map(|x| x.to_vec()).collect(),
            proof: e.proof.to_vec(),
        }
    }
}

/// Why an Evaluate response was refused before its proof was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvaluationError {
    /// Another number of elements than were sent.
    #[error("{got} evaluated elements for {sent} blinded")]
    Count {
        /// Elements sent.
        sent: usize,
        /// Elements received.
        got: usize,
    },
    /// An element that is not 32 bytes.
    #[error("evaluated element {index} is {got} bytes, expected {ELEMENT_BYTES}")]
    ElementLength {
        /// Its position.
        index: usize,
        /// Bytes received.
        got: usize,
    },
    /// A proof that is not 64 bytes.
    #[error("proof is {got} bytes, expected {PROOF_BYTES}")]
    ProofLength {
        /// Bytes received.
        got: usize,
    },
}

/// An Evaluate response of the right shape for the request it answers; its proof is checked by
/// `LookupClient::finalize`.
#[derive(Debug)]
pub struct EvaluationIn(Evaluation);

impl EvaluationIn {
    /// Checks `resp` against the number of elements sent.
    pub fn parse(resp: v1::EvaluateResponse, sent: usize) -> Result<Self, EvaluationError> {
        if resp.evaluated.len() != sent {
            return Err(EvaluationError::Count {
                sent,
                got: resp.evaluated.len(),
            });
        }
        let elements = resp
            .evaluated
            .iter()
            .enumerate()
            .map(|(index, e)| {
                <[u8; ELEMENT_BYTES]>::try_from(e.as_slice()).map_err(|_| {
                    EvaluationError::ElementLength {
                        index,
                        got: e.len(),
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        let proof = <[u8; PROOF_BYTES]>::try_from(resp.proof.as_slice()).map_err(|_| {
            EvaluationError::ProofLength {
                got: resp.proof.len(),
            }
        })?;
        Ok(Self(Evaluation { elements, proof }))
    }

    /// The evaluation, for `LookupClient::finalize`.
    pub fn evaluation(&self) -> &Evaluation {
        &self.0
    }
}

impl v1::EvaluateRequest {
    /// A request without keys, for a server whose engine registers none (YPIR+SP): charged to
    /// the peer's network and the server's limits only.
    pub fn keyless(blinded: &[[u8; ELEMENT_BYTES]]) -> Self {
        Self {
            key_id: Vec::new(),
            blinded: blinded.iter().map(|b| b.to_vec()).collect(),
            mac: Vec::new(),
        }
    }

    /// An Evaluate request for `blinded` under `keys`, with its MAC.
    pub fn authenticated(keys: &ClientKeys, blinded: &[[u8; ELEMENT_BYTES]]) -> Self {
        let mac = keys.query_mac_key().tag_evaluation(&keys.id(), blinded);
        Self {
            key_id: keys.id().0.to_vec(),
            blinded: blinded.iter().map(|b| b.to_vec()).collect(),
            mac: mac.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(n: usize) -> v1::EvaluateRequest {
        v1::EvaluateRequest {
            key_id: vec![1; 32],
            blinded: vec![vec![2; 32]; n],
            mac: vec![3; 32],
        }
    }

    #[test]
    fn requests_are_checked_for_shape() {
        let ok = EvaluateIn::parse(request(2), 2).unwrap();
        assert_eq!(ok.blinded().len(), 2);
        assert_eq!(ok.key_id(), Some(KeyId([1; 32])));
        assert_eq!(
            EvaluateIn::parse(request(0), 2).unwrap_err(),
            EvaluateError::NoElements
        );
        assert_eq!(
            EvaluateIn::parse(request(3), 2).unwrap_err(),
            EvaluateError::TooMany { got: 3, max: 2 }
        );
        let mut r = request(1);
        r.blinded[0].pop();
        assert_eq!(
            EvaluateIn::parse(r, 2).unwrap_err(),
            EvaluateError::ElementLength { index: 0, got: 31 }
        );
        let mut r = request(1);
        r.mac.clear();
        assert_eq!(
            EvaluateIn::parse(r, 2).unwrap_err(),
            EvaluateError::MacLength { got: 0 }
        );
        let mut r = request(1);
        r.key_id.push(0);
        assert_eq!(
            EvaluateIn::parse(r, 2).unwrap_err(),
            EvaluateError::KeyIdLength { got: 33 }
        );
    }

    /// A request without keys (a YPIR+SP client's) has neither key id nor MAC; one of the two
    /// alone is refused.
    #[test]
    fn keyless_requests_have_neither_key_id_nor_mac() {
        let keyless = v1::EvaluateRequest::keyless(&[[2; 32]]);
        let ok = EvaluateIn::parse(keyless.clone(), 2).unwrap();
        assert_eq!((ok.key_id(), ok.mac()), (None, None));
        let mut r = keyless.clone();
        r.mac = vec![3; 32];
        assert_eq!(
            EvaluateIn::parse(r, 2).unwrap_err(),
            EvaluateError::KeyIdLength { got: 0 }
        );
        let mut r = keyless;
        r.key_id = vec![1; 32];
        assert_eq!(
            EvaluateIn::parse(r, 2).unwrap_err(),
            EvaluateError::MacLength { got: 0 }
        );
    }

    #[test]
    fn responses_are_checked_for_shape() {
        let response = |n: usize, len: usize, proof: usize| v1::EvaluateResponse {
            evaluated: vec![vec![4; len]; n],
            proof: vec![5; proof],
        };
        let ok = EvaluationIn::parse(response(2, 32, 64), 2).unwrap();
        assert_eq!(ok.evaluation().elements.len(), 2);
        assert_eq!(
            EvaluationIn::parse(response(1, 32, 64), 2).unwrap_err(),
            EvaluationError::Count { sent: 2, got: 1 }
        );
        assert_eq!(
            EvaluationIn::parse(response(1, 33, 64), 1).unwrap_err(),
            EvaluationError::ElementLength { index: 0, got: 33 }
        );
        assert_eq!(
            EvaluationIn::parse(response(1, 32, 63), 1).unwrap_err(),
            EvaluationError::ProofLength { got: 63 }
        );
    }
}
