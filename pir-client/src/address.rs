//! The server address a caller gives: parsed as a URI once, before anything connects.

use tonic::codegen::http::Uri;

/// Why a server address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// A scheme other than `http` or `https`.
    #[error("unsupported scheme {scheme:?}: use http:// (plaintext) or https:// (TLS)")]
    Scheme {
        /// The scheme as given.
        scheme: String,
    },
    /// No host after the scheme.
    #[error("no host: write it as http://HOST:PORT or https://HOST:PORT")]
    NoHost,
    /// A port that is not a number from 1 to 65535.
    #[error("port {port:?} is out of range: a port is a number from 1 to 65535")]
    Port {
        /// The port as given.
        port: String,
    },
    /// A path, query or user name: the server is addressed by scheme, host and port only.
    #[error("unexpected {part} {text:?}: the address is only scheme://HOST:PORT")]
    Extra {
        /// Which part ("path", "query", "user info").
        part: &'static str,
        /// What was given.
        text: String,
    },
    /// Anything else the URI parser refuses.
    #[error("not a URI: {reason}")]
    Syntax {
        /// The parser's reason.
        reason: String,
    },
}

/// A server address: `http://` or `https://` (in any case), a host and an optional port.
/// A bare `HOST:PORT` means `https://HOST:PORT`: plaintext is only ever asked for by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    uri: Uri,
    tls: bool,
}

impl ServerAddress {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let text = text.trim();
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("https".to_owned(), text),
        };
        let tls = match scheme.as_str() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(AddressError::Scheme {
                    scheme: text.split_once("://").map_or("", |(s, _)| s).to_owned(),
                });
            }
        };
        let (authority, tail) = match rest.find(['/', '?', '#']) {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if !matches!(tail, "" | "/") {
            let part = if tail.starts_with('/') {
                "path"
            } else {
                "query"
            };
            return Err(AddressError::Extra {
                part,
                text: tail.to_owned(),
            });
        }
        if let Some((user, _)) = authority.split_once('@') {
            return Err(AddressError::Extra {
                part: "user info",
                text: user.to_owned(),
            });
        }
        // The port is checked here, so that 99999 is "out of range", not a parser's "invalid".
        let host_end = authority.rfind(']').map_or(0, |i| i + 1);
        let (host, port) = match authority[host_end..].rfind(':') {
            Some(i) => authority.split_at(host_end + i),
            None => (authority, ""),
        };
        if host.is_empty() {
            return Err(AddressError::NoHost);
        }
        if let Some(port) = port.strip_prefix(':')
            && !matches!(port.parse::<u32>(), Ok(1..=65535))
        {
            return Err(AddressError::Port {
                port: port.to_owned(),
            });
        }
        let uri = format!("{scheme}://{authority}")
            .parse::<Uri>()
            .map_err(|e| AddressError::Syntax {
                reason: e.to_string(),
            })?;
        Ok(Self { uri, tls })
    }

    /// Whether the address asks for TLS (`https://`).
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The normalised URI (lower-case scheme, no path).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Whether the host is this machine: an IP address in `127.0.0.0/8` or `::1` (an
    /// IPv4-mapped one too), or `localhost` and names under it (RFC 6761). Other names are not
    /// resolved: a name that happens to point at a loopback address does not count.
    pub fn is_loopback(&self) -> bool {
        let Some(host) = self.uri.host() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return ip.to_canonical().is_loopback();
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        host == "localhost" || host.ends_with(".localhost")
    }
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Uri` prints a trailing `/` for an empty path; an address has none.
        write!(f, "{}", self.uri.to_string().trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_in_any_case_and_bare_host_port() {
        for (text, shown, tls) in [
            ("http://127.0.0.1:50051", "http://127.0.0.1:50051", false),
            ("HTTP://127.0.0.1:50051", "http://127.0.0.1:50051", false),
            ("HttpS://localhost:443/", "https://localhost:443", true),
            ("127.0.0.1:50051", "https://127.0.0.1:50051", true),
            (
                "discovery.example:443",
                "https://discovery.example:443",
                true,
            ),
            ("http://[::1]:50051", "http://[::1]:50051", false),
            (
                "https://discovery.example",
                "https://discovery.example",
                true,
            ),
        ] {
            let a = ServerAddress::parse(text).unwrap();
            assert_eq!((a.to_string().as_str(), a.tls()), (shown, tls), "{text}");
        }
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        let err = |t| ServerAddress::parse(t).unwrap_err();
        assert_eq!(
            err("ftp://127.0.0.1:50051"),
            AddressError::Scheme {
                scheme: "ftp".into()
            }
        );
        assert_eq!(
            err("http://127.0.0.1:99999"),
            AddressError::Port {
                port: "99999".into()
            }
        );
        assert_eq!(
            err("http://127.0.0.1:0"),
            AddressError::Port { port: "0".into() }
        );
        assert_eq!(
            err("http://127.0.0.1:http"),
            AddressError::Port {
                port: "http".into()
            }
        );
        assert_eq!(err("http://:50051"), AddressError::NoHost);
        assert!(matches!(
            err("http://host:1/pir"),
            AddressError::Extra { part: "path", .. }
        ));
        assert!(matches!(
            err("http://user@host:1"),
            AddressError::Extra {
                part: "user info",
                ..
            }
        ));
        assert!(err("ftp://x:1").to_string().contains("use http://"));
    }

    #[test]
    fn loopback_hosts() {
        for (text, loopback) in [
            ("http://127.0.0.1:1", true),
            ("http://127.8.9.10:1", true),
            ("http://[::1]:1", true),
            ("http://[::ffff:127.0.0.1]:1", true),
            ("http://localhost:1", true),
            ("http://LocalHost.:1", true),
            ("http://pir.localhost:1", true),
            ("http://10.0.0.1:1", false),
            ("http://[::2]:1", false),
            ("http://0.0.0.0:1", false),
            ("http://localhost.example:1", false),
            ("http://discovery.example:1", false),
        ] {
            let a = ServerAddress::parse(text).unwrap();
            assert_eq!(a.is_loopback(), loopback, "{text}");
        }
    }
}
