"""Interop test: the Rust `pir-server` (tonic) spoken to by Python `grpcio`.

Everything a second gRPC implementation can check without Spiral key generation: the standard
health service, server reflection through grpcio's stock v1alpha client (each port listing only
what it serves), `GetConfig` decoded with stubs generated here from `proto/proto/pir/v1/pir.proto`
(with the DP's OPRF public key that `oprf-keygen` printed), the documented error codes and
`pir-reason` trailers for bad `Query`, `RegisterKeys` and `Evaluate` requests, `Evaluate` on a PIR
host without the OPRF key, the message size limit, the HTTP probes, TLS with a
`pir-server tls-selfsigned` certificate, and a graceful shutdown on SIGTERM (exit code 0).

Run from the repository root:

    python3 -m pip install -r interop/requirements.txt
    python3 -m pytest -q interop

The server binary is `target/release/pir-server` (under $CARGO_TARGET_DIR if set; PIR_SERVER_BIN
names another one); if it is missing it is built with `cargo build --release -p pir-server`.
"""

from __future__ import annotations

import importlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto" / "proto"  # include path: pir/v1/pir.proto lives under it
PROTO_FILE = "pir/v1/pir.proto"
TARGET_DIR = REPO / os.environ.get("CARGO_TARGET_DIR", "target")  # absolute values win
BUILT_BINARY = TARGET_DIR / "release" / "pir-server"

MIB = 1 << 20
SERVER_MAX_MESSAGE = 32 * MIB  # `pir-server serve --max-message-mib` default
SERVER_MAX_QUERIES = 32  # `--max-queries-per-request` default
MAPPINGS = 300
STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 20.0
RPC_TIMEOUT_S = 20.0
CLIENT_OPTIONS = [
    # Large enough to send the oversized request below and to receive anything the server sends.
    ("grpc.max_send_message_length", 64 * MIB),
    ("grpc.max_receive_message_length", 64 * MIB),
]

# The test-only parameters of `build --danger-test-params` (SchemeParams::danger_test_only_small).
TEST_PARAMS = {"n": 2, "nu_1": 6, "nu_2": 2, "p": 256, "item_bytes": 8192}
TEST_QUERY_BYTES = 16416
# Keyword layout v2: every CPI is placed by the DP's VOPRF (RFC 9497, ristretto255-SHA512).
LAYOUT_VERSION = 3
ELEMENT_BYTES = 32  # a blinded or evaluated ristretto255 element, and the OPRF public key
MAC_BYTES = 32  # HMAC-SHA256
KEY_ID_BYTES = 32


# ---- helpers ------------------------------------------------------------------------------------


def _run(args: list[str], cwd: Path, timeout: float = 300.0) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def _reason(err: grpc.RpcError) -> str | None:
    """The `pir-reason` trailer of a failed call, if any."""
    for key, value in err.trailing_metadata() or ():
        if key == "pir-reason":
            return value
    return None


def _describe(err: grpc.RpcError) -> str:
    return (
        f"code={err.code()} details={err.details()!r} "
        f"trailers={list(err.trailing_metadata() or ())}"
    )


def _expect_error(call, request, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=RPC_TIMEOUT_S)
    err = info.value
    assert err.code() == code, _describe(err)
    return err


def _oprf_keygen(exe: str, cwd: Path, out: str = "oprf.key") -> bytes:
    """`pir-server oprf-keygen --out OUT`: the owner-only key file, and the public key it prints."""
    proc = _run([exe, "oprf-keygen", "--out", out], cwd)
    assert (cwd / out).stat().st_mode & 0o077 == 0, "the OPRF key is owner-only"
    marker = "OPRF public key "
    assert marker in proc.stdout, proc.stdout
    public = bytes.fromhex(proc.stdout.split(marker, 1)[1].split()[0])
    assert len(public) == ELEMENT_BYTES, proc.stdout
    return public


