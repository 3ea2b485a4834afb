"""Atomic writes, the one home for them: a JSON file or a whole folder is written beside its target and renamed
into place, so a reader, or a process resuming after a crash, sees the old version or the new one, never half
of one. A full disk (ENOSPC) is reported as DiskFullError, whose message names the target and says what was
kept. Standard library only: the job registry imports this without loading torch.

Not fsync'ed: a killed process (SIGKILL, OOM) loses nothing the kernel already has, which is what these
guarantee; after a power cut a renamed file may still be torn, which is why training checkpoints also carry
sha256 sums that are checked before resuming (training/checkpoints.py).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


class DiskFullError(OSError):
    """No space left on the device while writing an artifact; the message says what was kept. errno is ENOSPC,
    so code that checks `e.errno == errno.ENOSPC` (or catches OSError) still sees it as a full disk."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (checkpoint markers, corpus shard fingerprints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(target: str | Path, existed: bool, what: str = "") -> DiskFullError:
    """The DiskFullError for a failed write of `target` (`existed`: whether an earlier version was there)."""
    kept = (f"the earlier {target} is kept as it was" if existed
            else f"nothing was left at {target} (there was no earlier version)")
    return DiskFullError(f"the disk is full (no space left on device) while writing {what or target}: the partial "
                         f"write was removed and {kept}; free some space and run it again")


@contextlib.contextmanager
def atomic_path(path: str | Path, what: str = "") -> Iterator[str]:
    """Yield the name of a unique temp file beside path (mkstemp: unique per process and thread) for a writer
    that wants a file name (safetensors' save_file, numpy); when the block ends it is renamed over path. On
    any error it is removed and path is left as it was; a full disk raises DiskFullError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are read like any other
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise disk_full_error(path, existed, what) from e
        raise


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w", what: str = "") -> Iterator:
    """Yield a file object (mode "w": UTF-8 text, "wb": bytes) on a temp file beside path; closed, then renamed
    over path when the block ends (see atomic_path)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode={mode!r}: must be 'w' or 'wb'")
    with atomic_path(path, what) as tmp, open(tmp, mode, encoding=None if mode == "wb" else "utf-8") as f:
        yield f


def write_json_atomic(path: str | Path, obj, compact: bool = False) -> None:
    """Write obj as JSON atomically (atomic_file). ASCII (\\u escapes), so readers that open it with the locale's
    encoding still decode it; compact: no indentation or spaces (large caches)."""
    with atomic_file(path) as f:
        if compact:
            json.dump(obj, f, separators=(",", ":"), default=str)
        else:
            json.dump(obj, f, indent=1, default=str)


@contextlib.contextmanager
def atomic_dir(out_dir: str | Path, what: str = "") -> Iterator[Path]:
    """Yield a temp folder beside out_dir; on success swap it into place (the old folder, if any, is moved
    aside first and removed after), on error delete it and leave out_dir untouched. A full disk raises
    DiskFullError naming out_dir (or `what`) and saying what was kept."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes 0700; the published folder should read like any other
    old, existed = None, out.exists()
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except BaseException as e:
        if old is not None and not out.exists():  # put the previous folder back
            os.replace(old / out.name, out)
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if is_disk_full(e) and not isinstance(e, DiskFullError):
            raise disk_full_error(out, existed, what) from e
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
