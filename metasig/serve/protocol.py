"""The V2 (Open Inference Protocol / KServe / Triton) inference request and response, validated.

Request inputs, either layout:
  - one tensor per feature, named by the feature (gene), each shape [N] or [N, 1];
  - one tensor with any other name, shape [N, n_features], columns in the model's feature order.
Datatypes FP32 or FP64. Data as JSON (flat row-major or nested lists) or, with the binary tensor
extension (header `Inference-Header-Content-Length`), as little-endian bytes after the JSON header,
as tritonclient sends by default. Every problem raises ProtocolError with a 4xx status and a message
naming the input and what is wrong; nothing here trusts sizes or types from the client.

Outputs: classification "probabilities" (FP64 [N, n_classes], columns in the model's class order)
and "label" (BYTES [N]); survival "risk" (FP64 [N], log relative hazard, higher = worse).
"""

import gc
import json
import math
import re
import struct
import threading
import zlib
from collections import Counter
from contextlib import contextmanager

import numpy as np

DTYPES = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
MAX_INPUTS = 100_000  # one tensor per gene: a whole-transcriptome model has ~20k
MAX_NAME = 256
HEADER = "inference-header-content-length"
SMALL_JSON = 64 * 1024  # bytes; larger JSON bodies are decoded with thread-friendly number hooks
CHUNK = 20_000  # values per json.dumps call when encoding a large output (lets other threads run)
# A CSV value: a plain decimal number. float() would also take '1_000', 'nan', 'inf', ' 1 '.
_CSV_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class ProtocolError(ValueError):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status
        self.message = message


class Tensor:
    __slots__ = ("name", "shape", "values")

    def __init__(self, name, shape, values):
        self.name, self.shape, self.values = name, shape, values


class InferRequest:
    __slots__ = ("binary_default", "id", "inputs", "outputs")

    def __init__(self, request_id, inputs, outputs, binary_default):
        self.id, self.inputs, self.outputs, self.binary_default = request_id, inputs, outputs, binary_default


_gc_lock = threading.Lock()
_gc_holders = 0


@contextmanager
def collector_paused(pause=True):
    """Pause Python's cycle collector while a large body is parsed. A nested JSON array or a CSV
    makes a list per row; the collector, triggered by those allocations, then scans the whole heap
    with the GIL held (measured: 80-160 ms per pass, several per 15 MiB body), stalling the event
    loop. Parsing makes no reference cycles, and the lists are freed by reference counting when
    the parse returns. Counted, so concurrent parses resume the collector only when the last ends."""
    global _gc_holders
    if not pause:
        yield
        return
    with _gc_lock:
        _gc_holders += 1
        if _gc_holders == 1:
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0:
                gc.enable()


def _float(text):  # Python-level on purpose: see loads_json
    return float(text)


def _int(text):
    return int(text)


