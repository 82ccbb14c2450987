"""The downloader (metasig.data.download) against a loopback server that injects faults: cache reuse,
retries, resume with Range, servers that ignore Range, checksum failures, client errors, offline
hosts, slow and stalled bodies, bounded concurrency and damaged cache entries."""

import hashlib
import json
import os
import random
import time

import pytest

from metasig.data import download
from metasig.data.download import (
    DownloadInterrupted,
    fetch_many,
    fetch_url,
    post_json,
)
from metasig.errors import InputError

try:
    from faultserver import Entry, closed_port_url, serve_bytes
except ImportError:  # tests/ imported as a package
    from tests.faultserver import Entry, closed_port_url, serve_bytes

FAST = {"backoff": 0.01, "timeout": 5}


def payload(n=200_000, seed=0):
    return random.Random(seed).randbytes(n)


def md5(data):
    return hashlib.md5(data).hexdigest()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def files_in(folder):
    """Every file under `folder` (relative paths), lock files aside."""
    found = []
    for root, _, names in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, n), folder) for n in names if n != ".lock"]
    return sorted(found)


@pytest.fixture
def server():
    with serve_bytes() as base:
        yield base


# ---- success and cache --------------------------------------------------------------------------


def test_download_then_cache_hit_without_any_request(server, tmp_path):
    data = payload()
    url = server.add("/xena/HiSeqV2_PANCAN.gz", data)
    path = fetch_url(url, tmp_path, f"md5:{md5(data)}", **FAST)
    assert path.read_bytes() == data
    assert path.name == "HiSeqV2_PANCAN.gz"
    assert path.parent == download.cache_folder(url, tmp_path)
    assert path.parent.parent.name == path.parent.name[:2]
    side = json.loads((path.parent / "HiSeqV2_PANCAN.gz.json").read_text())
    assert side["url"] == url and side["size"] == len(data)
    assert side["sha256"] == sha256(data) and side["md5"] == md5(data) and side["verified"] is True
    assert side["etag"] and side["last_modified"]
    side_path = path.parent / (path.name + ".json")
    assert files_in(tmp_path) == sorted(str(p.relative_to(tmp_path)) for p in (path, side_path))
    assert server.log == [Entry("GET", "/xena/HiSeqV2_PANCAN.gz", None, 200)]

    again = fetch_url(url, tmp_path, f"md5:{md5(data)}", **FAST)
    assert again == path and again.read_bytes() == data
    again = fetch_url(url, tmp_path, **FAST)  # without a checksum: verified against the sidecar
    assert again == path
    assert server.count() == 1  # both served from the cache, zero requests


def test_without_published_checksum_the_sha256_is_recorded(server, tmp_path):
    data = payload(5_000)
    path = fetch_url(server.add("/geo/GSE28497_series_matrix.txt.gz", data), tmp_path, None, **FAST)
    side = json.loads(path.with_name(path.name + ".json").read_text())
    assert side["sha256"] == sha256(data) and side["checksum"] is None and side["verified"] is False


# ---- retried faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_are_retried_then_succeed(server, tmp_path, status):
    data = payload(50_000)
    url = server.add("/f.bin", data, fail_first=2, fail_status=status)
    path = fetch_url(url, tmp_path, f"sha256:{sha256(data)}", **FAST)
    assert path.read_bytes() == data
    assert [e.status for e in server.log] == [status, status, 200]


def test_server_errors_exhaust_the_retries(server, tmp_path):
    url = server.add("/f.bin", payload(1000), fail_first=100)
    with pytest.raises(DownloadInterrupted) as err:
        fetch_url(url, tmp_path, retries=2, **FAST)
    assert isinstance(err.value, InputError)
    assert err.value.file == url and "HTTP 500" in str(err.value) and "3 attempt" in str(err.value)
    assert server.count() == 3
    assert files_in(tmp_path) == []


def test_dropped_connection_resumes_with_range(server, tmp_path):
    data = payload(300_000)
    url = server.add("/drop.bin", data, drop_after=120_000)
    path = fetch_url(url, tmp_path, f"md5:{md5(data)}", **FAST)
    assert path.read_bytes() == data
    first, second = server.log
    assert first == Entry("GET", "/drop.bin", None, 200)
    assert second == Entry("GET", "/drop.bin", "bytes=120000-", 206)
    assert files_in(path.parent) == ["drop.bin", "drop.bin.json"]  # no .part left over


