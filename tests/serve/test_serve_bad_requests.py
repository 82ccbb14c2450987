"""Everything a client can get wrong gets a 4xx with a JSON {"error": ...} saying what, and the
server stays up. Raw http.client is used so paths reach the server exactly as written (no
normalisation of ../ or percent-escapes by a client library)."""

import gzip
import http.client
import json
import socket

import pytest
from serve_fixtures import build_registry, serving

MODEL = "nsclc.status.metagene_19.xgboost"
GENES = ["LRIG1", "HPGD", "GDF15"]
LIMIT_MB = 0.01  # 10,485 bytes: small enough to test the limit without big payloads
INFER = f"/v2/models/{MODEL}/infer"


def gene_inputs(n=1, **override):
    return [{"name": g, "shape": [n], "datatype": "FP64", "data": [1.0] * n, **override} for g in GENES]


def body(inputs=None, **extra):
    return json.dumps({"inputs": gene_inputs() if inputs is None else inputs, **extra})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    registry = build_registry(
        tmp_path_factory.mktemp("bad"),
        [
            {
                "dataset": "nsclc",
                "task": "status",
                "group": "metagene_19",
                "model": "xgboost",
                "kind": "xgboost",
                "task_kind": "binary",
            }
        ],
    )
    (registry / "secret.txt").write_text("root:x:0:0")  # must never be served, whatever the path
    with serving(registry, max_body_mb=LIMIT_MB) as url:
        yield url