def loads_json(raw, what="request body"):
    """json.loads that turns every way a body can be broken into a 400.

    json's C decoder holds the GIL for a whole document (~300 ms for 15 MiB of numbers), which
    would stall the event loop even when the parse runs in a worker thread. Number hooks written
    in Python run bytecode for every number, where the interpreter can switch threads; on small
    bodies the hooks cost nothing noticeable."""
    try:
        if len(raw) <= SMALL_JSON:
            return json.loads(raw)
        return json.loads(raw, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise ProtocolError(f"{what} is nested too deeply") from None
    except UnicodeDecodeError:
        raise ProtocolError(f"{what} is not UTF-8 text") from None
    except ValueError as exc:  # JSONDecodeError, and ints longer than Python's digit limit
        raise ProtocolError(f"{what} is not valid JSON: {str(exc)[:200]}") from None


def inflate(body, limit, encoding):
    """Decode a gzip or deflate body, every gzip member of it (as gzip -d does), to at most `limit`
    bytes. Bytes after the last member, or a member cut short, are a 400: a client must never get
    an answer for fewer rows than it sent."""
    parts, total, data = [], 0, body
    while True:
        inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
        try:
            out = inflater.decompress(data, limit + 1 - total)  # bounded: never expands past the limit
        except zlib.error:
            raise ProtocolError(f"request body is not valid {encoding} data") from None
        total += len(out)
        if total > limit or inflater.unconsumed_tail:
            raise ProtocolError(f"decompressed request body exceeds the limit of {limit} bytes", 413)
        if not inflater.eof:
            raise ProtocolError(f"request body is incomplete {encoding} data (it ends inside the compressed stream)")
        parts.append(out)
        data = inflater.unused_data
        if not data:
            return b"".join(parts)
        if encoding != "gzip" or not data.startswith(b"\x1f\x8b"):
            raise ProtocolError(
                f"request body has {len(data)} byte(s) after the compressed data that are not another gzip member"
            )


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _shape(raw, name):
    if not isinstance(raw, list) or not 1 <= len(raw) <= 2 or not all(type(d) is int and 0 <= d <= 2**40 for d in raw):
        raise ProtocolError(
            f"input {name!r}: shape must be [N] or [N, k] with non-negative integers, got {_short(raw)}"
        )
    return raw


def _numbers(data, name, expected):
    """Flatten JSON data (flat, or nested one level) into a float64 array of `expected` values."""
    if not isinstance(data, list):
        raise ProtocolError(f"input {name!r}: data must be a list of numbers, got {type(data).__name__}")
    if data and type(data[0]) is list:
        flat = []
        for row in data:
            if type(row) is not list:
                raise ProtocolError(f"input {name!r}: data mixes lists and scalars")
            flat.extend(row)
    else:
        flat = data
    if len(flat) != expected:
        raise ProtocolError(f"input {name!r}: shape says {expected} value(s) but data has {len(flat)}")
    for i, v in enumerate(flat):
        t = type(v)
        if t is not float and t is not int:  # bool, str, None, nested lists are all refused
            raise ProtocolError(f"input {name!r}: element {i} is {_short(v)}, not a number")
    try:
        return np.array(flat, dtype=np.float64)
    except OverflowError:
        raise ProtocolError(f"input {name!r}: a value is too large for a floating-point number") from None


def parse_infer(body, header_length=None):
    """Parse a V2 infer request body (JSON, or JSON header + binary tensors)."""
    with collector_paused(len(body) > SMALL_JSON):
        return _parse_infer(body, header_length)


def _parse_infer(body, header_length):
    binary = b""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise ProtocolError(f"Inference-Header-Content-Length is not an integer: {_short(header_length)}") from None
        if not 0 < size <= len(body):
            raise ProtocolError(f"Inference-Header-Content-Length {size} does not fit the {len(body)}-byte body")
        body, binary = body[:size], body[size:]
    doc = loads_json(body)
    if not isinstance(doc, dict):
        raise ProtocolError("request body must be a JSON object with an 'inputs' list")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError("request needs a non-empty 'inputs' list")
    if len(inputs) > MAX_INPUTS:
        raise ProtocolError(f"too many inputs ({len(inputs)}; at most {MAX_INPUTS})")
    request_id = doc.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > MAX_NAME):
        raise ProtocolError("'id' must be a string of at most 256 characters")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be an object")
    binary_default = params.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise ProtocolError("parameters.binary_data_output must be true or false")

    tensors, seen, offset = [], set(), 0
    for i, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise ProtocolError(f"inputs[{i}] must be an object with name, shape, datatype and data")
        name = item.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise ProtocolError(f"inputs[{i}]: 'name' must be a non-empty string of at most {MAX_NAME} characters")
        if name in seen:
            raise ProtocolError(f"input {name!r} is given twice")
        seen.add(name)
        shape = _shape(item.get("shape"), name)
        count = math.prod(shape)
        datatype = item.get("datatype")
        if datatype not in DTYPES:
            raise ProtocolError(f"input {name!r}: datatype must be FP32 or FP64, got {_short(datatype)}")
        dtype = DTYPES[datatype]
        iparams = item.get("parameters") or {}
        if not isinstance(iparams, dict):
            raise ProtocolError(f"input {name!r}: 'parameters' must be an object")
        nbytes = iparams.get("binary_data_size")
        if nbytes is not None:
            if type(nbytes) is not int or nbytes < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size must be a non-negative integer")
            if "data" in item:
                raise ProtocolError(f"input {name!r}: give either data or binary_data_size, not both")
            if nbytes != count * dtype.itemsize:
                raise ProtocolError(
                    f"input {name!r}: shape {shape} of {datatype} needs {count * dtype.itemsize} "
                    f"bytes, binary_data_size says {nbytes}"
                )
            if offset + nbytes > len(binary):
                raise ProtocolError(
                    f"input {name!r}: binary data ends after {len(binary)} bytes, {offset + nbytes} needed"
                )
            values = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).astype(np.float64)
            offset += nbytes
        else:
            if "data" not in item:
                raise ProtocolError(f"input {name!r} has no 'data'")
            values = _numbers(item["data"], name, count)
            if datatype == "FP32":  # the values are FP32 by declaration: round as a binary client would
                with np.errstate(over="ignore"):
                    values = values.astype(np.float32).astype(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            at = int(np.argmax(bad))
            raise ProtocolError(
                f"input {name!r}: element {at} is {values[at]} (NaN and infinity are not accepted; "
                f"{datatype} overflows past {np.finfo(dtype).max:.3g})"
            )
        tensors.append(Tensor(name, shape, values))
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} byte(s) of binary data are not claimed by any input")
    return InferRequest(request_id, tensors, _requested_outputs(doc.get("outputs")), binary_default)


