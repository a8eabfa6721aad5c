//! How a client reaches each shard of a sharded directory: a URL pattern with `{i}`
//! (`--shard-endpoints`, e.g. a DNS name per shard that resolves to all its replicas), or a
//! file of one line per shard (`--shard-map`: `INDEX URL [URL...]`, `#` comments), several
//! URLs on a line being replicas of that shard.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::address::ServerAddress;

/// The placeholder a pattern's shard index replaces.
pub const SHARD_PLACEHOLDER: &str = "{i}";

/// Where each shard's replicas are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardMap {
    /// One URL per pattern for every shard, `{i}` replaced by the shard's index (several
    /// patterns: several replicas).
    Patterns(Vec<String>),
    /// A shard map file read into shard index → replica URLs.
    File {
        /// The file it was read from (named in errors about it).
        path: PathBuf,
        /// Every shard the file names, with its replicas in the file's order.
        shards: BTreeMap<u32, Vec<String>>,
    },
}

/// Why a shard map is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardMapError {
    /// A pattern without `{i}`: every shard would be the same endpoint.
    #[error(
        "shard endpoint pattern {pattern:?} has no {{i}} (the shard index): every shard would be \
         the same endpoint"
    )]
    NoPlaceholder {
        /// The pattern as given.
        pattern: String,
    },
    /// A URL (made from a pattern or read from the file) that is not a server address.
    #[error("{place}shard endpoint {url:?}: {reason}")]
    Address {
        /// Where it comes from: `FILE:LINE: `, or empty for a pattern.
        place: String,
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: crate::address::AddressError,
    },
    /// The file cannot be read.
    #[error("shard map {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of the file that is not `INDEX URL [URL...]`, or names a shard twice.
    #[error("shard map {}:{line}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// Its line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A file that names no shard.
    #[error("shard map {}: names no shard", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The directory has a shard the map does not name.
    #[error("shard map {}: names no endpoint for shard {shard} of {count}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// The shard it lacks.
        shard: u32,
        /// Shards in the directory.
        count: u32,
    },
}

impl ShardMap {
    /// A map from URL patterns, each with `{i}`; each pattern is one replica of every shard.
    /// The URLs a pattern makes are checked when a shard is first reached.
    pub fn patterns(patterns: Vec<String>) -> Result<Self, ShardMapError> {
        for pattern in &patterns {
            if !pattern.contains(SHARD_PLACEHOLDER) {
                return Err(ShardMapError::NoPlaceholder {
                    pattern: pattern.clone(),
                });
            }
            let url = pattern.replace(SHARD_PLACEHOLDER, "0");
            ServerAddress::parse(&url).map_err(|reason| ShardMapError::Address {
                place: String::new(),
                url,
                reason,
            })?;
        }
        Ok(Self::Patterns(patterns))
    }

    /// Reads a shard map file.
    pub fn from_file(path: &Path) -> Result<Self, ShardMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| ShardMapError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses a shard map's text (`path` names it in errors): one line per shard,
    /// `INDEX URL [URL...]`, blank lines and `#` comments skipped.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ShardMapError> {
        let mut shards = BTreeMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: String| ShardMapError::Line {
                path: path.to_path_buf(),
                line: n + 1,
                reason,
            };
            let mut words = line.split_whitespace();
            let index = words.next().unwrap_or_default();
            let index: u32 = index
                .parse()
                .map_err(|_| bad(format!("{index:?} is not a shard index")))?;
            let urls: Vec<String> = words.map(str::to_owned).collect();
            if urls.is_empty() {
                return Err(bad(format!("shard {index} has no URL")));
            }
            for url in &urls {
                ServerAddress::parse(url).map_err(|reason| ShardMapError::Address {
                    place: format!("{}:{}: ", path.display(), n + 1),
                    url: url.clone(),
                    reason,
                })?;
            }
            if shards.insert(index, urls).is_some() {
                return Err(bad(format!("shard {index} is named twice")));
            }
        }
        if shards.is_empty() {
            return Err(ShardMapError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self::File {
            path: path.to_path_buf(),
            shards,
        })
    }

    /// The replicas of shard `shard` of `count`, in the map's order.
    pub fn replicas(&self, shard: u32, count: u32) -> Result<Vec<String>, ShardMapError> {
        match self {
            Self::Patterns(patterns) => Ok(patterns
                .iter()
                .map(|p| p.replace(SHARD_PLACEHOLDER, &shard.to_string()))
                .collect()),
            Self::File { path, shards } => {
                shards
                    .get(&shard)
                    .cloned()
                    .ok_or_else(|| ShardMapError::Missing {
                        path: path.clone(),
                        shard,
                        count,
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_names_one_replica_per_pattern_for_every_shard() {
        let map = ShardMap::patterns(vec![
            "http://pir-shard-{i}.svc:50051".into(),
            "https://b-{i}.example:443".into(),
        ])
        .unwrap();
        assert_eq!(
            map.replicas(3, 4).unwrap(),
            ["http://pir-shard-3.svc:50051", "https://b-3.example:443"]
        );
        let err = ShardMap::patterns(vec!["http://one.svc:50051".into()]).unwrap_err();
        assert!(err.to_string().contains("no {i}"), "{err}");
        let err = ShardMap::patterns(vec!["ftp://s{i}:1".into()]).unwrap_err();
        assert!(matches!(err, ShardMapError::Address { .. }), "{err}");
    }

    #[test]
    fn a_file_names_replicas_per_shard_and_errors_name_file_and_line() {
        let path = Path::new("shards.map");
        let map = ShardMap::parse(
            "# the directory\n0 http://127.0.0.1:1 http://127.0.0.1:2\n\n1 http://127.0.0.1:3 # b\n",
            path,
        )
        .unwrap();
        assert_eq!(
            map.replicas(0, 2).unwrap(),
            ["http://127.0.0.1:1", "http://127.0.0.1:2"]
        );
        assert_eq!(map.replicas(1, 2).unwrap(), ["http://127.0.0.1:3"]);
        assert_eq!(
            map.replicas(2, 3).unwrap_err().to_string(),
            "shard map shards.map: names no endpoint for shard 2 of 3"
        );
        for (text, shown) in [
            (
                "0 http://a:1\nx http://b:1\n",
                "shards.map:2: \"x\" is not a shard index",
            ),
            ("0\n", "shards.map:1: shard 0 has no URL"),
            (
                "0 http://a:1\n0 http://b:1\n",
                "shards.map:2: shard 0 is named twice",
            ),
            ("# nothing\n", "shards.map: names no shard"),
        ] {
            let err = ShardMap::parse(text, path).unwrap_err().to_string();
            assert!(err.contains(shown), "{text:?}: {err}");
        }
        let err = ShardMap::parse("0 http://a:1\n1 gopher://b\n", path).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("shards.map:2: shard endpoint \"gopher://b\""),
            "{err}"
        );
        let err = ShardMap::from_file(Path::new("/nonexistent/shards.map")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("shard map /nonexistent/shards.map: "),
            "{err}"
        );
    }
}
