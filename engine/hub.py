"""Hugging Face Hub I/O: the only engine module that talks to the Hub. It downloads model snapshots into the
standard HF cache (safetensors, JSON configs, tokenizer files, cards; never pickle weights), turns every Hub
failure into one `HubError` naming the repo and revision, keeps tokens out of messages and logs, and offers a
quick reachability check (`hub_available`) for tests and the UI.

All transfers go through `huggingface_hub.snapshot_download` (cache layout, resumable blobs, refs, offline
fallback); this module only chooses the files, the token and the endpoint, and words the errors.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import httpx2
from huggingface_hub import constants, get_cached_repo_tree, snapshot_download
from huggingface_hub.errors import (
    CachedRepoTreeNotFoundError,
    FileMetadataError,
    GatedRepoError,
    HFValidationError,
    HfHubHTTPError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import REGEX_COMMIT_HASH
from huggingface_hub.utils import filter_repo_objects, get_session, validate_repo_id

logger = logging.getLogger(__name__)

# What Anno needs from a model repo: configs (config.json, generation_config.json, *.safetensors.index.json),
# safetensors weights, tokenizer files and model cards. The non-JSON tokenizer files are named here rather
# than imported from engine.checkpoint.TOKENIZER_FILES, which would pull torch + transformers (~5.6 s measured
# with -X importtime) into every Hub check; tests/test_hub.py asserts the two lists stay in step.
ALLOW_PATTERNS = ("*.json", "*.safetensors", "*.md", "merges.txt", "chat_template.jinja")
# Pickle-based weight formats: loading them can run arbitrary code, so they are never even fetched. The allow
# list already excludes them; this list keeps that true if the allow list ever grows (e.g. "*" for a card repo).
PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.joblib")
# Weight formats Anno does not load either; named in the error when a repo has no safetensors.
OTHER_WEIGHTS = (*PICKLE_PATTERNS, "*.h5", "*.msgpack", "*.gguf", "*.onnx")
# hub_available's budget, as specified for the UI and for test skips: a quick answer, not a diagnosis.
PROBE_TIMEOUT_S = 2.0
# Token shapes the Hub issues (user "hf_...", OAuth "hf_oauth_..."), redacted even when not the caller's own.
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9_]{8,}")


class HubError(Exception):
    """A Hub download that cannot succeed: repo or revision not found, gated/private without access,
    Hub unreachable with nothing cached. The message names repo_id and revision and never holds a token."""


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").upper() in constants.ENV_VARS_TRUE_VALUES


def _offline() -> bool:
    """Offline mode, read at call time: huggingface_hub reads HF_HUB_OFFLINE once at import, so an env var set
    later (by a test, a notebook cell or the UI) would otherwise be ignored."""
    return constants.is_offline_mode() or _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def _endpoint(endpoint: str | None) -> str:
    """endpoint argument, else HF_ENDPOINT at call time, else huggingface_hub's default (huggingface.co)."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _redact(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "***")
    return _TOKEN_RE.sub("hf_***", text)