def _requested_outputs(raw):
    """None (all outputs) or a list of (name, binary flag or None)."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("'outputs' must be a non-empty list of {\"name\": ...} objects")
    out, seen = [], set()
    for item in raw[:16]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError("each requested output must be an object with a 'name'")
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise ProtocolError(f"output {item['name']!r}: 'parameters' must be an object")
        if params.get("classification"):
            raise ProtocolError("the classification extension is not supported; request the 'label' output")
        flag = params.get("binary_data")
        if flag is not None and not isinstance(flag, bool):
            raise ProtocolError(f"output {item['name']!r}: binary_data must be true or false")
        if item["name"] in seen:
            raise ProtocolError(f"output {item['name']!r} is requested twice")
        seen.add(item["name"])
        out.append((item["name"], flag))
    if len(raw) > 16:
        raise ProtocolError("too many requested outputs")
    return out


def assemble(model, request):
    """The [N, n_features] float64 matrix in the model's feature order, from either layout."""
    inputs, index = request.inputs, model.feature_index
    if len(inputs) == 1 and inputs[0].name not in index:
        t = inputs[0]
        if len(t.shape) != 2 or t.shape[1] != model.n_features:
            raise ProtocolError(
                f"input {t.name!r} is not one of the model's features; as a feature matrix its shape must be "
                f"[N, {model.n_features}] (columns: {_listing(model.features)}), got {t.shape}"
            )
        n = t.shape[0]
        if n == 0:
            raise ProtocolError("no rows to predict (N = 0)")
        return t.values.reshape(n, model.n_features)
    unknown = [t.name for t in inputs if t.name not in index]
    if unknown:
        raise ProtocolError(
            f"unknown input(s) {_listing(unknown)}; model {model.name!r} takes {_listing(model.features)}"
        )
    if len(inputs) != model.n_features:
        missing = [f for f in model.features if f not in {t.name for t in inputs}]
        raise ProtocolError(
            f"missing input(s) {_listing(missing)}: model {model.name!r} needs all {model.n_features} features"
        )
    n = inputs[0].shape[0]
    X = np.empty((n, model.n_features), dtype=np.float64)
    for t in inputs:
        if t.shape[0] != n or (len(t.shape) == 2 and t.shape[1] != 1):
            raise ProtocolError(f"input {t.name!r}: shape {t.shape}, expected [{n}] or [{n}, 1] like the first input")
        X[:, index[t.name]] = t.values
    if n == 0:
        raise ProtocolError("no rows to predict (N = 0)")
    return X


