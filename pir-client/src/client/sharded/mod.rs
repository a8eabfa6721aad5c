//! Lookups in a sharded directory: [`ShardedClient`].
//!
//! ```text
//! connect:  GetConfig ──▶ the manifest (with DP keys: signed; never older than one seen)
//!             no manifest: an unsharded server ──▶ a PirClient, unchanged
//!           one key set for every shard (the manifest's scheme) ──▶ RegisterKeys there
//!             (and at the first evaluator that answers, with options.evaluators())
//! lookup:   RenewKeys at every endpoint holding the keys whose lease is half gone
//!           Evaluate every CPI (once, before any query) ──▶ y ──▶ shard_of(y)
//!             at the first endpoint, or the evaluators with failover (evaluators.rs)
//!           plan.rs: which query to which shard (privacy mode, padding), shuffled
//!           per query: replica (round-robin) ──▶ GetConfig(shard) once: its manifest ours
//!             (or newer: followed) and the shard asked for ──▶ Query(shard, epoch, [query])
//!               unavailable ──▶ the next replica, a fresh encryption (shard_attempts)
//!               unknown-key ──▶ RegisterKeys there (failed: the next replica);
//!               stale epoch, another snapshot ──▶ GetConfig(shard) again (MAX_ATTEMPTS)
//!           once every query is answered: decode each CPI's own shard's answer
//! ```
//!
//! `directory.rs` accepts manifests and checks a shard endpoint's configuration against
//! them, `replicas.rs` holds a shard's replicas and says which failures move to the next,
//! `plan.rs` routes a batch. The steps of a query are `client/`'s own (`connect.rs`, `rpc.rs`,
//! `keys.rs`, `evaluate.rs`, `evaluators.rs`, `lookup.rs`).
//!
//! Registrations are renewed at every endpoint that holds them (registered there, or that
//! answered with the keys), not once per key store: the client cannot tell which endpoints
//! share a store, and a renewal is a few dozen bytes. An endpoint that no longer knows the
//! keys, or fails to renew, is forgotten until it answers again; the next request there that
//! says `unknown-key` registers once, rather than every endpoint of a store that lost them.

mod directory;
mod plan;
mod replicas;

use std::{sync::Arc, time::Instant};

use pir_core::{
    ClientKeys, Cpi, KeyId, LookupClient, TrustStore, oprf::Evaluated, snapshot::Manifest,
};
use pir_proto::{
    ConfigIn,
    v1::{self, discovery_client::DiscoveryClient},
};
use tonic::transport::Channel;

use super::{
    PirClient,
    check::check_params,
    connect::open,
    evaluate::{Evaluations, evaluate},
    evaluators::{Evaluation, Evaluators},
    keys::{self, Registrations, generate_keys},
    lookup::{Answered, Heal, LookupOutcome, MAX_ATTEMPTS, Reply, read_reply},
    options::ClientOptions,
    rpc::{Wire, get_config, request, unavailable, unavailable_status, within},
};
use crate::{
    error::{ClientError, Result, ShardRefusal},
    keyfile::{KeyFile, KeyFileContents, SeenSnapshot},
};
use directory::Offered;
use plan::plan;
use replicas::{Shard, ShardConfig};

/// A client of a directory that may be sharded: every lookup goes to the shard that holds the
/// CPI (or to every shard, [`ShardPrivacy::AllShards`](crate::ShardPrivacy)), over the shard's
/// replicas with failover. Against an unsharded server it is a [`PirClient`].
#[derive(Debug)]
pub struct ShardedClient {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Single(Box<PirClient>),
    Sharded(Box<Directory>),
}

/// The state of a client of a sharded directory.
#[derive(Debug)]
struct Directory {
    url: String,
    /// The endpoint connected to: it evaluates (without `options.evaluators()`) and the keys
    /// are registered with it first.
    first: DiscoveryClient<Channel>,
    first_config: ConfigIn,
    /// The DP's evaluators, when the first endpoint does not evaluate, with failover.
    evaluators: Option<Evaluators>,
    /// Every endpoint that holds the keys' registration, renewed when due.
    registrations: Registrations,
    /// The manifest followed, and its version (what the key file remembers with DP keys).
    manifest: Manifest,
    seen: SeenSnapshot,
    /// The one key set, with the first endpoint's configuration: blinds and finalises
    /// evaluations (every shard has the manifest's OPRF key).
    base: Arc<LookupClient>,
    keys: ClientKeys,
    trust: TrustStore,
    shards: Vec<Shard>,
    key_file: Option<KeyFile>,
    options: ClientOptions,
}

