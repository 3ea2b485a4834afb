"""Source-file fetcher: turns one sources-manifest record into verified local files.

Owns the only network access of the corpus pipeline. Each file of a record comes from, in order:
the local mirror (used in place), the content-addressed cache (cache_dir/<sha[:2]>/<sha><suffix>), or an
HTTP(S) download of its upstream URL (retried on transient errors, streamed to a unique temp file in the
cache dir, verified, then os.replace'd into place). Every returned file has had its sha256 checked; any
failure raises training.manifest.SourceError and the caller skips the whole source.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import random
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from training.manifest import SourceError

logger = logging.getLogger(__name__)

USER_AGENT = "anno-corpus/0.1"
CHUNK = 1 << 20  # 1 MiB: the largest mirror file is a few MB, so this bounds memory without many syscalls
RETRY_HTTP = {429} | set(range(500, 600))  # rate limiting and server faults may clear; other 4xx will not


@dataclass(frozen=True)
class FetchConfig:
    """Where files come from and how hard to try for them."""

    mirror: str | None = None  # local mirror dir; record file paths are relative to it
    cache_dir: str = "data/cache/sources"
    timeout: float = 30.0  # seconds per HTTP attempt (connect + each read)
    retries: int = 4  # extra attempts after the first, on transient errors only
    backoff: float = 0.5  # seconds; attempt k sleeps backoff * 2**k (+ small jitter)

    def __post_init__(self):
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ValueError(f"timeout={self.timeout!r} must be a number of seconds > 0")
        if not (isinstance(self.retries, int) and not isinstance(self.retries, bool) and self.retries >= 0):
            raise ValueError(f"retries={self.retries!r} must be an integer >= 0")
        if not (isinstance(self.backoff, (int, float)) and self.backoff >= 0):
            raise ValueError(f"backoff={self.backoff!r} must be a number of seconds >= 0")


class _Transient(Exception):
    """An attempt failed in a way a later attempt may not (timeout, 5xx/429, dropped or short body)."""


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def cache_path(cache_dir: str | Path, sha256: str, rel_path: str) -> Path:
    """Content-addressed location of a file; the suffix keeps the format visible (.xml, .zip)."""
    return Path(cache_dir) / sha256[:2] / f"{sha256}{PurePosixPath(rel_path).suffix}"


def fetch_source(record: dict, cfg: FetchConfig) -> dict[str, Path]:
    """{files[i]["path"]: local Path} for every file of the record, each verified by sha256.

    Raises SourceError(kind="checksum") when a mirror, or downloaded, file has the wrong sha256, and
    SourceError(kind="fetch") when a file can be found neither in the mirror nor upstream.
    """
    sid = str(record["id"])
    urls = record.get("upstream_urls") or []
    out: dict[str, Path] = {}
    for i, spec in enumerate(record["files"]):
        rel, want = spec["path"], str(spec["sha256"]).lower()
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).is_absolute() or ".." in parts:
            # The mirror and cache are trees we own; a path escaping them is a manifest bug, not a file.
            raise SourceError(sid, "manifest", f"{sid}: file path {rel!r} must be relative without '..'", file=rel)
        if cfg.mirror is not None:
            local = Path(cfg.mirror, *parts)
            if local.is_file():
                _check(sid, rel, want, local, f"mirror file {local}")
                out[rel] = local
                continue
        out[rel] = _from_cache_or_url(sid, rel, want, spec.get("bytes"), urls[i] if i < len(urls) else None, cfg)
    return out


def _check(sid: str, rel: str, want: str, path: Path, where: str) -> None:
    got = sha256_file(path)
    if got != want:
        raise SourceError(sid, "checksum", f"{sid}: {where} for {rel} has sha256 {got}, expected {want}",
                          file=rel)


def _from_cache_or_url(sid: str, rel: str, want: str, size: int | None, url: str | None,
                       cfg: FetchConfig) -> Path:
    dest = cache_path(cfg.cache_dir, want, rel)
    if dest.is_file():
        if sha256_file(dest) == want:
            return dest
        logger.warning("%s: cached %s for %s fails its sha256; deleting and downloading again", sid, dest, rel)
        try:
            dest.unlink()
        except FileNotFoundError:  # another process removed or replaced it first
            pass
    if not url:
        where = f"not in mirror {cfg.mirror}" if cfg.mirror is not None else "not in a mirror (none given)"
        raise SourceError(sid, "fetch", f"{sid}: {rel} is {where}, not cached and has no upstream URL", file=rel)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SourceError(sid, "fetch", f"{sid}: upstream URL {url!r} for {rel} must be http(s)", file=rel)
    dest.parent.mkdir(parents=True, exist_ok=True)
    attempts = cfg.retries + 1
    for k in range(attempts):
        try:
            return _download(sid, rel, want, size, url, dest, cfg.timeout)
        except _Transient as e:
            if k + 1 == attempts:
                raise SourceError(sid, "fetch", f"{sid}: {rel} from {url} failed after {attempts} attempt(s): {e}",
                                  file=rel) from None
            delay = cfg.backoff * 2 ** k + random.uniform(0, cfg.backoff / 4)  # jitter de-syncs parallel workers
            logger.info("%s: %s attempt %d/%d failed (%s); retrying in %.2fs", sid, rel, k + 1, attempts, e, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _download(sid: str, rel: str, want: str, size: int | None, url: str, dest: Path, timeout: float) -> Path:
    """One attempt: GET url into a unique temp file next to dest, verify, os.replace. Never leaves the temp."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    placed = False
    try:
        h = hashlib.sha256()
        got = 0
        with os.fdopen(fd, "wb") as f:
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    declared = resp.headers.get("Content-Length")
                    while chunk := resp.read(CHUNK):
                        f.write(chunk)
                        h.update(chunk)
                        got += len(chunk)
            except urllib.error.HTTPError as e:  # before URLError: it is a subclass
                if e.code in RETRY_HTTP:
                    raise _Transient(f"HTTP {e.code} {e.reason}") from None
                raise SourceError(sid, "fetch", f"{sid}: {rel} from {url}: HTTP {e.code} {e.reason}", file=rel) \
                    from None
            except urllib.error.URLError as e:
                if isinstance(e.reason, ssl.SSLCertVerificationError):  # a bad certificate will not fix itself
                    raise SourceError(sid, "fetch", f"{sid}: {rel} from {url}: {e.reason}", file=rel) from None
                raise _Transient(f"cannot connect: {e.reason}") from None
            except (TimeoutError, ConnectionError, http.client.HTTPException, ssl.SSLError) as e:
                raise _Transient(f"{type(e).__name__}: {e or 'no detail'}") from None
        # HTTPResponse.read(amt) returns b"" at a premature EOF instead of raising IncompleteRead
        # (CPython 3.11 http/client.py, "might break compatibility"), so the length is checked here.
        if declared is not None and declared.isdigit() and got < int(declared):
            raise _Transient(f"truncated body: {got} of {declared} bytes (Content-Length)")
        if size is not None and got < size:
            raise _Transient(f"truncated body: {got} of {size} bytes (manifest size)")
        actual = h.hexdigest()
        if actual != want:
            raise SourceError(sid, "checksum",
                              f"{sid}: download of {rel} from {url} has sha256 {actual}, expected {want}", file=rel)
        os.replace(tmp, dest)  # atomic: a concurrent reader sees the old file or the whole new one
        placed = True
        return dest
    finally:
        if not placed:
            os.unlink(tmp)