def test_several_drops_in_a_row_keep_resuming(server, tmp_path):
    data = payload(100_000)
    url = server.add("/drops.bin", data, drop_after=10_000, times=6)
    path = fetch_url(url, tmp_path, f"sha256:{sha256(data)}", retries=1, **FAST)  # progress resets the budget
    assert path.read_bytes() == data
    assert [e.range for e in server.log] == [None] + [f"bytes={10_000 * k}-" for k in range(1, 7)]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = payload(200_000)
    url = server.add("/norange.bin", data, drop_after=70_000, ignore_range=True)
    path = fetch_url(url, tmp_path, f"md5:{md5(data)}", **FAST)
    assert path.read_bytes() == data
    assert server.log == [Entry("GET", "/norange.bin", None, 200), Entry("GET", "/norange.bin", "bytes=70000-", 200)]


def test_no_range_without_accept_ranges(server, tmp_path):
    data = payload(100_000)
    url = server.add("/plain.bin", data, drop_after=30_000, accept_ranges=False)
    assert fetch_url(url, tmp_path, **FAST).read_bytes() == data
    assert [e.range for e in server.log] == [None, None]


def test_stalled_body_times_out_and_resumes(server, tmp_path):
    data = payload(100_000)
    url = server.add("/stall.bin", data, stall_after=40_000, stall=5)
    start = time.monotonic()
    path = fetch_url(url, tmp_path, f"md5:{md5(data)}", backoff=0.01, timeout=0.3)
    assert time.monotonic() - start < 3
    assert path.read_bytes() == data
    assert [e.range for e in server.log] == [None, "bytes=40000-"]


def test_interrupted_download_is_resumed_by_the_next_run(server, tmp_path):
    data = payload(100_000)
    url = server.add("/big.bin", data, drop_after=60_000)
    with pytest.raises(DownloadInterrupted, match="keeps failing"):
        fetch_url(url, tmp_path, retries=0, **FAST)
    folder = download.cache_folder(url, tmp_path)
    assert (folder / "big.bin.part").stat().st_size == 60_000 and not (folder / "big.bin").exists()
    path = fetch_url(url, tmp_path, f"md5:{md5(data)}", **FAST)
    assert path.read_bytes() == data
    assert server.log[-1] == Entry("GET", "/big.bin", "bytes=60000-", 206)
    assert files_in(folder) == ["big.bin", "big.bin.json"]


def test_slow_body_within_the_timeout(server, tmp_path):
    data = payload(40_000)
    url = server.add("/slow.bin", data, slow=0.02, chunk=5_000)  # 8 pieces, 0.16 s in all
    path = fetch_url(url, tmp_path, f"md5:{md5(data)}", backoff=0.01, timeout=2)
    assert path.read_bytes() == data and server.count() == 1


def test_progress_bar_on_stderr_when_forced(server, tmp_path, capsys):
    data = payload(30_000)
    fetch_url(server.add("/shown.bin", data), tmp_path / "a", progress=True, **FAST)
    assert "shown.bin" in capsys.readouterr().err
    fetch_url(server.add("/quiet.bin", data), tmp_path / "b", progress=None, **FAST)  # stderr is no TTY here
    assert capsys.readouterr().err == ""


# ---- failures that are final --------------------------------------------------------------------


def test_wrong_md5_names_url_and_both_checksums_and_leaves_nothing(server, tmp_path):
    data = payload(80_000)
    url = server.add("/bad.bin", data)
    wrong = "0" * 32
    with pytest.raises(InputError) as err:
        fetch_url(url, tmp_path, f"md5:{wrong}", field="datasets.her2.url", checksum_field="datasets.her2.md5", **FAST)
    message = str(err.value)
    assert url in message and wrong in message and md5(data) in message
    assert err.value.field == "datasets.her2.md5"
    assert server.count() == 2  # retried once from scratch, not resumed
    assert [e.range for e in server.log] == [None, None]
    assert files_in(tmp_path) == []  # no file, no .part, no sidecar


def test_404_fails_at_once(server, tmp_path):
    url = server.add("/missing.bin", b"", status=404)
    with pytest.raises(InputError) as err:
        fetch_url(url, tmp_path, **FAST)
    assert "404" in str(err.value) and url in str(err.value)
    assert not isinstance(err.value, DownloadInterrupted)
    assert server.count() == 1
    assert files_in(tmp_path) == []


def test_closed_port_is_an_offline_error_naming_the_url(tmp_path):
    url = closed_port_url("BRCA_clinicalMatrix")
    with pytest.raises(InputError) as err:
        fetch_url(url, tmp_path, retries=2, **FAST)
    message = str(err.value)
    assert url in message and "cannot reach 127.0.0.1" in message and "offline?" in message
    assert "connection refused" in message and "3 attempt" in message
    assert files_in(tmp_path) == []