def send(base, method, path, data=b"", headers=None, chunked=False):
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        payload = data.encode() if isinstance(data, str) else data
        if chunked:
            conn.request(
                method,
                path,
                body=iter([payload[i : i + 4096] for i in range(0, len(payload), 4096)]),
                headers=headers or {},
                encode_chunked=True,
            )
        else:
            conn.request(method, path, body=payload if method == "POST" else None, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("content-type")
    finally:
        conn.close()


def binary_body(header, blob):
    head = json.dumps(header).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


ONE = [{"name": "f", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]
bin_ok, bin_headers = binary_body(
    {"inputs": [{"name": "f", "shape": [1, 3], "datatype": "FP64", "parameters": {"binary_data_size": 24}}]}, b"\0" * 24
)

CASES = [
    # (id, method, path, body, headers, status, substring of the error)
    ("dotdot-encoded", "POST", "/v2/models/..%2F..%2Fsecret.txt/infer", body(), {}, 404, ""),
    ("dotdot-encoded-lower", "POST", "/v2/models/%2e%2e%2f%2e%2e%2fsecret.txt/infer", body(), {}, 404, ""),
    ("dotdot-raw", "POST", "/v2/models/../secret.txt/infer", body(), {}, 404, ""),
    ("dotdot-name", "POST", "/v2/models/../infer", body(), {}, 400, "invalid model name"),
    ("dotdot-metadata", "GET", "/v2/models/..", b"", {}, 400, "invalid model name"),
    ("absolute", "POST", "/v2/models/%2Fetc%2Fpasswd/infer", body(), {}, 404, ""),
    ("backslash", "POST", "/v2/models/..%5C..%5Csecret.txt/infer", body(), {}, 400, "invalid model name"),
    ("nul", "POST", f"/v2/models/{MODEL}%00/infer", body(), {}, 400, "invalid model name"),
    ("registry-file", "GET", "/v2/models/secret.txt", b"", {}, 404, "unknown model"),
    ("folder-not-model", "GET", "/v2/models/nsclc", b"", {}, 404, "unknown model"),
    ("version-dotdot", "POST", f"/v2/models/{MODEL}/versions/%2e%2e/infer", body(), {}, 404, "no version"),
    ("version-bad", "POST", f"/v2/models/{MODEL}/versions/a%20b/infer", body(), {}, 400, "invalid version"),
    ("unknown-model", "POST", "/v2/models/nsclc.status.metagene_99.xgboost/infer", body(), {}, 404, "unknown model"),
    ("unknown-version", "POST", f"/v2/models/{MODEL}/versions/abcdef123456/infer", body(), {}, 404, "no version"),
    ("unknown-route", "GET", "/etc/passwd", b"", {}, 404, "no such endpoint"),
    ("wrong-method", "GET", INFER, b"", {}, 405, ""),
    ("too-big", "POST", INFER, b"x" * 20_000, {}, 413, "exceeds the limit"),
    ("too-big-chunked", "POST", INFER, b"[" * 20_000, {"chunked": True}, 413, "exceeds the limit"),
    ("gzip-bomb", "POST", INFER, gzip.compress(b" " * 5_000_000), {"Content-Encoding": "gzip"}, 413, "decompressed"),
    ("bad-gzip", "POST", INFER, b"not gzip", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
    ("brotli", "POST", INFER, body(), {"Content-Encoding": "br"}, 415, "Content-Encoding"),
    ("empty", "POST", INFER, b"", {}, 400, "not valid JSON"),
    ("malformed", "POST", INFER, b'{"inputs": [', {}, 400, "not valid JSON"),
    ("not-utf8", "POST", INFER, b'{"inputs": "\xff\xfe"}', {}, 400, "UTF-8"),
    ("deep-nesting", "POST", INFER, b"[" * 5000 + b"]" * 5000, {}, 400, "nested too deeply"),
    (
        "deep-data",
        "POST",
        INFER,
        body([{"name": "LRIG1", "shape": [1], "datatype": "FP64", "data": json.loads("[" * 500 + "1" + "]" * 500)}]),
        {},
        400,
        "",
    ),
    (
        "multipart",
        "POST",
        INFER,
        b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--",
        {"Content-Type": "multipart/form-data; boundary=x"},
        400,
        "not valid JSON",
    ),
    ("json-list", "POST", INFER, b"[1, 2]", {}, 400, "JSON object"),
    ("json-number", "POST", INFER, b"12", {}, 400, "JSON object"),
    ("no-inputs", "POST", INFER, b"{}", {}, 400, "'inputs'"),
    ("empty-inputs", "POST", INFER, body([]), {}, 400, "'inputs'"),
    ("input-not-object", "POST", INFER, body([1, 2, 3]), {}, 400, "must be an object"),
    ("unknown-gene", "POST", INFER, body(gene_inputs()[:2] + [{**gene_inputs()[2], "name": "TP53"}]), {}, 400, "TP53"),
    ("missing-gene", "POST", INFER, body(gene_inputs()[:2]), {}, 400, "missing input(s) 'GDF15'"),
    ("duplicate-gene", "POST", INFER, body(gene_inputs() + gene_inputs()[:1]), {}, 400, "given twice"),
    ("no-name", "POST", INFER, body([{"shape": [1], "datatype": "FP64", "data": [1]}]), {}, 400, "'name'"),
    ("int-dtype", "POST", INFER, body(gene_inputs(datatype="INT64")), {}, 400, "FP32 or FP64"),
    ("bytes-dtype", "POST", INFER, body(gene_inputs(datatype="BYTES", data=["a"])), {}, 400, "FP32 or FP64"),
    (
        "no-shape",
        "POST",
        INFER,
        body([{k: v for k, v in i.items() if k != "shape"} for i in gene_inputs()]),
        {},
        400,
        "shape",
    ),
    ("negative-shape", "POST", INFER, body(gene_inputs(shape=[-1])), {}, 400, "shape"),
    ("3d-shape", "POST", INFER, body(gene_inputs(shape=[1, 1, 1])), {}, 400, "shape"),
    ("string-shape", "POST", INFER, body(gene_inputs(shape=["1"])), {}, 400, "shape"),
    ("bool-shape", "POST", INFER, body(gene_inputs(shape=[True])), {}, 400, "shape"),
    ("shape-vs-data", "POST", INFER, body(gene_inputs(shape=[2])), {}, 400, "shape says 2 value(s) but data has 1"),
    ("huge-shape", "POST", INFER, body(gene_inputs(shape=[2**40])), {}, 400, "shape says"),
    ("rows-differ", "POST", INFER, body(gene_inputs(1)[:2] + gene_inputs(2)[2:]), {}, 400, "expected [1]"),
    ("wide-gene", "POST", INFER, body(gene_inputs(shape=[1, 2], data=[1, 2])), {}, 400, "expected [1] or [1, 1]"),
    ("zero-rows", "POST", INFER, body(gene_inputs(0)), {}, 400, "N = 0"),
    ("string-data", "POST", INFER, body(gene_inputs(data=["1.5"])), {}, 400, "not a number"),
    ("null-data", "POST", INFER, body(gene_inputs(data=[None])), {}, 400, "not a number"),
    ("bool-data", "POST", INFER, body(gene_inputs(data=[True])), {}, 400, "not a number"),
    ("data-not-list", "POST", INFER, body(gene_inputs(data=1.0)), {}, 400, "must be a list"),
    ("nan-literal", "POST", INFER, body(gene_inputs()).replace("1.0", "NaN", 1), {}, 400, "NaN and infinity"),
    ("infinity", "POST", INFER, body(gene_inputs()).replace("1.0", "-Infinity", 1), {}, 400, "NaN and infinity"),
    ("overflow-float", "POST", INFER, body(gene_inputs()).replace("1.0", "1e999", 1), {}, 400, "NaN and infinity"),
    ("huge-int", "POST", INFER, body(gene_inputs()).replace("1.0", "1" + "0" * 400, 1), {}, 400, "too large"),
    ("int-past-digit-limit", "POST", INFER, body(gene_inputs()).replace("1.0", "9" * 5000, 1), {}, 400, "JSON"),
    ("fp32-overflow", "POST", INFER, body(gene_inputs(datatype="FP32", data=[1e300])), {}, 400, "FP32 overflows"),
    ("matrix-wrong-width", "POST", INFER, body([{**ONE[0], "shape": [1, 2], "data": [1, 2]}]), {}, 400, "[N, 3]"),
    ("unknown-output", "POST", INFER, body(outputs=[{"name": "risk"}]), {}, 400, "unknown output"),
    (
        "classification-ext",
        "POST",
        INFER,
        body(outputs=[{"name": "label", "parameters": {"classification": 2}}]),
        {},
        400,
        "classification",
    ),
    ("bad-id", "POST", INFER, body(id=123), {}, 400, "'id'"),
    ("binary-bad-header", "POST", INFER, bin_ok, {"Inference-Header-Content-Length": "abc"}, 400, "not an integer"),
    (
        "binary-header-too-long",
        "POST",
        INFER,
        bin_ok,
        {"Inference-Header-Content-Length": "99999"},
        400,
        "does not fit",
    ),
    (
        "binary-size-mismatch",
        "POST",
        INFER,
        *binary_body(
            {"inputs": [{"name": "f", "shape": [1, 3], "datatype": "FP64", "parameters": {"binary_data_size": 16}}]},
            b"\0" * 16,
        ),
        400,
        "needs 24 bytes",
    ),
    (
        "binary-short",
        "POST",
        INFER,
        *binary_body(
            {"inputs": [{"name": "f", "shape": [1, 3], "datatype": "FP64", "parameters": {"binary_data_size": 24}}]},
            b"\0" * 8,
        ),
        400,
        "binary data ends",
    ),
    ("binary-trailing", "POST", INFER, bin_ok + b"\0" * 8, bin_headers, 400, "not claimed"),
    (
        "binary-nan",
        "POST",
        INFER,
        *binary_body(
            {"inputs": [{"name": "f", "shape": [1, 3], "datatype": "FP64", "parameters": {"binary_data_size": 24}}]},
            b"\0" * 16 + b"\xff" * 8,
        ),
        400,
        "NaN and infinity",
    ),
    (
        "load-with-files",
        "POST",
        f"/v2/repository/models/{MODEL}/load",
        json.dumps({"parameters": {"config": "{}", "file:1/model.py": "aW1wb3J0IG9z"}}),
        {},
        400,
        "not supported",
    ),
    ("sagemaker-no-target", "POST", "/invocations", body(), {}, 400, "target-model"),
    (
        "sagemaker-traversal",
        "POST",
        "/invocations",
        body(),
        {"X-Amzn-SageMaker-Target-Model": "../../secret.txt"},
        400,
        "invalid model name",
    ),
    (
        "sagemaker-png",
        "POST",
        "/invocations",
        b"\x89PNG",
        {"X-Amzn-SageMaker-Target-Model": MODEL, "Content-Type": "image/png"},
        415,
        "Content-Type",
    ),
    (
        "csv-short-row",
        "POST",
        "/invocations",
        b"1,2\n",
        {"X-Amzn-SageMaker-Target-Model": MODEL, "Content-Type": "text/csv"},
        400,
        "expected 3",
    ),
    (
        "csv-nan",
        "POST",
        "/invocations",
        b"1,2,nan\n",
        {"X-Amzn-SageMaker-Target-Model": MODEL, "Content-Type": "text/csv"},
        400,
        "'nan', which is not a number",
    ),
    (
        "csv-text",
        "POST",
        "/invocations",
        b"1,2,x\n",
        {"X-Amzn-SageMaker-Target-Model": MODEL, "Content-Type": "text/csv"},
        400,
        "not a number",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_4xx_json_error(base, case):
    _, method, path, data, headers, status, needle = case
    headers = dict(headers)
    chunked = headers.pop("chunked", False)
    got, content, ctype = send(base, method, path, data, headers, chunked=chunked)
    assert got == status, content[:300]
    assert b"root:x" not in content
    doc = json.loads(content)
    assert ctype == "application/json" and isinstance(doc["error"], str) and doc["error"]
    assert needle.lower() in doc["error"].lower(), doc["error"]


def test_garbage_on_the_socket_and_server_stays_healthy(base):
    host, port = base.removeprefix("http://").split(":")
    for junk in (
        b"\x00\xff\x16\x03\x01 garbage\r\n\r\n",
        b"GET /v2 HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{",
    ):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)  # a truncated body: the client gives up half-way
            try:
                sock.recv(4096)
            except (ConnectionResetError, TimeoutError):
                pass
    # after everything above (and the whole parametrized battery), the server still answers
    assert send(base, "GET", "/v2/health/live")[0] == 200
    assert send(base, "GET", "/v2/health/ready")[0] == 200
    status, content, _ = send(base, "POST", INFER, body())
    assert status == 200 and json.loads(content)["outputs"][0]["name"] == "probabilities"
    assert base.server.cache.loads == 1  # one model, loaded once for all of it


def test_bearer_token(tmp_path):
    registry = build_registry(
        tmp_path,
        [
            {
                "dataset": "nsclc",
                "task": "status",
                "group": "metagene_19",
                "model": "xgboost",
                "kind": "xgboost",
                "task_kind": "binary",
            }
        ],
    )
    with serving(registry, token="s3cret") as url:
        assert send(url, "POST", INFER, body())[0] == 401
        status, content, _ = send(url, "POST", INFER, body(), {"Authorization": "Bearer wrong"})
        assert status == 401 and "bearer token" in json.loads(content)["error"]
        assert send(url, "GET", "/v2/models", b"", {"Authorization": "s3cret"})[0] == 401
        assert send(url, "GET", "/metrics")[0] == 401
        assert send(url, "POST", INFER, body(), {"Authorization": "Bearer s3cret"})[0] == 200
        assert send(url, "GET", "/v2/health/live")[0] == 200 and send(url, "GET", "/v2/health/ready")[0] == 200