impl ShardedClient {
    /// Connects to `url`, any endpoint of the directory: an unsharded server makes a
    /// [`PirClient`] (see [`PirClient::connect`]); a shard's endpoint gives the DP's manifest,
    /// accepted (with [`ClientOptions::dp_keys`] its signature; never older than one seen),
    /// and the shards' replicas come from [`ClientOptions::shard_map`] (without one, `url`
    /// must serve every shard). Keys come from the key file or are generated, and registered
    /// with `url` (other endpoints are registered with when they say they do not know them).
    pub async fn connect(url: &str, options: ClientOptions) -> Result<Self> {
        let mut wire = Wire::default();
        let (first, first_config) = open(url, &options, None, &mut wire).await?;
        let Some(manifest) = first_config.manifest().cloned() else {
            if options.shard_map.is_some() {
                tracing::warn!(url, "unsharded server: the shard map is not used");
            }
            let client = PirClient::connected(url, first, first_config, options, wire).await?;
            return Ok(Self {
                inner: Inner::Single(Box::new(client)),
            });
        };
        let directory =
            Directory::connect(url, first, first_config, manifest, options, wire).await?;
        Ok(Self {
            inner: Inner::Sharded(Box::new(directory)),
        })
    }

    /// Looks up one CPI: see [`Self::lookup_many`].
    pub async fn lookup(&mut self, cpi: &Cpi) -> Result<LookupOutcome> {
        let mut outcomes = self.lookup_many(std::slice::from_ref(cpi)).await;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(ClientError::Internal("one CPI, one outcome".into())))
    }

    /// Looks up several CPIs, as [`PirClient::lookup_many`] does: every CPI is evaluated, then
    /// every query of the batch is sent (routed by the privacy mode, padded if asked, in a
    /// random order) and answered before any answer is decoded; a failure is its CPI's only.
    /// A cover query's failure is nobody's (it is retried like any other query). A CPI's
    /// bytes are its share of the evaluation and every query made for it (in `all-shards`
    /// mode, one per shard); padding is counted in no CPI's.
    pub async fn lookup_many(&mut self, cpis: &[Cpi]) -> Vec<Result<LookupOutcome>> {
        match &mut self.inner {
            Inner::Single(client) => client.lookup_many(cpis).await,
            Inner::Sharded(directory) => directory.lookup_many(cpis).await,
        }
    }

    /// The manifest followed; `None` for an unsharded server.
    pub fn manifest(&self) -> Option<&Manifest> {
        match &self.inner {
            Inner::Single(_) => None,
            Inner::Sharded(d) => Some(&d.manifest),
        }
    }

    /// The configuration of the endpoint connected to (of the first shard it serves).
    pub fn config(&self) -> &ConfigIn {
        match &self.inner {
            Inner::Single(client) => client.config(),
            Inner::Sharded(d) => &d.first_config,
        }
    }

    /// The id of this client's public keys (one set for every shard); `None` for a YPIR+SP
    /// snapshot (no keys).
    pub fn key_id(&self) -> Option<KeyId> {
        match &self.inner {
            Inner::Single(client) => client.key_id(),
            Inner::Sharded(d) => Some(d.keys.id()),
        }
    }

    /// The address connected to, as given.
    pub fn url(&self) -> &str {
        match &self.inner {
            Inner::Single(client) => client.url(),
            Inner::Sharded(d) => &d.url,
        }
    }

    /// The replicas of each shard, as the client reaches them (empty for an unsharded server).
    pub fn shard_endpoints(&self) -> Vec<Vec<String>> {
        match &self.inner {
            Inner::Single(_) => Vec::new(),
            Inner::Sharded(d) => d
                .shards
                .iter()
                .map(|s| s.replicas.iter().map(|r| r.url.clone()).collect())
                .collect(),
        }
    }
}