def test_bad_checksum_form_and_scheme_name_the_config(tmp_path):
    with pytest.raises(InputError) as err:
        fetch_url("http://127.0.0.1:9/x", tmp_path, "crc32:abcd", config_file="cfg.yaml", checksum_field="d.checksum")
    assert err.value.file == "cfg.yaml" and err.value.field == "d.checksum" and "md5:" in err.value.problem
    with pytest.raises(InputError, match="md5"):
        fetch_url("http://127.0.0.1:9/x", tmp_path, "md5:abc")  # too short
    with pytest.raises(InputError, match="https://ftp.ncbi"):
        fetch_url("ftp://ftp.ncbi.nlm.nih.gov/geo/x.gz", tmp_path, config_file="cfg.yaml")


# ---- cache damage -------------------------------------------------------------------------------


def test_corrupted_cached_file_is_downloaded_again(server, tmp_path):
    data = payload(50_000)
    url = server.add("/c.bin", data)
    path = fetch_url(url, tmp_path, **FAST)
    damaged = bytearray(path.read_bytes())
    damaged[1000] ^= 0xFF  # same size, one byte changed
    path.write_bytes(bytes(damaged))
    again = fetch_url(url, tmp_path, **FAST)
    assert again == path and again.read_bytes() == data
    assert server.count() == 2


def test_file_without_sidecar_is_not_trusted(server, tmp_path):
    data = payload(10_000)
    url = server.add("/s.bin", data)
    path = fetch_url(url, tmp_path, **FAST)
    path.with_name(path.name + ".json").unlink()
    assert fetch_url(url, tmp_path, **FAST).read_bytes() == data
    assert server.count() == 2


# ---- many downloads -----------------------------------------------------------------------------


def test_fetch_many_bounds_concurrency_and_keeps_order(server, tmp_path):
    datas = [payload(20_000, seed=i) for i in range(6)]
    items = [
        (server.add(f"/m{i}.bin", d, slow=0.03, chunk=5_000), f"md5:{md5(d)}" if i % 2 else None)
        for i, d in enumerate(datas)
    ]
    paths = fetch_many(items, tmp_path, max_workers=2, **FAST)
    assert [p.name for p in paths] == [f"m{i}.bin" for i in range(6)]
    assert [p.read_bytes() for p in paths] == datas
    assert server.max_in_flight == 2  # parallel, but never more than 2 at once
    assert server.count() == 6 and server.in_flight == 0


def test_fetch_many_first_failure_cancels_the_rest(server, tmp_path):
    bad = server.add("/gone.bin", b"", status=404)
    others = [server.add(f"/o{i}.bin", payload(1000, seed=i)) for i in range(4)]
    with pytest.raises(InputError) as err:
        fetch_many([(bad, None)] + [(u, None) for u in others], tmp_path, max_workers=1, **FAST)
    assert bad in str(err.value) and "404" in str(err.value)
    assert server.count() == 1  # nothing after the failure was started
    assert fetch_many([], tmp_path) == []


def test_fetch_many_failure_stops_running_downloads(server, tmp_path):
    slow = server.add("/slow.bin", payload(200_000), slow=0.05, chunk=5_000)  # 2 s if left to finish
    bad = server.add("/gone.bin", b"", status=404)
    start = time.monotonic()
    with pytest.raises(InputError, match="404"):
        fetch_many([(slow, None), (bad, None)], tmp_path, max_workers=2, **FAST)
    assert time.monotonic() - start < 1.5
    folder = download.cache_folder(slow, tmp_path)
    assert not (folder / "slow.bin").exists()  # stopped at a chunk boundary; only a resumable .part stays
    kept = [str((folder / n).relative_to(tmp_path)) for n in ("slow.bin.part", "slow.bin.part.json")]
    assert files_in(tmp_path) in ([], kept)


# ---- JSON APIs ----------------------------------------------------------------------------------


def test_post_json_retries_and_fails_clearly(server):
    page = {"data": {"hits": [{"file_id": "a"}], "pagination": {"page": 1, "pages": 1}}}
    url = server.add("/files", json.dumps(page).encode(), fail_first=1)
    assert post_json(url, {"filters": {"op": "and"}}, backoff=0.01) == page
    assert [(e.path, e.status) for e in server.log] == [("/files", 500), ("/files", 200)]
    assert json.loads(server.posted[-1][1]) == {"filters": {"op": "and"}}

    bad = server.add("/bad", b'{"message": "Invalid filters"}', status=400)
    with pytest.raises(InputError) as err:
        post_json(bad, {}, backoff=0.01)
    assert bad in str(err.value) and "HTTP 400" in str(err.value) and "Invalid filters" in str(err.value)
    assert server.count("/bad", method="POST") == 1

    html = server.add("/html", b"<html>maintenance</html>")
    with pytest.raises(InputError, match="not JSON"):
        post_json(html, {}, backoff=0.01)
    with pytest.raises(InputError, match="offline"):
        post_json(closed_port_url("cases"), {}, retries=1, backoff=0.01)
