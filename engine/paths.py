"""Where user-supplied paths may point: the web app confines every folder or file a visitor names (a model, a
corpus, a manifest, a mirror, an output folder, a report) to a set of allowed roots, chosen once at launch.

Why a process-wide setting and not an argument: the paths arrive through many library functions (model loading,
job validation, publishing, report reading) that the CLI calls too, and on the CLI the user already owns the
machine, so there is nothing to confine. `app.main()` calls `confine(roots)` before it serves anyone; library
code calls `check(path, field)`, which is the identity until then. Tests use `confined(roots)`.

A path is resolved first (`Path.resolve()`: `..` collapsed, every symlink followed), then it must equal a
root or lie under one, so both `../../etc` and a symlink inside a root that points out of it are refused.
Roots are resolved once at `confine()`, so a root that is itself a symlink (runs -> /mnt/big/runs) is the
folder it points to. What this does not cover: a symlink created inside a root *after* the check and before
the use (a race needing write access to the root, which visitors do not have)."""
from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

ENV_EXTRA_ROOTS = "ANNO_ALLOWED_ROOTS"  # extra roots for the app, separated by os.pathsep
_ROOTS: tuple[Path, ...] | None = None  # None: not confined (CLI, library use)
_LOCK = threading.Lock()


class PathError(ValueError):
    """A user-supplied path outside the allowed roots; the message names the field and the roots."""


def _resolve_roots(roots: Iterable[str | Path]) -> tuple[Path, ...]:
    out: list[Path] = []
    for r in roots:
        if r is None or str(r).strip() == "":
            continue
        p = Path(r).expanduser().resolve()
        if p not in out:
            out.append(p)
    if not out:
        raise ValueError("roots is empty: give at least one folder the app may read and write")
    return tuple(out)


def env_roots() -> list[str]:
    """Extra roots from $ANNO_ALLOWED_ROOTS (os.pathsep-separated), for folders the defaults do not cover."""
    return [r for r in os.environ.get(ENV_EXTRA_ROOTS, "").split(os.pathsep) if r.strip()]


def confine(roots: Iterable[str | Path] | None) -> None:
    """From now on, check() refuses paths outside `roots` (None: lift the confinement)."""
    global _ROOTS
    with _LOCK:
        _ROOTS = None if roots is None else _resolve_roots(roots)


def allowed_roots() -> tuple[Path, ...] | None:
    return _ROOTS


@contextmanager
def confined(roots: Iterable[str | Path]) -> Iterator[tuple[Path, ...]]:
    """confine(roots) for the duration of a block, then back to what it was (tests)."""
    before = _ROOTS
    confine(roots)
    try:
        yield _ROOTS
    finally:
        confine(before)


def inside(path, roots: Iterable[str | Path], field: str) -> Path:
    """`path` resolved; PathError unless it is one of `roots` or lies under one (after following symlinks)."""
    if not isinstance(path, (str, Path)) or str(path).strip() == "":
        raise PathError(f"{field} must be a path (text), got {path!r}")
    if "\x00" in str(path):
        raise PathError(f"{field}={str(path)!r} contains a NUL byte")
    roots = _resolve_roots(roots)
    p = Path(str(path).strip()).expanduser().resolve()
    if any(p == r or p.is_relative_to(r) for r in roots):
        return p
    # The resolved path is not echoed: it would tell a visitor where a symlink points.
    raise PathError(f"{field}={str(path)!r} is outside the folders this app may use: "
                    f"{', '.join(map(str, roots))}")


def check(path, field: str):
    """The path as given when the process is not confined; else inside(path, the allowed roots, field)."""
    roots = _ROOTS
    if roots is None:
        return path
    return inside(path, roots, field)
