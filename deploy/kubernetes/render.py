#!/usr/bin/env python3
"""Writes the per-shard Kubernetes manifests of pir-discovery (stdlib only).

Everything whose count or content follows from the shard count N, the replicas per shard R or
the image is written here rather than by hand: one Deployment, headless Service and
PodDisruptionBudget per shard, the evaluator, the Indexed Job that builds the N shards, the Job
that assembles and signs their manifest, and the shared volume sized for N shards.

    python3 deploy/kubernetes/render.py                      # N=4, R=2 into generated/
    python3 deploy/kubernetes/render.py --shards 8 --replicas 3 --out /tmp/pir-k8s
    python3 deploy/kubernetes/render.py --print-tls-hosts    # --host flags for tls-selfsigned

The committed generated/ is this script's output with its defaults; `validate` checks that a
fresh render equals it. Sizing figures and their sources: README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

NAMESPACE = "pir-discovery"
UID = 10001  # the fixed non-root uid (and gid, fsGroup) of every pir-server container

# --- Figures for a 1M-mapping shard (2-core AVX2 machines; docs/scaling.md) -------------------
# Measured by `pir-benches --bin scale` (layout v2: sealed slots, 2^16 x 8192 B for 1M mappings).
SNAPSHOT_BYTES = 4_831_838_514
# The peak RSS measured at layout v1 (2,625,327,104 B for a 2,415,919,350 B snapshot, 8 clients,
# docs/performance.md) scaled to this snapshot: the same 1.087x snapshot + keys.
PEAK_RSS_BYTES = 5_250_654_006
# The slowest measured load of the 2.25 GiB v1 snapshot (3.40 s) scaled to twice its size.
WORST_LOAD_SECONDS = 6.80


class Octal(int):
    """An int written in octal (file modes): YAML 1.1, as Kubernetes and PyYAML read it."""


class Block(str):
    """A string written as a literal block (shell scripts)."""


PLAIN = re.compile(r"^[A-Za-z_/$.][A-Za-z0-9_./=:$(){}\-]*$")
RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Octal):
        return f"0{int(value):o}"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    text = str(value)
    if PLAIN.match(text) and text.lower() not in RESERVED and ": " not in text and not text.endswith(":"):
        return text
    return json.dumps(text)


def emit(value, indent: int = 0) -> list[str]:
    """YAML lines for dicts, lists and scalars (block style, keys in insertion order)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, Block):
                lines.append(f"{pad}{key}: |")
                lines.extend(f"{pad}  {line}" if line else "" for line in item.rstrip("\n").split("\n"))
            elif isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(emit(item, indent + 2 if isinstance(item, dict) else indent))
            else:
                lines.append(f"{pad}{key}: {scalar(item) if item != {} and item != [] else ('{}' if item == {} else '[]')}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, Block):
                lines.append(f"{pad}- |")
                lines.extend(f"{pad}  {line}" if line else "" for line in item.rstrip("\n").split("\n"))
            elif isinstance(item, (dict, list)) and item:
                sub = emit(item, indent + 2)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {scalar(item)}")
    else:
        lines.append(pad + scalar(value))
    return lines


def document(comment: str, *resources) -> str:
    head = "".join(f"# {line}".rstrip() + "\n" for line in comment.strip("\n").split("\n"))
    return head + "".join("---\n" + "\n".join(emit(r)) + "\n" for r in resources)


# --- Building blocks -------------------------------------------------------------------------


def labels(component: str, **extra) -> dict:
    out = {
        "app.kubernetes.io/name": "pir-server",
        "app.kubernetes.io/instance": "pir-discovery",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "pir-discovery",
    }
    out.update(extra)
    return out


def selector(component: str, **extra) -> dict:
    keep = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")
    return {k: v for k, v in labels(component, **extra).items() if k in keep or k in extra}


def meta(name: str, lab: dict, **more) -> dict:
    return {"name": name, "namespace": NAMESPACE, "labels": lab, **more}


def container_security() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security() -> dict:
    # fsGroup makes the secret files (0440, group UID) and the shared volume readable by the
    # uid; it also adds group read to every secret file whatever defaultMode says
    # (kubernetes/kubernetes#57923), which is why secrets are copied by secrets_init().
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def projected(name: str, items: list[tuple[str, str, str]]) -> dict:
    """A projected volume of (secret, key, file) items, group-readable (fsGroup) only."""
    return {
        "name": name,
        "projected": {
            "defaultMode": Octal(0o440),
            "sources": [
                {"secret": {"name": secret, "items": [{"key": key, "path": path}]}}
                for secret, key, path in items
            ],
        },
    }


def secrets_init(args, files: list[str], extra_script: str = "", env=None, mounts=None) -> dict:
    """The init container that copies secret files into an in-memory emptyDir at mode 0400.

    pir-server refuses a secret file (OPRF key, DP key, TLS key, admin token) that its group or
    others may read (mode & 0077, symlinks followed). Kubernetes cannot produce such a file
    for a non-root uid: with fsGroup it forces group read (0440), without fsGroup the file is
    root's and the uid cannot read it. A copy made by the uid itself can be 0400.
    """
    script = "set -eu\numask 077\n"
    script += "".join(f"cp /secrets-in/{f} /run/pir/secrets/{f}\n" for f in files)
    script += "chmod 0400 /run/pir/secrets/*\n" + extra_script
    return {
        "name": "secrets",
        "image": args.init_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", Block(script)],
        **({"env": env} if env else {}),
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "32Mi"},
        },
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "secrets-in", "mountPath": "/secrets-in", "readOnly": True},
            {"name": "secrets", "mountPath": "/run/pir/secrets"},
            *(mounts or []),
        ],
    }