def _listing(names, limit=8):
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def _bytes_tensor(values):
    parts = []
    for v in values:
        b = str(v).encode()
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def encode_response(model, request, results):
    """(body bytes, headers) of a V2 infer response; binary outputs follow the JSON header."""
    wanted = request.outputs
    if wanted is None:
        wanted = [(name, None) for name in model.output_names]
    else:
        unknown = [n for n, _ in wanted if n not in results]
        if unknown:
            raise ProtocolError(
                f"unknown output(s) {_listing(unknown)}; model {model.name!r} gives {_listing(model.output_names)}"
            )
    outputs, blobs = [], []
    for name, flag in wanted:
        arr = results[name]
        datatype = "BYTES" if arr.dtype == object else "FP64"
        out = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if request.binary_default if flag is None else flag:
            blob = _bytes_tensor(arr.ravel()) if datatype == "BYTES" else arr.astype("<f8").tobytes()
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
            outputs.append(_dumps(out))
        else:
            outputs.append(_dumps(out)[:-1] + ',"data":' + _dumps_list(arr.ravel()) + "}")
    doc = {"model_name": model.name, "model_version": model.version}
    if request.id is not None:
        doc["id"] = request.id
    head = (_dumps(doc)[:-1] + ',"outputs":[' + ",".join(outputs) + "]}").encode()
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }


def _dumps(doc):
    return json.dumps(doc, separators=(",", ":"))


def _dumps_list(values):
    """json.dumps(values.tolist()) in slices: one C call over a million floats would hold the GIL
    (and so the event loop) for ~100 ms."""
    parts = [_dumps(values[i : i + CHUNK].tolist())[1:-1] for i in range(0, len(values), CHUNK)]
    return "[" + ",".join(p for p in parts if p) + "]"


def parse_csv(body, model):
    with collector_paused(len(body) > SMALL_JSON):
        return _parse_csv(body, model)


def _parse_csv(body, model):
    """SageMaker-style text/csv: one row per sample, features in the model's order, optionally a
    header row of feature names (then columns are matched by name). A first row that names a
    feature, or holds no number at all, is a header, and every name in it must be a feature."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("CSV body is not UTF-8 text") from None
    rows = [line.split(",") for line in text.splitlines() if line.strip()]
    if not rows:
        raise ProtocolError("CSV body has no rows")
    order = None
    header = [c.strip().strip('"') for c in rows[0]]
    if any(c in model.feature_index for c in header) or not any(_CSV_NUMBER.fullmatch(c) for c in header):
        order = _header_order(header, model)
        rows = rows[1:]
        if not rows:
            raise ProtocolError("CSV body has a header but no rows")
    X = np.empty((len(rows), model.n_features), dtype=np.float64)
    for r, row in enumerate(rows):
        if len(row) != model.n_features:
            raise ProtocolError(f"CSV row {r + 1} has {len(row)} value(s), expected {model.n_features}")
        values = [c.strip() for c in row]
        for v in values:
            if not _CSV_NUMBER.fullmatch(v):
                raise ProtocolError(
                    f"CSV row {r + 1} has {v[:40]!r}, which is not a number "
                    f"(write plain decimals such as 1000 or 1.5e3; no NaN or infinity)"
                )
        X[r] = [float(v) for v in values] if order is None else [float(values[i]) for i in order]
    if not np.isfinite(X).all():
        raise ProtocolError("CSV values must be finite numbers (a value overflows a double)")
    return X


def _header_order(header, model):
    """Column positions of the model's features in a CSV header naming each of them once."""
    unknown = [c for c in header if c not in model.feature_index]
    if unknown:
        raise ProtocolError(
            f"CSV header names column(s) the model does not take: {_listing(unknown)}; "
            f"model {model.name!r} takes {_listing(model.features)}"
        )
    twice = sorted(c for c, n in Counter(header).items() if n > 1)
    if twice:
        raise ProtocolError(f"CSV header names {_listing(twice)} more than once")
    missing = [f for f in model.features if f not in header]
    if missing:
        raise ProtocolError(f"CSV header lacks feature(s) {_listing(missing)}")
    return [header.index(f) for f in model.features]


def encode_csv(model, results):
    """One line per sample: binary -> probability of the positive (second) class, as the
    reference study's SageMaker XGBoost endpoint returned; multiclass -> every class's
    probability; survival -> risk."""
    if "risk" in results:
        col = results["risk"][:, None]
    elif results["probabilities"].shape[1] == 2:
        col = results["probabilities"][:, 1:]
    else:
        col = results["probabilities"]
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in col).encode()
