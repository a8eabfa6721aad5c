//! The Kubernetes manifests in `deploy/kubernetes/generated/` drive the real CLI: every `PIR_*`
//! variable a container sets is one `serve` reads, every flag a Job passes is one its
//! subcommand takes, and the values given parse (the shard selections). A renamed flag fails
//! here, not in a cluster.

use std::{collections::BTreeSet, path::PathBuf};

fn generated() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/generated");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes/generated is committed")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    files
}

/// `pir-server SUBCOMMAND --help`.
fn help(subcommand: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pir-server"))
        .args([subcommand, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_variable_the_manifests_set_is_one_serve_reads() {
    let help = help("serve");
    let mut seen = BTreeSet::new();
    for (file, text) in generated() {
        for line in text.lines() {
            let Some(name) = line.trim().strip_prefix("- name: PIR_") else {
                continue;
            };
            let var = format!("PIR_{}", name.trim());
            assert!(
                help.contains(&format!("[env: {var}=")),
                "{file} sets {var}, which `pir-server serve` does not read"
            );
            seen.insert(var);
        }
    }
    for needed in [
        "PIR_MANIFEST",
        "PIR_SHARDS",
        "PIR_KEY_STORE",
        "PIR_OPRF_KEY",
    ] {
        assert!(seen.contains(needed), "no manifest sets {needed}: {seen:?}");
    }
}

#[test]
fn every_flag_the_jobs_pass_is_one_their_subcommand_takes() {
    let mut checked = 0;
    for (file, text) in generated() {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let Some(args) = lines.iter().position(|l| *l == "args:") else {
            continue;
        };
        let Some(subcommand) = lines[args + 1].strip_prefix("- ") else {
            continue;
        };
        let help = help(subcommand);
        for line in &lines[args + 2..] {
            let Some(arg) = line.strip_prefix("- ") else {
                break;
            };
            let arg = arg.trim_matches('"');
            if let Some(flag) = arg.strip_prefix("--") {
                assert!(
                    help.contains(&format!("--{flag} ")) || help.contains(&format!("--{flag}\n")),
                    "{file} passes --{flag}, which `pir-server {subcommand}` does not take"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 6,
        "the build and manifest Jobs' flags ({checked})"
    );
}

#[test]
fn the_shard_selections_the_manifests_give_parse() {
    for (file, text) in generated() {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            if *line == "- name: PIR_SHARDS" {
                let value = lines[i + 1]
                    .strip_prefix("value: ")
                    .unwrap_or_else(|| panic!("{file}: PIR_SHARDS has a literal value"))
                    .trim_matches('"');
                value
                    .parse::<pir_server::ShardSelection>()
                    .unwrap_or_else(|e| panic!("{file}: PIR_SHARDS={value}: {e}"));
            }
        }
    }
}