def _health(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S).status


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_binary() -> Path:
    explicit = os.environ.get("PIR_SERVER_BIN")
    if explicit:
        path = Path(explicit)
        assert path.exists(), f"PIR_SERVER_BIN={explicit} does not exist"
        return path
    if not BUILT_BINARY.exists():
        # Output goes to pytest's captured stdout/stderr (shown with the failure).
        build = subprocess.run(["cargo", "build", "--release", "-p", "pir-server"], cwd=REPO)
        if build.returncode != 0:
            pytest.fail(f"cargo build --release -p pir-server exited {build.returncode}")
    assert BUILT_BINARY.exists(), f"{BUILT_BINARY} missing after cargo build"
    return BUILT_BINARY


@pytest.fixture(scope="module")
def pir(tmp_path_factory) -> types.SimpleNamespace:
    """Python stubs generated now from the repository's proto with grpc_tools.protoc."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("stubs")
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_ROOT / PROTO_FILE),
        ]
    )
    assert rc == 0, f"protoc failed with {rc}"
    for pkg in (out / "pir", out / "pir" / "v1"):
        (pkg / "__init__.py").touch()
    sys.path.insert(0, str(out))
    try:
        for name in [m for m in sys.modules if m == "pir" or m.startswith("pir.")]:
            del sys.modules[name]  # never pick up a stale or unrelated `pir` package
        pb2 = importlib.import_module("pir.v1.pir_pb2")
        pb2_grpc = importlib.import_module("pir.v1.pir_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    return types.SimpleNamespace(pb2=pb2, grpc=pb2_grpc)


ADMIN_TOKEN = "interop-admin-token-0123456789"


@dataclass
class Server:
    address: str
    admin_address: str
    http_address: str
    process: subprocess.Popen
    workdir: Path
    log: Path
    oprf_public_key: bytes


@pytest.fixture(scope="module")
def server(server_binary: Path, tmp_path_factory):
    work = tmp_path_factory.mktemp("pir-server")
    exe = str(server_binary)
    _run([exe, "issuer-keygen", "--out", "issuer.key"], work)
    oprf_public_key = _oprf_keygen(exe, work)
    _run(
        [exe, "synth", "--count", str(MAPPINGS), "--issuer-key", "issuer.key",
         "--out", "m.jsonl", "--seed", "3"],
        work,
    )
    _run(
        [exe, "build", "--mappings", "m.jsonl", "--trust", "issuer.pub",
         "--oprf-key", "oprf.key", "--out", "db.pirsnap", "--danger-test-params"],
        work,
    )

    address = f"127.0.0.1:{_free_port()}"
    admin_address = f"127.0.0.1:{_free_port()}"
    http_address = f"127.0.0.1:{_free_port()}"
    token = work / "admin.token"
    token.write_text(ADMIN_TOKEN + "\n")
    token.chmod(0o600)  # the server refuses a secret that group or others may read
    log = work / "serve.log"
    env = dict(os.environ, RUST_LOG="warn")
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [exe, "serve", "--snapshot", "db.pirsnap", "--listen", address,
             "--oprf-key", "oprf.key",
             "--admin-token-file", "admin.token", "--admin-listen", admin_address,
             "--metrics-listen", http_address],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    # This channel stays connected (idle) through SIGTERM: graceful shutdown must not wait for
    # clients to hang up.
    idle = grpc.insecure_channel(address)
    try:
        _wait_serving(idle, process, log)
        yield Server(address=address, admin_address=admin_address, http_address=http_address,
                     process=process, workdir=work, log=log, oprf_public_key=oprf_public_key)

        if process.poll() is not None:
            pytest.fail(f"pir-server died during the tests with {process.returncode}\n"
                        f"log:\n{_tail(log)}")
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pir-server did not exit within {SHUTDOWN_TIMEOUT_S} s of SIGTERM\n"
                        f"log:\n{_tail(log)}")
        assert code == 0, f"pir-server exited {code} after SIGTERM\nlog:\n{_tail(log)}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        idle.close()


def _wait_serving(channel: grpc.Channel, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer yet"
    stub = health_pb2_grpc.HealthStub(channel)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"pir-server exited {process.returncode} at start\nlog:\n{_tail(log)}")
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = f"status {status}"
        except grpc.RpcError as e:
            last = _describe(e)
        time.sleep(0.1)
    process.kill()
    process.wait()
    pytest.fail(f"pir-server not SERVING after {STARTUP_TIMEOUT_S} s ({last})\nlog:\n{_tail(log)}")


@pytest.fixture(scope="module")
def channel(server: Server):
    # Closed before the server fixture's teardown sends SIGTERM.
    with grpc.insecure_channel(server.address, options=CLIENT_OPTIONS) as ch:
        yield ch


@pytest.fixture(scope="module")
def discovery(pir, channel):
    return pir.grpc.DiscoveryStub(channel)


@pytest.fixture(scope="module")
def config(pir, discovery):
    return discovery.GetConfig(pir.pb2.GetConfigRequest(), timeout=RPC_TIMEOUT_S)


# ---- tests (run in file order; the last one checks the server survived the others) -------------


def test_health_serving(channel):
    serving = health_pb2.HealthCheckResponse.SERVING
    assert _health(channel, "") == serving
    assert _health(channel, "pir.v1.Discovery") == serving
    # Standard grpc.health.v1 behaviour for a service the server does not know.
    with pytest.raises(grpc.RpcError) as info:
        _health(channel, "no.such.Service")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND, _describe(info.value)


# Reflection through grpcio's stock client, which speaks grpc.reflection.v1alpha only.
REFLECTION = {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}


def test_reflection_v1alpha_on_the_main_port(channel):
    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    assert services == {"pir.v1.Discovery", "grpc.health.v1.Health"} | REFLECTION, services
    # The descriptors resolve too, so generic clients can build requests.
    pool = DescriptorPool(db)
    discovery = pool.FindServiceByName("pir.v1.Discovery")
    methods = {m.name: m for m in discovery.methods}
    assert set(methods) == {"GetConfig", "RegisterKeys", "RenewKeys", "Query", "Evaluate"}
    evaluate = methods["Evaluate"]
    assert evaluate.input_type.full_name == "pir.v1.EvaluateRequest"
    assert evaluate.output_type.full_name == "pir.v1.EvaluateResponse"


def test_reflection_v1alpha_on_the_admin_port(server):
    with grpc.insecure_channel(server.admin_address) as admin:
        db = ProtoReflectionDescriptorDatabase(admin)
        services = set(db.get_services())
    assert services == {"pir.v1.Admin"} | REFLECTION, services


def _http(server: Server, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{server.http_address}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_http_probes_and_metrics(server):
    assert _http(server, "/healthz") == (200, "ok\n")
    assert _http(server, "/readyz") == (200, "ready\n")
    status, text = _http(server, "/metrics")
    assert status == 200
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds", "pir_build_info{", "pir_snapshot_load_seconds",
                 "pir_evaluations_total"):
        assert name in text, name


def test_get_config(server, config):
    assert config.epoch > 0
    scheme = config.scheme
    for field, expected in TEST_PARAMS.items():
        assert getattr(scheme, field) == expected, f"scheme.{field}"
    assert config.layout.num_buckets == 2 ** (scheme.nu_1 + scheme.nu_2) == 256
    assert len(config.layout.salt) > 0
    assert config.layout.version == LAYOUT_VERSION
    # Layout version 3: groups, their public choice table (2 bits a group), the dictionaries.
    assert config.layout.num_groups >= config.layout.num_buckets
    assert len(config.layout.choices) == (config.layout.num_groups + 3) // 4
    assert len(config.layout.msps) > 0
    assert all(len(i) == 8 for i in config.layout.issuers)
    # The public part of the key `build --oprf-key` was given, as `oprf-keygen` printed it.
    assert config.layout.oprf_public_key == server.oprf_public_key
    assert config.sizes.query == TEST_QUERY_BYTES
    assert config.sizes.public_keys > 0
    assert config.sizes.response > 0
    assert config.limits.max_message_bytes == SERVER_MAX_MESSAGE
    assert config.limits.max_queries_per_request == SERVER_MAX_QUERIES
    # synth may replace duplicates, so allow a few fewer than requested.
    assert 290 < config.mapping_count <= MAPPINGS
    assert 0 < config.cpi_count <= config.mapping_count
    assert config.created_at > 0
    assert 0.0 < config.packing_efficiency <= 1.0


def _query(pir, config, *, key_id: bytes, epoch: int | None = None, count: int = 1):
    return pir.pb2.QueryRequest(
        key_id=key_id,
        epoch=config.epoch if epoch is None else epoch,
        queries=[bytes(config.sizes.query)] * count,
    )


def test_query_unknown_key(pir, discovery, config):
    err = _expect_error(
        discovery.Query,
        _query(pir, config, key_id=secrets.token_bytes(32)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert _reason(err) == "unknown-key", _describe(err)


def test_query_stale_epoch(pir, discovery, config):
    err = _expect_error(
        discovery.Query,
        _query(pir, config, key_id=secrets.token_bytes(32), epoch=config.epoch + 1),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert _reason(err) == "stale-epoch", _describe(err)


def test_query_short_key_id(pir, discovery, config):
    err = _expect_error(
        discovery.Query,
        _query(pir, config, key_id=secrets.token_bytes(5)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert _reason(err) is None, _describe(err)


def test_query_no_queries(pir, discovery, config):
    _expect_error(
        discovery.Query,
        _query(pir, config, key_id=secrets.token_bytes(32), count=0),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def test_query_too_many_queries(pir, discovery, config):
    _expect_error(
        discovery.Query,
        _query(pir, config, key_id=secrets.token_bytes(32), count=SERVER_MAX_QUERIES + 1),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )


def test_register_keys_garbage(pir, discovery):
    _expect_error(
        discovery.RegisterKeys,
        pir.pb2.RegisterKeysRequest(public_keys=secrets.token_bytes(100)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def test_register_keys_words_out_of_range(pir, discovery, config):
    # The exact size the parameters need, but every 64-bit word is >= the modulus.
    _expect_error(
        discovery.RegisterKeys,
        pir.pb2.RegisterKeysRequest(
            public_keys=b"\xff" * config.sizes.public_keys, query_mac_key=bytes(32)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def test_register_keys_without_a_mac_key_is_told_to_upgrade(pir, discovery, config):
    # A client from before queries were authenticated: no query_mac_key.
    err = _expect_error(
        discovery.RegisterKeys,
        pir.pb2.RegisterKeysRequest(public_keys=bytes(config.sizes.public_keys)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "upgrade the client" in err.details(), _describe(err)
    assert _reason(err) is None, _describe(err)


def _evaluate(pir, *, key_id: bytes | None = None, blinded: list[bytes] | None = None,
              mac: bytes | None = None):
    """An Evaluate request, well-formed unless a field is given: a random key id (registered
    by nobody), one random 32-byte element, a random 32-byte MAC."""
    return pir.pb2.EvaluateRequest(
        key_id=secrets.token_bytes(KEY_ID_BYTES) if key_id is None else key_id,
        blinded=[secrets.token_bytes(ELEMENT_BYTES)] if blinded is None else blinded,
        mac=secrets.token_bytes(MAC_BYTES) if mac is None else mac,
    )


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"blinded": []}, "no blinded element"),
        ({"blinded": [secrets.token_bytes(ELEMENT_BYTES - 1)]}, "element 0 is 31 bytes"),
        ({"blinded": [secrets.token_bytes(ELEMENT_BYTES)] * 2
          + [secrets.token_bytes(ELEMENT_BYTES + 1)]}, "element 2 is 33 bytes"),
        ({"key_id": secrets.token_bytes(5)}, "key id is 5 bytes"),
        ({"mac": b""}, "mac is 0 bytes"),
        ({"mac": secrets.token_bytes(MAC_BYTES - 1)}, "mac is 31 bytes"),
    ],
    ids=["no-elements", "31-byte-element", "33-byte-third-element", "short-key-id",
         "missing-mac", "short-mac"],
)
def test_evaluate_malformed(pir, discovery, fields, says):
    # Checked for shape before the key is looked up: INVALID_ARGUMENT, no pir-reason.
    err = _expect_error(discovery.Evaluate, _evaluate(pir, **fields),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert says in err.details(), _describe(err)
    assert _reason(err) is None, _describe(err)


def test_evaluate_unknown_key(pir, discovery):
    # Well-formed, from a key nobody registered: the client is told to register (and heal).
    err = _expect_error(discovery.Evaluate, _evaluate(pir), grpc.StatusCode.FAILED_PRECONDITION)
    assert _reason(err) == "unknown-key", _describe(err)


def test_evaluate_too_many_elements(pir, discovery):
    # More elements than max_queries_per_request: refused before the key is looked up.
    blinded = [secrets.token_bytes(ELEMENT_BYTES) for _ in range(SERVER_MAX_QUERIES + 1)]
    err = _expect_error(discovery.Evaluate, _evaluate(pir, blinded=blinded),
                        grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert _reason(err) is None, _describe(err)
    # Exactly the limit is not too many: the request gets as far as the (unknown) key.
    at_limit = _expect_error(discovery.Evaluate, _evaluate(pir, blinded=blinded[:-1]),
                             grpc.StatusCode.FAILED_PRECONDITION)
    assert _reason(at_limit) == "unknown-key", _describe(at_limit)


def test_oversized_message(pir, discovery):
    # 40 MiB > the server's 32 MiB limit; the client is allowed to send it (CLIENT_OPTIONS).
    # RESOURCE_EXHAUSTED, as gRPC specifies (tonic's own OUT_OF_RANGE is rewritten by the server).
    with pytest.raises(grpc.RpcError) as info:
        discovery.RegisterKeys(
            pir.pb2.RegisterKeysRequest(public_keys=bytes(40 * MIB)), timeout=RPC_TIMEOUT_S
        )
    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, _describe(err)


def test_tls_with_a_selfsigned_certificate(pir, server_binary: Path, tmp_path):
    """`tls-selfsigned` makes an identity that gRPC Core (BoringSSL) accepts as a server's, with
    the certificate itself or, with --ca-out, the CA as the only root. Served without
    --oprf-key, the server is a PIR host only: Evaluate is UNIMPLEMENTED, naming --evaluator."""
    exe = str(server_binary)
    _run([exe, "issuer-keygen", "--out", "issuer.key"], tmp_path)
    _oprf_keygen(exe, tmp_path)
    _run([exe, "synth", "--count", "10", "--issuer-key", "issuer.key", "--out", "m.jsonl"],
         tmp_path)
    _run([exe, "build", "--mappings", "m.jsonl", "--trust", "issuer.pub", "--oprf-key",
          "oprf.key", "--out", "db.pirsnap", "--danger-test-params"], tmp_path)
    for name, extra in (("leaf", []), ("issued", ["--ca-out", "ca.pem"])):
        _run([exe, "tls-selfsigned", "--host", "localhost", "--cert-out", f"{name}.pem",
              "--key-out", f"{name}.key", *extra], tmp_path)
        assert (tmp_path / f"{name}.key").stat().st_mode & 0o077 == 0, "the key is owner-only"
        root = (tmp_path / ("ca.pem" if extra else f"{name}.pem")).read_bytes()
        port = _free_port()
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as log_file:
            process = subprocess.Popen(
                [exe, "serve", "--snapshot", "db.pirsnap", "--listen", f"127.0.0.1:{port}",
                 "--tls-cert", f"{name}.pem", "--tls-key", f"{name}.key"],
                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            )
        try:
            credentials = grpc.ssl_channel_credentials(root_certificates=root)
            with grpc.secure_channel(f"localhost:{port}", credentials) as secure:
                _wait_serving(secure, process, log)
                assert _health(secure, "pir.v1.Discovery") == health_pb2.HealthCheckResponse.SERVING
                host = pir.grpc.DiscoveryStub(secure)
                err = _expect_error(host.Evaluate, _evaluate(pir),
                                    grpc.StatusCode.UNIMPLEMENTED)
                assert "--evaluator" in err.details(), _describe(err)
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=SHUTDOWN_TIMEOUT_S) == 0, _tail(log)


def test_still_serving_afterwards(pir, server, channel, discovery, config):
    serving = health_pb2.HealthCheckResponse.SERVING
    assert _health(channel, "") == serving
    assert _health(channel, "pir.v1.Discovery") == serving
    again = discovery.GetConfig(pir.pb2.GetConfigRequest(), timeout=RPC_TIMEOUT_S)
    assert again == config
    # A fresh connection works too.
    with grpc.insecure_channel(server.address) as fresh:
        assert _health(fresh, "pir.v1.Discovery") == serving