impl Directory {
    async fn connect(
        url: &str,
        first: DiscoveryClient<Channel>,
        first_config: ConfigIn,
        manifest: Manifest,
        options: ClientOptions,
        mut wire: Wire,
    ) -> Result<Self> {
        let key_file = options.key_file.clone().map(KeyFile::new);
        let stored = match &key_file {
            Some(file) => file.load()?,
            None => None,
        };
        let stored_seen = stored.as_ref().and_then(|c| c.seen);
        // The key file remembers what was verified against the DP keys only.
        let floor = stored_seen.filter(|_| options.dp_keys.is_some());
        let seen = directory::accept(&manifest, &options, floor.as_ref(), key_file.as_ref())?;
        check_params(&manifest.scheme, &options)?;
        let Some(&params) = manifest.scheme.spiral() else {
            return Err(ClientError::RefusedParams {
                params: manifest.scheme.to_string(),
                reason: crate::error::ParamsRefusal::ShardedKeyless,
            });
        };
        let (keys, reused) = match stored {
            Some(KeyFileContents { keys, .. })
                if !options.rotate_keys && *keys.params() == params =>
            {
                (keys, true)
            }
            _ => (generate_keys(params).await?, false),
        };
        let remembered = if options.dp_keys.is_some() {
            Some(seen)
        } else {
            stored_seen
        };
        if let Some(file) = &key_file
            && (!reused || remembered != stored_seen)
        {
            file.write(&keys, remembered.as_ref())?;
        }
        let trust = options.trust.clone();
        let base =
            LookupClient::with_keys(first_config.lookup().clone(), keys.clone(), trust.clone())?;
        let count = manifest.count();
        let mut shards = Vec::with_capacity(count as usize);
        for index in 0..count {
            let urls = match &options.shard_map {
                Some(map) => map.replicas(index, count)?,
                None if first_config.served_shards().contains(&index) => vec![url.to_owned()],
                None => {
                    return Err(ClientError::ShardRefused {
                        shard: index,
                        url: url.to_owned(),
                        reason: ShardRefusal::NotServed,
                    });
                }
            };
            let mut shard = Shard::new(urls, rand::random::<usize>());
            for replica in &mut shard.replicas {
                if replica.url == url {
                    replica.grpc = Some(first.clone());
                }
            }
            shards.push(shard);
        }
        let mut directory = Self {
            url: url.to_owned(),
            first,
            first_config,
            evaluators: Evaluators::of(&options),
            registrations: Registrations::default(),
            manifest,
            seen,
            base: Arc::new(base),
            keys,
            trust,
            shards,
            key_file,
            options,
        };
        let deadline = directory.options.request_timeout;
        if reused {
            // Perhaps registered by an earlier run: the first renewal tells.
            directory.registrations.accepted(url, &directory.first);
        } else {
            let lease = keys::register(
                &mut directory.first,
                &directory.keys,
                &directory.first_config,
                deadline,
                &mut wire,
            )
            .await?;
            directory
                .registrations
                .registered(url, &directory.first, lease);
        }
        if let Some(evaluators) = &mut directory.evaluators {
            // Evaluations are charged to the keys: the evaluator must know them too.
            let ours = directory.manifest.oprf_key;
            evaluators
                .connect(
                    &directory.base,
                    &ours,
                    &directory.options,
                    &mut directory.registrations,
                    &mut wire,
                )
                .await?;
        }
        tracing::debug!(
            url,
            shards = count,
            manifest_epoch = directory.manifest.epoch,
            key_id = %directory.keys.id(),
            bytes_sent = wire.sent,
            bytes_received = wire.received,
            "connected to a sharded directory"
        );
        Ok(directory)
    }

