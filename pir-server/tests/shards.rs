//! Serving a sharded directory: one process answers several shards of a manifest, GetConfig
//! describes the shard asked for with the signed manifest and the shards served, a query names
//! its shard, a shard not served is NOT_FOUND, a process of no shard only evaluates, and a
//! reload swaps the manifest and its shards together.

mod common;

use std::{net::SocketAddr, path::Path};

use common::{connect, evaluate, register};
use pir_core::{
    Cpi, LookupClient,
    keyword::shard_of,
    snapshot::{MANIFEST_FILE_NAME, Manifest, shard_file_name},
    testing::{
        NOW, build_options, build_shards, bulk_mappings, dp_key, dp_keys_of, oprf_key, tiny_scheme,
        trust,
    },
};
use pir_proto::{
    AnswerIn, ConfigIn,
    v1::{GetConfigRequest, QueryRequest, discovery_client::DiscoveryClient},
};
use pir_server::{Directory, Reloader, RunningServer, ServeOptions, ServerError, ShardSelection};
use tonic::{Code, transport::Channel};

const SHARDS: u32 = 4;
const COUNT: usize = 60;

fn cpi(i: usize) -> Cpi {
    Cpi::parse(&format!("mailto:u{i}@example.org")).unwrap()
}

/// Writes the shards of `count` mappings at `epoch` and their signed manifest into `dir`.
fn write_directory(dir: &Path, count: usize, epoch: u64) -> Manifest {
    let shards = build_shards(
        bulk_mappings(count),
        &build_options(tiny_scheme(), epoch),
        SHARDS,
    );
    let mut files = Vec::new();
    for (i, s) in shards.iter().enumerate() {
        let name = format!("e{epoch}-{}", shard_file_name(i as u32));
        s.write(&dir.join(&name)).unwrap();
        files.push((name, s.header().clone()));
    }
    let mut manifest = Manifest::of_shards(files, None, NOW).unwrap();
    manifest.sign(&dp_key()).unwrap();
    manifest.write(&dir.join(MANIFEST_FILE_NAME)).unwrap();
    manifest
}

fn selection(s: &str) -> ShardSelection {
    s.parse().unwrap()
}

async fn serve(dir: &Path, shards: &str) -> RunningServer {
    let directory = Directory::load_sharded(
        &dir.join(MANIFEST_FILE_NAME),
        &selection(shards),
        Some(&dp_keys_of(&dp_key())),
        None,
    )
    .unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    RunningServer::start(directory, addr, ServeOptions::default(), Some(oprf_key()))
        .await
        .unwrap()
}

async fn config_of(
    rpc: &mut DiscoveryClient<Channel>,
    shard: Option<u32>,
) -> Result<ConfigIn, Code> {
    let raw = rpc
        .get_config(GetConfigRequest { shard })
        .await
        .map_err(|s| s.code())?
        .into_inner();
    Ok(ConfigIn::try_from(raw).unwrap())
}