def memory_volumes() -> list[dict]:
    return [
        {"name": "secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]


def data_volume(read_only: bool) -> dict:
    return {"name": "data", "persistentVolumeClaim": {"claimName": "pir-snapshots", "readOnly": read_only}}


def env_from_config(name: str, config: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"configMapKeyRef": {"name": config, "key": key}}}


def gib(n_bytes: float) -> float:
    return n_bytes / (1 << 30)


# --- Servers ---------------------------------------------------------------------------------


def server_env(args, shards: str, extra: list[dict]) -> list[dict]:
    return [
        env_from_config("SERVE_EPOCH", "pir-serving", "epoch"),
        {"name": "PIR_MANIFEST", "value": "/data/epochs/$(SERVE_EPOCH)/manifest.pirman"},
        {"name": "PIR_SHARDS", "value": shards},
        {"name": "PIR_LISTEN", "value": "0.0.0.0:50051"},
        {"name": "PIR_METRICS_LISTEN", "value": "0.0.0.0:9090"},
        # Admin (hot reload) stays on loopback: reach it with kubectl port-forward.
        {"name": "PIR_ADMIN_LISTEN", "value": "127.0.0.1:50052"},
        {"name": "PIR_ADMIN_TOKEN_FILE", "value": "/run/pir/secrets/admin-token"},
        {"name": "PIR_TLS_CERT", "value": "/run/pir/public/tls.crt"},
        {"name": "PIR_TLS_KEY", "value": "/run/pir/secrets/tls.key"},
        {"name": "PIR_DP_PUB", "value": "/run/pir/public/dp.pub"},
        {"name": "PIR_KEY_STORE", "value": "redis://pir-valkey:6379/0"},
        {"name": "PIR_KEY_TTL", "value": "24h"},
        {"name": "PIR_SHUTDOWN_DELAY", "value": f"{args.shutdown_delay}s"},
        {"name": "PIR_LOG_FORMAT", "value": "json"},
        *extra,
    ]


def server_deployment(args, name: str, component: str, shards: str, replicas: int,
                      extra_env: list[dict], secret_files: list[tuple[str, str, str]],
                      resources: dict, startup_failures: int, extra_labels: dict) -> dict:
    lab = labels(component, **extra_labels)
    sel = selector(component, **extra_labels)
    affinity_term = {
        "labelSelector": {"matchLabels": sel},
        "topologyKey": "kubernetes.io/hostname",
    }
    if args.anti_affinity == "required":
        affinity = {"requiredDuringSchedulingIgnoredDuringExecution": [affinity_term]}
    else:
        affinity = {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": affinity_term}]}
    http = lambda path: {"path": path, "port": "metrics", "scheme": "HTTP"}  # noqa: E731
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, lab),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 900,
            "selector": {"matchLabels": sel},
            # No surge: a new pod needs a whole shard's memory; one replica keeps serving.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {
                "metadata": {
                    "labels": lab,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "9090",
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    # Service links would put PIR_*-looking variables into the environment.
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": args.shutdown_delay + 70 + 10,
                    "securityContext": pod_security(),
                    "affinity": {"podAntiAffinity": affinity},
                    "initContainers": [secrets_init(args, [f for _, _, f in secret_files])],
                    "containers": [{
                        "name": "pir-server",
                        "image": args.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": ["serve"],
                        "env": server_env(args, shards, extra_env),
                        "ports": [
                            {"name": "grpc", "containerPort": 50051, "protocol": "TCP"},
                            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                        ],
                        # Startup: the snapshot load (see README, "Sizing").
                        "startupProbe": {
                            "httpGet": http("/readyz"),
                            "periodSeconds": 5,
                            "timeoutSeconds": 3,
                            "failureThreshold": startup_failures,
                        },
                        "readinessProbe": {
                            "httpGet": http("/readyz"),
                            "periodSeconds": 5,
                            "timeoutSeconds": 3,
                            "failureThreshold": 2,
                        },
                        "livenessProbe": {
                            "httpGet": http("/healthz"),
                            "periodSeconds": 10,
                            "timeoutSeconds": 5,
                            "failureThreshold": 3,
                        },
                        "resources": resources,
                        "securityContext": container_security(),
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/data/epochs", "subPath": "epochs", "readOnly": True},
                            {"name": "secrets", "mountPath": "/run/pir/secrets", "readOnly": True},
                            {"name": "public", "mountPath": "/run/pir/public", "readOnly": True},
                            {"name": "tmp", "mountPath": "/tmp"},
                        ],
                    }],
                    "volumes": [
                        data_volume(read_only=True),
                        projected("secrets-in", secret_files),
                        projected("public", [("pir-tls", "tls.crt", "tls.crt"), ("pir-dp-pub", "dp.pub", "dp.pub")]),
                        *memory_volumes(),
                    ],
                },
            },
        },
    }