    async fn lookup_many(&mut self, cpis: &[Cpi]) -> Vec<Result<LookupOutcome>> {
        // Renewals depend on time only: a few dozen bytes per endpoint, half-way through.
        self.registrations
            .renew_due(
                &self.keys,
                self.options.request_timeout,
                &mut Wire::default(),
            )
            .await;
        let evaluated = self.evaluate_all(cpis).await;
        let homes: Vec<Option<u32>> = evaluated
            .iter()
            .map(|e| {
                e.as_ref()
                    .ok()
                    .map(|(e, _)| self.manifest.shard_of(e.output()))
            })
            .collect();
        let sends = plan(
            &homes,
            self.manifest.count(),
            self.options.shard_privacy,
            self.options.pad_shards,
            &mut rand::thread_rng(),
        );
        let mut wires: Vec<Wire> = evaluated
            .iter()
            .map(|e| e.as_ref().map(|(_, w)| *w).unwrap_or_default())
            .collect();
        let mut answered: Vec<Option<Result<Answered>>> = cpis.iter().map(|_| None).collect();
        for send in sends {
            let real = match (send.real, send.cpi) {
                (true, Some(i)) => evaluated[i].as_ref().ok().map(|(e, _)| e),
                _ => None,
            };
            let mut wire = Wire::default();
            let outcome = self.exchange(send.shard, real, &mut wire).await;
            if let Some(i) = send.cpi {
                wires[i].sent += wire.sent;
                wires[i].received += wire.received;
            }
            match (send.cpi, outcome) {
                (Some(i), outcome) if send.real => {
                    answered[i] = Some(outcome.and_then(|a| {
                        a.ok_or_else(|| ClientError::Internal("a real query, an answer".into()))
                    }));
                }
                (_, Err(e)) => {
                    tracing::debug!(shard = send.shard, error = %e, "a cover query failed");
                }
                _ => {}
            }
        }
        let mut outcomes = Vec::with_capacity(cpis.len());
        for ((cpi, evaluated), (answered, wire)) in cpis
            .iter()
            .zip(evaluated)
            .zip(answered.into_iter().zip(wires))
        {
            outcomes.push(match (evaluated, answered) {
                (Err(source), _) => Err(ClientError::BatchEvaluation {
                    cpi: cpi.to_string(),
                    source,
                }),
                (Ok(_), Some(answered)) => {
                    answered.and_then(|answered| Answered { wire, ..answered }.decode())
                }
                (Ok(_), None) => Err(ClientError::Internal("an evaluated CPI unsent".into())),
            });
        }
        outcomes
    }

    /// Evaluates every CPI, in requests of at most the evaluator's batch limit: each CPI with
    /// its share of its request's bytes, or its request's error.
    async fn evaluate_all(
        &mut self,
        cpis: &[Cpi],
    ) -> Vec<std::result::Result<(Evaluated, Wire), Arc<ClientError>>> {
        let per_request = match &self.evaluators {
            Some(evaluators) => evaluators.batch(),
            None => None,
        }
        .unwrap_or(self.first_config.max_queries_per_request());
        let mut out = Vec::with_capacity(cpis.len());
        for chunk in cpis.chunks(per_request.max(1) as usize) {
            let mut wire = Wire::default();
            match self.evaluate_chunk(chunk, &mut wire).await {
                Ok(evaluated) => {
                    let n = chunk.len() as u64;
                    let share = Wire {
                        sent: wire.sent.div_ceil(n),
                        received: wire.received.div_ceil(n),
                    };
                    out.extend(evaluated.into_iter().map(|e| Ok((e, share))));
                }
                Err(e) => {
                    let e = Arc::new(e);
                    out.extend(chunk.iter().map(|_| Err(Arc::clone(&e))));
                }
            }
        }
        out
    }