/// Looks `i` up through `rpc` in `shard`, as a client routed there would.
async fn lookup_in(
    rpc: &mut DiscoveryClient<Channel>,
    client: &LookupClient,
    shard: u32,
    i: usize,
) -> Result<bool, Code> {
    let config = config_of(rpc, Some(shard)).await?;
    let shard_client = LookupClient::with_keys(
        config.lookup().clone(),
        client.keys().unwrap().clone(),
        trust(),
    )
    .unwrap();
    let y = evaluate(rpc, &shard_client, &[cpi(i)]).await.remove(0);
    let pending = shard_client.query(&y).unwrap();
    let mut request = QueryRequest::authenticated(
        client.keys().unwrap(),
        config.lookup().epoch(),
        vec![pending.query().to_vec()],
    );
    request.shard = shard;
    let response = rpc.query(request).await.map_err(|s| s.code())?.into_inner();
    assert_eq!(
        response.snapshot_hash,
        config.header_hash().unwrap().to_vec(),
        "the answer names the shard's header"
    );
    let [answer] = AnswerIn::<1>::parse(response, &config)
        .unwrap()
        .into_answers();
    Ok(pending.decode(&shard_client, &answer, NOW).unwrap().found())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_serve_four_shards_and_each_cpi_is_found_in_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_directory(dir.path(), COUNT, 5);
    let low = serve(dir.path(), "0-1").await;
    let high = serve(dir.path(), "2,3").await;
    assert_eq!(low.service().served_shards(), [0, 1]);
    assert_eq!(high.service().served_shards(), [2, 3]);
    assert_eq!(low.service().epoch(), 5);
    let mut rpcs = [connect(&low).await, connect(&high).await];
    // GetConfig: the first shard served by default, any served one by index, with the manifest.
    let first = config_of(&mut rpcs[1], None).await.unwrap();
    assert_eq!(first.lookup().layout().shard.index, 2);
    assert_eq!(first.served_shards(), [2, 3]);
    assert_eq!(first.manifest().unwrap(), &manifest);
    let third = config_of(&mut rpcs[1], Some(3)).await.unwrap();
    assert_eq!(third.lookup().layout().shard.index, 3);
    assert_eq!(
        config_of(&mut rpcs[1], Some(0)).await.unwrap_err(),
        Code::NotFound
    );
    // One key set, registered with each process, fits every shard.
    let (client, _) = register(&mut rpcs[0]).await;
    rpcs[1]
        .register_keys(pir_proto::v1::RegisterKeysRequest::for_keys(
            client.keys().unwrap(),
        ))
        .await
        .unwrap();
    let mut per_shard = [0; SHARDS as usize];
    for i in (0..COUNT).step_by(3) {
        let y = pir_core::testing::evaluate(&cpi(i));
        let home = shard_of(y.output(), SHARDS);
        per_shard[home as usize] += 1;
        let rpc = &mut rpcs[(home / 2) as usize];
        assert_eq!(
            lookup_in(rpc, &client, home, i).await,
            Ok(true),
            "{} in {home}",
            cpi(i)
        );
        // Asked in the other shard of the same process: served, and not there.
        let other = home ^ 1;
        assert_eq!(lookup_in(rpc, &client, other, i).await, Ok(false));
        // Asked of the process that does not serve its shard: NOT_FOUND, before any work.
        let elsewhere = &mut rpcs[(1 - home / 2) as usize];
        assert_eq!(
            lookup_in(elsewhere, &client, home, i).await,
            Err(Code::NotFound)
        );
    }
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
    // A raw query for a shard nobody serves.
    let mut request = QueryRequest::authenticated(client.keys().unwrap(), 5, vec![vec![0; 8]]);
    request.shard = 9;
    let status = rpcs[0].query(request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("serves shards [0, 1]"),
        "{}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_of_no_shard_evaluates_and_describes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_directory(dir.path(), 20, 5);
    let evaluator = serve(dir.path(), "none").await;
    assert!(evaluator.service().served_shards().is_empty());
    let mut rpc = connect(&evaluator).await;
    let config = config_of(&mut rpc, None).await.unwrap();
    assert!(config.served_shards().is_empty());
    assert_eq!(config.manifest().unwrap(), &manifest);
    assert_eq!(config.lookup().layout().oprf_key, oprf_key().public());
    let (client, _) = register(&mut rpc).await;
    let ys = evaluate(&mut rpc, &client, &[cpi(1), cpi(2)]).await;
    assert_eq!(
        ys[0].output(),
        pir_core::testing::evaluate(&cpi(1)).output()
    );
    let mut request = QueryRequest::authenticated(client.keys().unwrap(), 5, vec![vec![0; 8]]);
    request.shard = 0;
    assert_eq!(rpc.query(request).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_manifest_and_its_shards_together() {
    let dir = tempfile::tempdir().unwrap();
    write_directory(dir.path(), 20, 5);
    let server = serve(dir.path(), "1-2").await;
    let reloader = Reloader::new(
        server.service().clone(),
        dir.path().join(MANIFEST_FILE_NAME),
        Some(dp_keys_of(&dp_key())),
    )
    .for_shards(selection("1-2"));
    let next = write_directory(dir.path(), 40, 6);
    assert_eq!(reloader.reload(None).await.unwrap(), (5, 6));
    let mut rpc = connect(&server).await;
    let config = config_of(&mut rpc, Some(2)).await.unwrap();
    assert_eq!(config.manifest().unwrap(), &next);
    assert_eq!(config.header_hash().unwrap(), next.shards[2].header_hash);
    // The same manifest again is refused (epochs only rise), and the served one stays.
    let err = reloader.reload(None).await.unwrap_err();
    assert!(matches!(err, ServerError::EpochNotRising { .. }), "{err}");
    // A manifest signed by another DP is refused.
    let mut forged = write_directory(dir.path(), 40, 7);
    forged
        .sign(&pir_core::identity::DpKey::from_seed(&[77; 32]))
        .unwrap();
    forged.write(&dir.path().join(MANIFEST_FILE_NAME)).unwrap();
    let err = reloader.reload(None).await.unwrap_err();
    assert!(matches!(err, ServerError::Refused { .. }), "{err}");
    assert_eq!(server.service().epoch(), 6);
}

#[test]
fn shard_selections_parse_and_refuse_what_the_manifest_lacks() {
    assert_eq!(selection("all"), ShardSelection::All);
    assert_eq!(selection("none"), ShardSelection::None);
    assert_eq!(selection("3,0-1,1"), ShardSelection::Some(vec![0, 1, 3]));
    for bad in ["", "x", "3-1", "1-", "-2", "0-99999999"] {
        assert!(bad.parse::<ShardSelection>().is_err(), "{bad:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    write_directory(dir.path(), 20, 5);
    let err = Directory::load_sharded(
        &dir.path().join(MANIFEST_FILE_NAME),
        &selection("2-4"),
        None,
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("--shards names shard 4"), "{err}");
    // A shard served alone, as if it were the whole directory, is refused.
    let manifest = Manifest::load(&dir.path().join(MANIFEST_FILE_NAME)).unwrap();
    let alone = pir_core::Snapshot::load(&dir.path().join(&manifest.shards[2].file)).unwrap();
    let Err(err) = pir_server::DiscoveryService::new(alone, ServeOptions::default(), None) else {
        panic!("a shard of four served as a whole directory");
    };
    assert!(err.to_string().contains("--manifest"), "{err}");
    // A manifest that is not a regular file is refused, naming it.
    let err = Directory::load_sharded(dir.path(), &selection("0"), None, None).unwrap_err();
    assert!(matches!(err, ServerError::Refused { .. }), "{err}");
    // A shard file that is not the one the manifest names is refused before it is served.
    let wrong = &dir.path().join(&manifest.shards[0].file);
    std::fs::copy(dir.path().join(&manifest.shards[1].file), wrong).unwrap();
    let err = Directory::load_sharded(
        &dir.path().join(MANIFEST_FILE_NAME),
        &selection("0"),
        None,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, ServerError::Refused { .. }), "{err}");
}