def _check_args(repo_id: object, revision: object) -> None:
    # isascii: validate_repo_id's \w also admits non-ASCII letters, which Hub names do not
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not repo_id.isascii():
        raise ValueError(
            f"repo_id={repo_id!r}: must be 'owner/name' (one '/'; letters, digits, '-', '_', '.'), "
            "e.g. 'openai-community/gpt2'"
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(
            f"repo_id={repo_id!r}: not a valid Hub repo id: owner and name use letters, digits, '-', '_', '.', "
            f"1-96 characters each, no '--' or '..', not starting/ending with '-' or '.', no '.git' suffix ({e})"
        ) from None
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise ValueError(f"revision={revision!r}: must be None (the default branch) or a branch, tag or commit sha")


def _describe(e: BaseException, token: str | None) -> str:
    """'ClassName: HTTP status, server message, request id' (or the message's first line), redacted: enough
    to debug or to quote to Hub support without chaining the raw error."""
    if isinstance(e, HfHubHTTPError) and e.response is not None:
        text = f"HTTP {e.response.status_code}"
        text += f", server says: {e.server_message.strip()}" if e.server_message else ""
        text += f", request id {e.request_id}" if e.request_id else ""
    else:
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        text = lines[0] if lines else ""
    return _redact(f"{type(e).__name__}: {text}".rstrip(": "), token)


def _hub_error(e: BaseException, where: str, endpoint: str, cache: str, token: str | None) -> HubError:
    """Map a huggingface_hub / httpx2 failure to a HubError whose message says what to do next."""
    auth = "a token was sent" if token else "no token was sent (pass token= or set HF_TOKEN)"
    if isinstance(e, GatedRepoError):
        msg = f"{where} is gated on {endpoint}: accept its conditions on the repo page, then use a token " \
              f"from that account ({auth})"
    elif isinstance(e, RepositoryNotFoundError):
        msg = f"repository {where} not found on {endpoint}: it does not exist, or it is private or gated " \
              f"and this account has no access ({auth})"
    elif isinstance(e, RevisionNotFoundError):
        msg = f"revision not found: {where} exists on {endpoint} but has no such branch, tag or commit"
    elif isinstance(e, IncompleteSnapshotError):
        msg = f"offline and the cached snapshot of {where} in {cache} is incomplete; reconnect to finish it"
    elif isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        if _offline():
            why = "HF_HUB_OFFLINE is set"
        elif isinstance(e.__cause__, HfHubHTTPError) and e.__cause__.response is not None:
            why = f"the Hub at {endpoint} answered HTTP {e.__cause__.response.status_code}"
        else:
            why = f"the Hub at {endpoint} could not be reached"
        msg = f"offline ({why}) and {where} is not in the local cache at {cache}"
        if e.__cause__ is not None:
            msg += f" [{_describe(e.__cause__, token)}]"
    elif isinstance(e, HfHubHTTPError) and e.response is not None and e.response.status_code in (401, 403):
        msg = f"access to {where} on {endpoint} refused (HTTP {e.response.status_code}; {auth})"
    elif isinstance(e, HfHubHTTPError) and e.response is not None:
        msg = f"the Hub at {endpoint} failed for {where} (HTTP {e.response.status_code})"
    else:
        msg = f"download of {where} from {endpoint} failed"
    if not isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        msg += f" [{_describe(e, token)}]"
    return HubError(_redact(msg, token))


def _no_safetensors(folder: Path, repo_id: str, revision: str, cache_dir: str | Path | None) -> ValueError:
    try:  # the tree listing snapshot_download cached: shows what the repo does hold, with no request
        repo_files = [f.path for f in get_cached_repo_tree(repo_id, revision=folder.name, cache_dir=cache_dir)]
    except CachedRepoTreeNotFoundError:
        repo_files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    weights = list(filter_repo_objects(repo_files, allow_patterns=list(OTHER_WEIGHTS)))
    return ValueError(
        f"repo_id={repo_id!r} (revision {revision!r}) has no *.safetensors weights "
        f"(other weight files: {weights or 'none'}): Anno loads safetensors only, never pickle checkpoints"
    )


def _head(url: str) -> int | str:
    """The HTTP status of a HEAD to url, or the error class name when no answer came within PROBE_TIMEOUT_S
    (connection refused, DNS failure, timeout, offline mode)."""
    try:
        return get_session().head(url, timeout=PROBE_TIMEOUT_S, follow_redirects=False).status_code
    except (httpx2.HTTPError, OSError) as e:  # OfflineModeIsEnabled is a ConnectionError, hence an OSError
        return type(e).__name__


def download_model(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | None = None,
    *,
    endpoint: str | None = None,
) -> Path:
    """Download (or find in the HF cache) the snapshot of model repo `repo_id` at `revision` (default branch
    when None; a branch, tag or 40-hex commit sha) and return its local folder.

    Only *.json, *.safetensors, *.md and tokenizer files are fetched; pickle weights never are. token: the
    argument, else HF_TOKEN, else anonymous (a token saved by `hf auth login` is deliberately not used, so what
    is sent is always explicit). endpoint: the argument, else HF_ENDPOINT, else huggingface.co. With
    HF_HUB_OFFLINE=1 no request is made and the cached snapshot is returned.

    Raises ValueError for a malformed repo_id/revision or a repo without safetensors weights, and HubError
    (message naming repo and revision, token redacted) for every Hub failure."""
    _check_args(repo_id, revision)
    tok = token or os.environ.get("HF_TOKEN") or None
    url = _endpoint(endpoint)
    offline = _offline()
    rev = revision or constants.DEFAULT_REVISION
    cache = str(cache_dir or constants.HF_HUB_CACHE)
    where = f"{repo_id!r} (revision {rev!r})"
    logger.info("hub: %s %s from %s (cache %s, token: %s)", "finding" if offline else "downloading", where, url,
                cache, "yes" if tok else "no")

    def snapshot(local_only: bool) -> Path:
        return Path(snapshot_download(
            repo_id, repo_type="model", revision=rev, cache_dir=cache_dir, endpoint=url,
            token=tok if tok else False,  # False: never fall back to a token stored on disk
            local_files_only=local_only, allow_patterns=list(ALLOW_PATTERNS), ignore_patterns=list(PICKLE_PATTERNS),
        ))

    try:
        folder = None
        if not offline and REGEX_COMMIT_HASH.fullmatch(rev):
            # A commit never changes, so a complete cached snapshot is final: look there first. And a sha skips
            # the no-retry repo_info call that tells "offline" at once for branches; its tree listing retries a
            # refused connection 5 times (1+2+4+8+8 s: 23.2 s measured), hence the 2 s probe before it.
            try:
                folder = snapshot(local_only=True)
            except LocalEntryNotFoundError:
                if isinstance(status := _head(url), str):  # any HTTP answer: reachable, let the listing speak
                    raise HubError(f"offline (the Hub at {url} could not be reached) and {where} is not in the "
                                   f"local cache at {cache} [{status}]") from None
        if folder is None:
            folder = snapshot(local_only=offline)
    except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, FileMetadataError, httpx2.HTTPError) as e:
        # `from None`: the raw error can carry server text echoing request details; its gist is in the message.
        raise _hub_error(e, where, url, cache, tok) from None
    if not any(folder.rglob("*.safetensors")):
        raise _no_safetensors(folder, repo_id, rev, cache_dir)
    return folder


def hub_unavailable_reason(endpoint: str | None = None) -> str | None:
    """None when the Hub looks usable, else why not: HF_HUB_OFFLINE set, or a HEAD to the endpoint failing,
    taking more than PROBE_TIMEOUT_S seconds or answering an HTTP error."""
    if _offline():
        return "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set"
    url = _endpoint(endpoint)
    status = _head(url)
    if isinstance(status, str):
        return f"the Hub at {url} is unreachable ({status})"
    if status >= 400:
        return f"the Hub at {url} answered HEAD with HTTP {status}"
    return None


def hub_available(endpoint: str | None = None) -> bool:
    """True only when HF_HUB_OFFLINE is not set and a HEAD to the Hub endpoint succeeds within 2 s."""
    return hub_unavailable_reason(endpoint) is None