    /// Evaluates one request's CPIs, registering the keys with an evaluator that does not
    /// know them; with evaluators given, failing over among them.
    async fn evaluate_chunk(&mut self, cpis: &[Cpi], wire: &mut Wire) -> Result<Vec<Evaluated>> {
        if let Some(evaluators) = &mut self.evaluators {
            let ours = self.manifest.oprf_key;
            let leases = &mut self.registrations;
            return match evaluators
                .evaluate(&self.base, cpis, &ours, &self.options, leases, wire)
                .await?
            {
                Evaluation::Done(evaluated) => Ok(evaluated),
                // As below: connecting again follows a rotated OPRF key.
                Evaluation::Refresh(e) => Err(e),
            };
        }
        let deadline = self.options.request_timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let grpc = &mut self.first;
            match evaluate(grpc, &self.base, cpis, deadline, wire).await? {
                Evaluations::Done(evaluated) => return Ok(evaluated),
                Evaluations::Heal(Heal::Register(e)) if attempt >= MAX_ATTEMPTS => return Err(e),
                Evaluations::Heal(Heal::Register(_)) => {
                    tracing::info!(key_id = %self.keys.id(), "evaluator does not know our keys");
                    let config = &self.first_config;
                    let lease = keys::register(grpc, &self.keys, config, deadline, wire).await?;
                    self.registrations.registered(&self.url, grpc, lease);
                }
                // Proven under another OPRF key than the manifest's: the DP rotated it, and
                // the directory was rebuilt. Connecting again follows it.
                Evaluations::Heal(Heal::Refresh(e)) => return Err(e),
            }
        }
    }

    /// Sends one query to shard `shard`: `evaluated`'s real query, or a cover query. Moves to
    /// the next replica when one is unavailable or refused (at most `shard_attempts` in all),
    /// heals an unknown key or a changed snapshot there (at most [`MAX_ATTEMPTS`] queries),
    /// and returns the real query's answer, undecoded.
    async fn exchange(
        &mut self,
        shard: u32,
        evaluated: Option<&Evaluated>,
        wire: &mut Wire,
    ) -> Result<Option<Answered>> {
        let started = Instant::now();
        let deadline = self.options.request_timeout;
        let attempts = self.options.shard_attempts.max(1) as usize;
        let s = shard as usize;
        let mut replica = self.shards[s].start();
        let mut tried = Vec::new();
        let mut queries = 0;
        loop {
            if tried.len() >= attempts {
                return Err(ClientError::ShardUnavailable { shard, tried });
            }
            let url = self.shards[s].replicas[replica].url.clone();
            let (mut grpc, ShardConfig { config, lookup }) =
                match self.ready(shard, replica, wire).await {
                    Ok(ready) => ready,
                    Err(e) => {
                        tracing::info!(shard, %url, error = %e, "replica left for the next");
                        tried.push(format!("{url}: {e}"));
                        self.shards[s].replicas[replica].grpc = None;
                        replica = self.shards[s].after(replica);
                        continue;
                    }
                };
            queries += 1;
            let (bytes, pending) = match evaluated {
                Some(evaluated) => {
                    let pending = lookup.query(evaluated)?;
                    (pending.query().to_vec(), Some(pending))
                }
                None => (lookup.cover_query(&mut rand::rngs::OsRng)?, None),
            };
            let mut message =
                v1::QueryRequest::authenticated(&self.keys, config.lookup().epoch(), vec![bytes]);
            message.shard = shard;
            wire.send(&message);
            let reply = within("Query", deadline, grpc.query(request(message, deadline))).await;
            let failed = match &reply {
                Err(e) if unavailable(e) => Some(e.to_string()),
                Ok(Err(status)) if unavailable_status(status) => {
                    Some(ClientError::rpc("Query", status.clone()).to_string())
                }
                _ => None,
            };
            if let Some(failed) = failed {
                tracing::info!(shard, %url, error = %failed, "replica unavailable");
                tried.push(format!("{url}: {failed}"));
                self.shards[s].replicas[replica].grpc = None;
                replica = self.shards[s].after(replica);
                continue;
            }
            let heal = match read_reply(reply?, &config, wire)? {
                Reply::Answer(answer) => {
                    self.registrations.accepted(&url, &grpc);
                    return Ok(pending.map(|pending| Answered {
                        decoder: lookup,
                        pending,
                        answer,
                        wire: *wire,
                        elapsed: started.elapsed(),
                    }));
                }
                Reply::Heal(heal) => heal,
            };
            match heal {
                Heal::Register(e) | Heal::Refresh(e) if queries >= MAX_ATTEMPTS => return Err(e),
                Heal::Register(_) => {
                    tracing::info!(shard, %url, "replica does not know our keys: registering");
                    match keys::register(&mut grpc, &self.keys, &config, deadline, wire).await {
                        Ok(lease) => self.registrations.registered(&url, &grpc, lease),
                        // Its key store may be down (UNAVAILABLE): another replica may know
                        // the keys, or have a store that works.
                        Err(e) => {
                            tracing::info!(shard, %url, error = %e, "replica left for the next");
                            tried.push(format!("{url}: {e}"));
                            self.shards[s].replicas[replica].grpc = None;
                            replica = self.shards[s].after(replica);
                        }
                    }
                }
                Heal::Refresh(_) => {
                    tracing::info!(shard, %url, "the shard's snapshot changed: refreshing");
                    self.shards[s].config = None;
                }
            }
        }
    }

    /// The channel to a replica of shard `shard` and the shard's configuration: opened and
    /// fetched (GetConfig of that shard) when not yet, and checked against the manifest,
    /// following a newer one.
    async fn ready(
        &mut self,
        shard: u32,
        replica: usize,
        wire: &mut Wire,
    ) -> Result<(DiscoveryClient<Channel>, ShardConfig)> {
        let s = shard as usize;
        let url = self.shards[s].replicas[replica].url.clone();
        let fresh = match self.shards[s].replicas[replica].grpc.clone() {
            None => {
                let (grpc, config) = open(&url, &self.options, Some(shard), wire).await?;
                self.shards[s].replicas[replica].grpc = Some(grpc);
                Some(config)
            }
            Some(mut grpc) if self.shards[s].config.is_none() => {
                Some(get_config(&mut grpc, Some(shard), self.options.request_timeout, wire).await?)
            }
            Some(_) => None,
        };
        if let Some(config) = fresh {
            self.follow(shard, &url, config)?;
        }
        let grpc = self.shards[s].replicas[replica]
            .grpc
            .clone()
            .ok_or_else(|| ClientError::Internal("a replica just opened".into()))?;
        let config = self.shards[s]
            .config
            .clone()
            .ok_or_else(|| ClientError::Internal("a shard just configured".into()))?;
        Ok((grpc, config))
    }

    /// Takes an endpoint's configuration of shard `shard` as the shard's, once it is checked
    /// against the manifest (a newer manifest is accepted and followed: every other shard's
    /// configuration is then fetched again).
    fn follow(&mut self, shard: u32, url: &str, config: ConfigIn) -> Result<()> {
        if let Offered::Newer(newer) = directory::offered(&config, shard, &self.manifest, url)? {
            let floor = Some(&self.seen);
            let seen = directory::accept(newer, &self.options, floor, self.key_file.as_ref())?;
            if let Some(file) = &self.key_file
                && self.options.dp_keys.is_some()
            {
                file.write(&self.keys, Some(&seen))?;
            }
            tracing::info!(
                from = self.manifest.epoch,
                to = newer.epoch,
                "the directory has a new manifest: following it"
            );
            self.manifest = newer.clone();
            self.seen = seen;
            for other in &mut self.shards {
                other.config = None;
            }
        }
        let lookup = LookupClient::with_keys(
            config.lookup().clone(),
            self.keys.clone(),
            self.trust.clone(),
        )?;
        self.shards[shard as usize].config = Some(ShardConfig {
            config,
            lookup: Arc::new(lookup),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use pir_core::testing::{evaluate, trust};

    use super::*;

    /// A cover query is what a real one is on the wire: the same length, made with the same
    /// keys, a fresh encryption each time.
    #[test]
    fn cover_queries_look_like_real_ones() {
        let snapshot = pir_core::testing::tiny_snapshot();
        let config = snapshot.config();
        let client = LookupClient::new(config, trust()).unwrap();
        let cpi = Cpi::parse("tel:+14155550100").unwrap();
        let real = client.query(&evaluate(&cpi)).unwrap();
        let mut rng = rand::rngs::OsRng;
        let cover = client.cover_query(&mut rng).unwrap();
        assert_eq!(cover.len(), real.query().len());
        assert_ne!(cover, client.cover_query(&mut rng).unwrap());
    }
}
