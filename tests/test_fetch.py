"""Tests for training/fetch.py against a real local HTTP server serving a real mirror file.

The server (ThreadingHTTPServer on 127.0.0.1, port 0) follows a per-test script of actions, one per request
(the last repeats), and counts hits, so retries and cache use are observed, never timed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from training.fetch import FetchConfig, cache_path, fetch_source
from training.manifest import SourceError

STALL = 1.5  # seconds a stalled response waits; five times the test timeout of 0.3 s


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins every handler thread at teardown


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        st = self.server.state
        with st["lock"]:
            st["hits"] += 1
            st["requests"].append((self.path, self.headers.get("User-Agent")))
            script = st["script"]
            action = script[min(st["hits"], len(script)) - 1]
        body = st["body"]
        if action == "stall":
            st["release"].wait(STALL)  # then hang up without a response
            return
        if action in ("500", "404", "429"):
            self.send_error(int(action))
            return
        if action == "wrong":
            body = bytes([body[0] ^ 1]) + body[1:]  # same length, one bit different
        self.send_response(200)
        if action != "short":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # truncate: Content-Length promises len(body); short: no Content-Length, fewer than the manifest's bytes
        self.wfile.write(body[: len(body) // 2] if action in ("truncate", "short") else body)


@pytest.fixture(scope="module")
def small(mirror):
    """(record id, file spec, bytes) of the smallest file listed in the mirror's sources.jsonl."""
    recs = [json.loads(line) for line in (mirror / "sources.jsonl").read_text(encoding="utf-8").splitlines()]
    rec, spec = min(((r, f) for r in recs for f in r["files"]), key=lambda rf: rf[1]["bytes"])
    data = (mirror / spec["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == spec["sha256"] and len(data) == spec["bytes"]
    return rec["id"], spec, data


@pytest.fixture
def server(small):
    st = {"lock": threading.Lock(), "hits": 0, "requests": [], "script": ["ok"], "body": small[2],
          "release": threading.Event()}
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.state = st
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    st["url"] = f"http://127.0.0.1:{srv.server_address[1]}"
    yield st
    st["release"].set()  # wake any stalled handler so it can be joined
    srv.shutdown()
    srv.server_close()
    thread.join(5)
    assert not thread.is_alive()


def _record(small, server, with_url=True):
    sid, spec, _ = small
    rec = {"id": sid, "files": [dict(spec)]}
    if with_url:
        rec["upstream_urls"] = [f"{server['url']}/{spec['path']}"]
    return rec


def _cfg(tmp_path, **kw):
    return FetchConfig(cache_dir=str(tmp_path / "cache"), backoff=0.01, **{"timeout": 5.0, **kw})


def _cache_files(tmp_path):
    root = tmp_path / "cache"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_download_verifies_then_second_call_uses_cache(small, server, tmp_path):
    sid, spec, data = small
    cfg = _cfg(tmp_path)
    got = fetch_source(_record(small, server), cfg)
    p = got[spec["path"]]
    assert list(got) == [spec["path"]]
    assert p == cache_path(cfg.cache_dir, spec["sha256"], spec["path"])
    assert p.name == spec["sha256"] + Path(spec["path"]).suffix and p.parent.name == spec["sha256"][:2]
    assert p.read_bytes() == data
    assert server["requests"] == [("/" + spec["path"], "anno-corpus/0.1")]
    assert fetch_source(_record(small, server), cfg) == got
    assert server["hits"] == 1  # served from the cache
    assert _cache_files(tmp_path) == [p.relative_to(tmp_path / "cache").as_posix()]


def test_500_then_success_is_retried_and_logged(small, server, tmp_path, caplog):
    server["script"] = ["500", "ok"]
    with caplog.at_level(logging.INFO, logger="training.fetch"):
        got = fetch_source(_record(small, server), _cfg(tmp_path))
    assert got[small[1]["path"]].read_bytes() == small[2]
    assert server["hits"] == 2
    retries = [r for r in caplog.records if r.name == "training.fetch" and r.levelno == logging.INFO]
    assert len(retries) == 1 and "HTTP 500" in retries[0].getMessage() and "retrying" in retries[0].getMessage()


def test_429_is_retried(small, server, tmp_path):
    server["script"] = ["429", "429", "ok"]
    fetch_source(_record(small, server), _cfg(tmp_path))
    assert server["hits"] == 3


def test_retries_exhausted_on_500(small, server, tmp_path):
    server["script"] = ["500"]
    with pytest.raises(SourceError) as ei:
        fetch_source(_record(small, server), _cfg(tmp_path, retries=2))
    assert ei.value.kind == "fetch" and ei.value.file == small[1]["path"] and "3 attempt" in ei.value.message
    assert server["hits"] == 3
    assert _cache_files(tmp_path) == []


def test_timeout_then_success(small, server, tmp_path):
    server["script"] = ["stall", "ok"]
    got = fetch_source(_record(small, server), _cfg(tmp_path, timeout=0.3))
    assert got[small[1]["path"]].read_bytes() == small[2]
    assert server["hits"] == 2


def test_always_stalling_server_is_a_fetch_error(small, server, tmp_path):
    server["script"] = ["stall"]
    with pytest.raises(SourceError) as ei:
        fetch_source(_record(small, server), _cfg(tmp_path, timeout=0.3, retries=1))
    assert ei.value.kind == "fetch" and ei.value.source_id == small[0]
    assert server["hits"] == 2
    assert _cache_files(tmp_path) == []


@pytest.mark.parametrize("cut", ["truncate", "short"])
def test_truncated_body_once_then_success(small, server, tmp_path, cut):
    server["script"] = [cut, "ok"]
    got = fetch_source(_record(small, server), _cfg(tmp_path))
    assert got[small[1]["path"]].read_bytes() == small[2]
    assert server["hits"] == 2
    assert len(_cache_files(tmp_path)) == 1


@pytest.mark.parametrize("cut", ["truncate", "short"])
def test_always_truncated_leaves_nothing_in_cache(small, server, tmp_path, cut):
    server["script"] = [cut]
    with pytest.raises(SourceError) as ei:
        fetch_source(_record(small, server), _cfg(tmp_path, retries=2))
    assert ei.value.kind == "fetch" and "truncated" in ei.value.message
    assert server["hits"] == 3
    assert _cache_files(tmp_path) == []  # no file, no .part temp


def test_wrong_bytes_is_checksum_error_naming_both_hashes(small, server, tmp_path):
    sid, spec, data = small
    server["script"] = ["wrong"]
    with pytest.raises(SourceError) as ei:
        fetch_source(_record(small, server), _cfg(tmp_path))
    bad = hashlib.sha256(bytes([data[0] ^ 1]) + data[1:]).hexdigest()
    e = ei.value
    assert e.kind == "checksum" and e.source_id == sid and e.file == spec["path"]
    assert spec["sha256"] in e.message and bad in e.message and sid in e.message and spec["path"] in e.message
    assert server["hits"] == 1  # a pinned upstream serving other bytes is not transient
    assert _cache_files(tmp_path) == []


def test_404_is_not_retried(small, server, tmp_path):
    server["script"] = ["404"]
    with pytest.raises(SourceError) as ei:
        fetch_source(_record(small, server), _cfg(tmp_path))
    assert ei.value.kind == "fetch" and "404" in ei.value.message
    assert server["hits"] == 1
    assert _cache_files(tmp_path) == []


def test_corrupt_cache_entry_is_replaced(small, server, tmp_path):
    sid, spec, data = small
    cfg = _cfg(tmp_path)
    dest = cache_path(cfg.cache_dir, spec["sha256"], spec["path"])
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"not the file")
    assert fetch_source(_record(small, server), cfg)[spec["path"]].read_bytes() == data
    assert server["hits"] == 1


def _mirror_copy(small, tmp_path) -> Path:
    sid, spec, data = small
    local = tmp_path / "mirror" / spec["path"]
    local.parent.mkdir(parents=True)
    local.write_bytes(data)
    return local


def test_mirror_file_verifies_in_place(small, server, tmp_path):
    local = _mirror_copy(small, tmp_path)
    got = fetch_source(_record(small, server), _cfg(tmp_path, mirror=str(tmp_path / "mirror")))
    assert got == {small[1]["path"]: local}
    assert server["hits"] == 0 and _cache_files(tmp_path) == []


def test_one_byte_change_in_mirror_is_checksum_error_without_fallback(small, server, tmp_path):
    sid, spec, data = small
    local = _mirror_copy(small, tmp_path)
    local.write_bytes(data[:10] + bytes([data[10] ^ 0x20]) + data[11:])
    with pytest.raises(SourceError) as ei:
        fetch_source(_record(small, server), _cfg(tmp_path, mirror=str(tmp_path / "mirror")))
    e = ei.value
    assert e.kind == "checksum" and e.source_id == sid and e.file == spec["path"]
    assert sid in e.message and spec["path"] in e.message and spec["sha256"] in e.message
    assert hashlib.sha256(local.read_bytes()).hexdigest() in e.message
    assert server["hits"] == 0  # a corrupted mirror is reported, not papered over by the URL


def test_file_absent_from_mirror_falls_back_to_url(small, server, tmp_path):
    (tmp_path / "mirror").mkdir()
    got = fetch_source(_record(small, server), _cfg(tmp_path, mirror=str(tmp_path / "mirror")))
    assert got[small[1]["path"]].read_bytes() == small[2] and server["hits"] == 1


def test_absent_from_mirror_without_url_is_fetch_error(small, server, tmp_path):
    (tmp_path / "mirror").mkdir()
    with pytest.raises(SourceError) as ei:
        fetch_source(_record(small, server, with_url=False), _cfg(tmp_path, mirror=str(tmp_path / "mirror")))
    assert ei.value.kind == "fetch" and ei.value.file == small[1]["path"] and "no upstream URL" in ei.value.message


def test_real_record_verifies_against_real_mirror(mirror, tmp_path):
    rec = json.loads((mirror / "sources.jsonl").read_text(encoding="utf-8").splitlines()[0])
    got = fetch_source(rec, FetchConfig(mirror=str(mirror), cache_dir=str(tmp_path / "cache")))
    assert got == {f["path"]: mirror / f["path"] for f in rec["files"]}
    assert not (tmp_path / "cache").exists()


def test_concurrent_fetches_of_one_file_do_not_corrupt_it(small, server, tmp_path):
    cfg, results, errors = _cfg(tmp_path), [], []

    def worker():
        try:
            results.append(fetch_source(_record(small, server), cfg))
        except Exception as e:  # surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and len(results) == 4 and len({r[small[1]["path"]] for r in results}) == 1
    assert len(_cache_files(tmp_path)) == 1  # the one verified file, no temps
    assert results[0][small[1]["path"]].read_bytes() == small[2]


def test_path_escaping_the_tree_is_rejected(small, server, tmp_path):
    rec = _record(small, server)
    rec["files"][0]["path"] = "../outside.xhtml"
    with pytest.raises(SourceError) as ei:
        fetch_source(rec, _cfg(tmp_path))
    assert ei.value.kind == "manifest" and server["hits"] == 0


@pytest.mark.parametrize("field,value", [("timeout", 0), ("retries", -1), ("backoff", -0.1)])
def test_config_rejects_out_of_range(field, value):
    with pytest.raises(ValueError, match=field):
        FetchConfig(**{field: value})


def test_content_length_catches_truncation_without_manifest_size(small, server, tmp_path):
    rec = _record(small, server)
    del rec["files"][0]["bytes"]  # only the Content-Length header can tell the body is short
    server["script"] = ["truncate", "ok"]
    assert fetch_source(rec, _cfg(tmp_path))[small[1]["path"]].read_bytes() == small[2]
    assert server["hits"] == 2