def headless_service(name: str, component: str, extra_labels: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, labels(component, **extra_labels)),
        "spec": {
            "clusterIP": "None",
            "selector": selector(component, **extra_labels),
            "ports": [
                {"name": "grpc", "port": 50051, "targetPort": "grpc", "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def pdb(name: str, component: str, extra_labels: dict) -> dict:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, labels(component, **extra_labels)),
        "spec": {
            "minAvailable": 1,
            # A pod that never got ready (bad snapshot, crash loop) must not block a drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": selector(component, **extra_labels)},
        },
    }


def shard_memory_gib(args) -> int:
    """One shard's memory limit: peak RSS under load, the key cache, a second snapshot."""
    need = gib(PEAK_RSS_BYTES) + args.key_cache_mib / 1024 + gib(SNAPSHOT_BYTES)
    return math.ceil(need * 1.15)  # allocator slack, key-store transfers


def startup_failures() -> int:
    """Startup probe failures at 5 s a probe: 600 s, about 90x the slowest load (scaled)."""
    return 120


def shard_files(args) -> dict[str, str]:
    out = {}
    mem = f"{shard_memory_gib(args)}Gi"
    resources = {
        "requests": {"cpu": str(args.cpu), "memory": mem},
        "limits": {"cpu": str(args.cpu), "memory": mem},
    }
    for i in range(args.shards):
        extra = {"pir-discovery/shard": str(i)}
        name = f"pir-shard-{i}"
        comment = f"""\
Shard {i} of {args.shards}: {args.replicas} stateless replicas, a headless Service (so that
{name}.{NAMESPACE}.svc:50051 resolves to every ready replica) and a PodDisruptionBudget.
Memory {mem}: peak RSS {PEAK_RSS_BYTES} B + --key-cache-mib {args.key_cache_mib}
+ a second snapshot ({SNAPSHOT_BYTES} B) during a reload, +15 %
(docs/scaling.md, 1M mappings; README.md beside this file, "Sizing").
GENERATED by render.py {render_flags(args)}: edit render.py, not this file."""
        out[f"shard-{i}.yaml"] = document(
            comment,
            server_deployment(
                args, name, "shard-server", str(i), args.replicas,
                [{"name": "PIR_KEY_CACHE_MIB", "value": str(args.key_cache_mib)}],
                [("pir-tls", "tls.key", "tls.key"), ("pir-admin-token", "token", "admin-token")],
                resources, startup_failures(), extra),
            headless_service(name, "shard-server", extra),
            pdb(name, "shard-server", extra),
        )
    return out


def evaluator_file(args) -> dict[str, str]:
    per_replica = max(1, args.global_evaluation_rate // args.evaluator_replicas)
    comment = f"""\
The OPRF evaluator: `serve --shards none --oprf-key`, the only server that holds the OPRF key.
It answers Discovery/Evaluate and GetConfig, loads no shard. Headless Service
pir-evaluator.{NAMESPACE}.svc:50051.
--global-evaluation-rate is per process: {args.global_evaluation_rate}/s for the cluster is
{per_replica}/s on each of {args.evaluator_replicas} replicas.
GENERATED by render.py {render_flags(args)}: edit render.py, not this file."""
    resources = {
        "requests": {"cpu": "1", "memory": "1536Mi"},
        "limits": {"cpu": "1", "memory": "1536Mi"},
    }
    env = [
        {"name": "PIR_OPRF_KEY", "value": "/run/pir/secrets/oprf.key"},
        {"name": "PIR_KEY_CACHE_MIB", "value": "1024"},
        {"name": "PIR_GLOBAL_EVALUATION_RATE", "value": str(per_replica)},
    ]
    secrets = [
        ("pir-tls", "tls.key", "tls.key"),
        ("pir-admin-token", "token", "admin-token"),
        ("pir-oprf", "oprf.key", "oprf.key"),
    ]
    return {"evaluator.yaml": document(
        comment,
        server_deployment(args, "pir-evaluator", "evaluator", "none", args.evaluator_replicas,
                          env, secrets, resources, 24, {}),
        headless_service("pir-evaluator", "evaluator", {}),
        pdb("pir-evaluator", "evaluator", {}),
    )}


# --- Build -----------------------------------------------------------------------------------


def job(name: str, component: str, spec: dict, pod: dict) -> dict:
    lab = labels(component)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(name, lab),
        "spec": {**spec, "template": {"metadata": {"labels": lab}, "spec": pod}},
    }


def job_pod(args, init: dict, command: list[str], env: list[dict], mounts: list[dict],
            volumes: list[dict], resources: dict) -> dict:
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security(),
        "initContainers": [init],
        "containers": [{
            "name": "pir-server",
            "image": args.image,
            "imagePullPolicy": "IfNotPresent",
            "args": command,
            "env": env,
            "resources": resources,
            "securityContext": container_security(),
            "volumeMounts": [
                *mounts,
                {"name": "secrets", "mountPath": "/run/pir/secrets", "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        }],
        "volumes": volumes,
    }


def build_files(args) -> dict[str, str]:
    n = args.shards
    build_env = [
        env_from_config("BUILD_EPOCH", "pir-build", "epoch"),
        env_from_config("BUILD_MAPPINGS", "pir-build", "mappings"),
    ]
    index_env = {
        "name": "JOB_COMPLETION_INDEX",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}},
    }
    init = secrets_init(
        args, ["oprf.key"], 'mkdir -p "/data/epochs/$BUILD_EPOCH"\n', env=build_env,
        mounts=[{"name": "data", "mountPath": "/data"}])
    shards = job(
        "pir-build-shards", "build",
        {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": args.build_parallelism or n,
            "backoffLimitPerIndex": 2,
            "maxFailedIndexes": 0,
            "activeDeadlineSeconds": 4 * 3600,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
        },
        job_pod(
            args, init,
            ["build", "--mappings", "/data/$(BUILD_MAPPINGS)",
             "--trust", "/run/pir/public/issuers.pub",
             "--oprf-key", "/run/pir/secrets/oprf.key",
             "--shards", str(n), "--shard-index", "$(JOB_COMPLETION_INDEX)",
             "--epoch", "$(BUILD_EPOCH)", "--out", "/data/epochs/$(BUILD_EPOCH)"],
            [*build_env, index_env],
            [{"name": "data", "mountPath": "/data"},
             {"name": "public", "mountPath": "/run/pir/public", "readOnly": True}],
            [data_volume(read_only=False),
             projected("secrets-in", [("pir-oprf", "oprf.key", "oprf.key")]),
             projected("public", [("pir-issuer-trust", "issuers.pub", "issuers.pub")]),
             *memory_volumes()],
            {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}},
        ),
    )
    manifest = job(
        "pir-build-manifest", "build-manifest",
        {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 2,
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": 7 * 24 * 3600,
        },
        job_pod(
            args, secrets_init(args, ["dp.key"]),
            ["manifest", "--dir", "/data/epochs/$(BUILD_EPOCH)", "--dp-key", "/run/pir/secrets/dp.key"],
            build_env[:1],
            [{"name": "data", "mountPath": "/data/epochs", "subPath": "epochs"}],
            [data_volume(read_only=False),
             projected("secrets-in", [("pir-dp-signing", "dp.key", "dp.key")]),
             *memory_volumes()],
            {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        ),
    )
    flags = render_flags(args)
    return {
        "build-shards-job.yaml": document(f"""\
Builds the {n} shards of one epoch in parallel: an Indexed Job, pod i runs
`pir-server build --shards {n} --shard-index i` into /data/epochs/EPOCH/shard-0000i.pirsnap.
EPOCH and the mappings path (relative to the volume) come from the ConfigMap pir-build, so every
index gets the same --epoch. Run it again for the next epoch: delete the Job, update pir-build,
apply this file. Memory 8Gi per index is an ESTIMATE (about 6 GB each seen for two concurrent
builds of a 1M shard from 4M mappings; peak RSS not measured).
GENERATED by render.py {flags}: edit render.py, not this file.""", shards),
        "build-manifest-job.yaml": document(f"""\
Assembles and signs /data/epochs/EPOCH/manifest.pirman once every shard of the epoch is built
(run it after `kubectl wait --for=condition=complete job/pir-build-shards`). The only pod that
gets the DP signing key.
GENERATED by render.py {flags}: edit render.py, not this file.""", manifest),
    }


def storage_file(args) -> dict[str, str]:
    size = args.shards * args.volume_gib_per_shard
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta("pir-snapshots", labels("storage")),
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": f"{size}Gi"}},
        },
    }
    return {"storage.yaml": document(f"""\
The shared volume: input/ (mappings, read by the build Job only) and epochs/EPOCH/ (shards and
manifest; servers mount epochs/ read-only, never input/). ReadWriteMany: the build indexes
write from several nodes and every server pod reads. No storageClassName is set: the cluster's
default class must provision ReadWriteMany (NFS, CephFS, EFS, Filestore, Azure Files...), or
render with --storage-class NAME.
{size}Gi = {args.shards} shards x {args.volume_gib_per_shard} GiB: two epochs of a 1M-mapping shard
({SNAPSHOT_BYTES} B each) plus its input and margin.
GENERATED by render.py {render_flags(args)}: edit render.py, not this file.""",
        _with_class(pvc, args.storage_class))}


def _with_class(pvc: dict, storage_class: str | None) -> dict:
    if storage_class:
        pvc["spec"]["storageClassName"] = storage_class
    return pvc


# --- Command line ----------------------------------------------------------------------------

DEFAULTS = {
    "shards": 4,
    "replicas": 2,
    "evaluator_replicas": 2,
    "image": "registry.example/pir-discovery/pir-server:0.1.0",
    "init_image": "docker.io/library/busybox:1.36.1",
    "anti_affinity": "preferred",
    "build_parallelism": 0,
    "key_cache_mib": 2048,
    "cpu": 2,
    "shutdown_delay": 10,
    "global_evaluation_rate": 200,
    "volume_gib_per_shard": 16,
    "storage_class": None,
}


def render_flags(args) -> str:
    """The flags that differ from the defaults, for the generated files' headers."""
    flags = [
        f"--{k.replace('_', '-')} {getattr(args, k)}"
        for k, v in DEFAULTS.items()
        if getattr(args, k) != v
    ]
    return " ".join(flags) if flags else "(defaults: --shards 4 --replicas 2)"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=int, help="shards N (default 4)")
    p.add_argument("--replicas", type=int, help="replicas of each shard (default 2)")
    p.add_argument("--evaluator-replicas", type=int, help="replicas of the evaluator (default 2)")
    p.add_argument("--image", help="the pir-server image")
    p.add_argument("--init-image", help="image with sh, cp, chmod, mkdir for the init step (busybox)")
    p.add_argument("--anti-affinity", choices=["preferred", "required"],
                   help="spread a shard's replicas over nodes: preferred (default) or required")
    p.add_argument("--build-parallelism", type=int, help="shard builds at once (default: all N)")
    p.add_argument("--key-cache-mib", type=int, help="each shard server's --key-cache-mib (2048)")
    p.add_argument("--cpu", type=int, help="cores per shard server, request = limit (2)")
    p.add_argument("--shutdown-delay", type=int, help="--shutdown-delay in seconds (10)")
    p.add_argument("--global-evaluation-rate", type=int,
                   help="evaluations a second for the whole cluster, split over the evaluators (200)")
    p.add_argument("--volume-gib-per-shard", type=int, help="shared volume GiB per shard (16)")
    p.add_argument("--storage-class", help="storageClassName of the shared volume (default: the cluster's)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "generated",
                   help="output directory (default: generated/ beside this script)")
    p.add_argument("--print-tls-hosts", action="store_true",
                   help="print the --host flags of `pir-server tls-selfsigned` for these shards")
    args = p.parse_args(argv)
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.shards < 1 or args.replicas < 1 or args.evaluator_replicas < 1:
        p.error("--shards, --replicas and --evaluator-replicas must be at least 1")
    if args.shards > 100_000:
        p.error("--shards: shard files are numbered with 5 digits")

    if args.print_tls_hosts:
        names = [f"pir-shard-{i}" for i in range(args.shards)] + ["pir-evaluator"]
        print(" ".join(f"--host {n}.{NAMESPACE}.svc --host {n}.{NAMESPACE}.svc.cluster.local"
                       for n in names))
        return 0

    files: dict[str, str] = {}
    for part in (storage_file, build_files, shard_files, evaluator_file):
        files.update(part(args))
    args.out.mkdir(parents=True, exist_ok=True)
    stale = {p.name for p in args.out.glob("*.yaml")} - set(files)
    for name in sorted(stale):
        (args.out / name).unlink()
    for name, text in files.items():
        (args.out / name).write_text(text)
    print(f"wrote {len(files)} files to {args.out}" + (f", removed {len(stale)} stale" if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
