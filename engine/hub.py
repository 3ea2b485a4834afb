"""Hugging Face Hub I/O: the only engine module that talks to the Hub. It downloads model snapshots into the
standard HF cache (safetensors, JSON configs, tokenizer files, cards; never pickle weights), turns every Hub
failure into one `HubError` naming the repo and revision, keeps tokens out of messages and logs, and offers a
quick reachability check (`hub_available`) for tests and the UI.

All transfers go through `huggingface_hub.snapshot_download` (cache layout, resumable blobs, refs, offline
fallback); this module only chooses the files, the token and the endpoint, and words the errors.

Publishing (engine/publish.py stages the folder; the network part is here): `resolve_token` picks the token
(argument > HF_TOKEN > the Space visitor's OAuth token), `check_write_access` validates it once per token with a
cached `whoami` and checks that it may write to the repo's namespace before any work starts, and
`upload_folder_commit` creates the repo and pushes the staged folder as ONE commit, retrying transient failures.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, constants, get_cached_repo_tree, snapshot_download
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


# ---------------------------------------------------------------------------------------------- publishing

TOKENS_PAGE = "https://huggingface.co/settings/tokens"
# Organisation roles that may create and push model repos (Hub docs, "Organization roles": read < contributor
# < write < admin; contributors create repos and write to the ones they created).
WRITE_ORG_ROLES = ("contributor", "write", "admin")
# OAuth scopes a Space's "Sign in with Hugging Face" must request (README `hf_oauth_scopes`) to push to an
# existing repo (write-repos) and to create one (manage-repos).
OAUTH_WRITE_SCOPES = ("write-repos", "manage-repos")
# The status codes huggingface_hub's own http_backoff treats as transient (utils/_http.py, 2.4.0).
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


class HubAuthError(HubError):
    """A token that is missing, rejected, or lacks the role/scope an action needs; raised before any work."""


@dataclass(frozen=True)
class HubToken:
    """A token and where it came from. repr() never shows the value."""
    value: str = field(repr=False)
    source: str  # "argument" | "HF_TOKEN" | "Hugging Face sign-in"
    scopes: tuple[str, ...] | None = None  # OAuth scopes, when the sign-in reported them


@dataclass(frozen=True)
class Identity:
    """What whoami says about a token (never the token itself)."""
    name: str
    kind: str  # "access_token" | "oauth"
    role: str | None  # "read" | "write" | "fineGrained" (access tokens)
    orgs: dict[str, str]  # organisation name -> this account's role in it
    scoped: dict[str, tuple[str, ...]]  # fine-grained: entity name (user, org or repo id) -> permissions
    scopes: tuple[str, ...] | None  # OAuth scopes


_WHOAMI: dict[tuple[str, str], Identity] = {}
_WHOAMI_LOCK = threading.Lock()


def resolve_token(token: str | None = None, oauth_token=None, env_token: bool = True) -> HubToken:
    """The token to publish with: the argument, else HF_TOKEN, else the OAuth token of a signed-in Space visitor
    (any object with `.token` and optionally `.scope`, e.g. gradio's OAuthToken, or a plain string).
    env_token=False skips HF_TOKEN: on a Space it is the owner's secret, not the visitor's (ui/publish_tab.py)."""
    if token:
        return HubToken(str(token), "argument")
    if env_token and os.environ.get("HF_TOKEN"):
        return HubToken(os.environ["HF_TOKEN"], "HF_TOKEN")
    if oauth_token is not None:
        value = oauth_token if isinstance(oauth_token, str) else getattr(oauth_token, "token", None)
        scope = None if isinstance(oauth_token, str) else getattr(oauth_token, "scope", None)
        if value:
            return HubToken(value, "Hugging Face sign-in", tuple(scope.split()) if scope else None)
    raise HubAuthError("publishing needs a Hugging Face token with the 'write' role: pass token=, set HF_TOKEN, or "
                       f"sign in with Hugging Face (create one at {TOKENS_PAGE})")


def _identity(info: dict, tok: HubToken) -> Identity:
    auth = info.get("auth") or {}
    access = auth.get("accessToken") or {}
    scoped = {}
    for s in (access.get("fineGrained") or {}).get("scoped") or []:
        entity = s.get("entity") or {}
        if entity.get("name"):
            scoped[entity["name"]] = tuple(s.get("permissions") or ())
    scope = auth.get("scope")
    scopes = tok.scopes or (tuple(scope.split()) if isinstance(scope, str) else None)
    return Identity(name=info.get("name", ""), kind=auth.get("type") or "access_token", role=access.get("role"),
                    orgs={o["name"]: o.get("roleInOrg") or "read" for o in info.get("orgs") or [] if o.get("name")},
                    scoped=scoped, scopes=scopes)


def whoami(tok: HubToken, endpoint: str | None = None) -> Identity:
    """whoami for this token, asked once per (endpoint, token) per process (the endpoint is rate-limited);
    the cache is keyed by the token's sha256, not the token."""
    url = _endpoint(endpoint)
    key = (url, hashlib.sha256(tok.value.encode()).hexdigest())
    with _WHOAMI_LOCK:
        if key in _WHOAMI:
            return _WHOAMI[key]
    try:
        info = HfApi(endpoint=url).whoami(token=tok.value)
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status == 401:
            raise HubAuthError(f"the token from {tok.source} was rejected by {url} (HTTP 401: invalid, expired or "
                               f"revoked); create a token with the 'write' role at {TOKENS_PAGE}") from None
        raise HubError(f"could not check the token from {tok.source} at {url} [{_describe(e, tok.value)}]") from None
    except (httpx2.HTTPError, OSError) as e:
        raise HubError(f"could not check the token from {tok.source}: the Hub at {url} could not be reached "
                       f"[{_describe(e, tok.value)}]") from None
    ident = _identity(info, tok)
    with _WHOAMI_LOCK:
        _WHOAMI[key] = ident
    return ident


def _write_problem(ident: Identity, repo_id: str) -> str | None:
    """Why this identity cannot create/push repo_id, or None."""
    ns = repo_id.split("/")[0]
    if ns != ident.name and ns not in ident.orgs:
        return f"account {ident.name!r} is not a member of organisation {ns!r}"
    if ns in ident.orgs and ident.orgs[ns] not in WRITE_ORG_ROLES:
        return (f"account {ident.name!r} has the role {ident.orgs[ns]!r} in organisation {ns!r}; creating and "
                f"pushing repos needs one of {', '.join(WRITE_ORG_ROLES)}")
    if ident.kind == "oauth":
        if ident.scopes is None:
            return ("the sign-in did not report its OAuth scopes; the Space must request hf_oauth_scopes "
                    f"{' and '.join(OAUTH_WRITE_SCOPES)}")
        missing = [s for s in OAUTH_WRITE_SCOPES if s not in ident.scopes]
        return f"the sign-in lacks the OAuth scope(s) {', '.join(missing)} (granted: {' '.join(ident.scopes)})" \
            if missing else None
    if ident.role == "write":
        return None
    if ident.role == "fineGrained":
        if "repo.write" in ident.scoped.get(ns, ()) or "repo.write" in ident.scoped.get(repo_id, ()):
            return None
        return (f"the fine-grained token lacks the permission 'repo.write' on {ns!r} (its scoped permissions: "
                f"{ {k: list(v) for k, v in ident.scoped.items()} or 'none'})")
    return f"the token has the role {ident.role!r}; publishing needs the 'write' role (or fine-grained 'repo.write')"


def check_write_access(repo_id: str, token: str | None = None, oauth_token=None,
                       endpoint: str | None = None, env_token: bool = True) -> HubToken:
    """Resolve the token and make sure it may create and push `repo_id`, before any staging or heavy work.
    Raises ValueError for a malformed repo_id, HubAuthError naming the missing role/scope/permission."""
    _check_args(repo_id, None)
    tok = resolve_token(token, oauth_token, env_token)
    ident = whoami(tok, endpoint)
    if problem := _write_problem(ident, repo_id):
        raise HubAuthError(_redact(f"cannot publish to {repo_id!r} with the token from {tok.source}: {problem}",
                                   tok.value))
    logger.info("hub: token from %s may write to %s (account %s)", tok.source, repo_id, ident.name)
    return tok


def _transient(e: BaseException) -> bool:
    if isinstance(e, HfHubHTTPError):
        return e.response is not None and e.response.status_code in TRANSIENT_STATUS
    return isinstance(e, (httpx2.TransportError, ConnectionError))


def _wait_s(e: BaseException, attempt: int, backoff_s: float) -> float:
    """Retry-After when the Hub sends one (429), else exponential backoff, capped at 60 s."""
    resp = getattr(e, "response", None)
    after = resp.headers.get("Retry-After") if resp is not None else None
    if after and after.strip().isdigit():
        return min(float(after), 60.0)
    return min(backoff_s * 2 ** attempt, 60.0)


def upload_folder_commit(folder: str | Path, repo_id: str, tok: HubToken, *, commit_message: str, private: bool = False,
                         revision: str | None = None, endpoint: str | None = None, retries: int = 4,
                         backoff_s: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                         repo_type: str = "model", space_sdk: str | None = None) -> str:
    """Create `repo_id` (exist_ok) and push every file of `folder` in ONE commit; return the commit URL.
    repo_type "space" (engine/space.py) creates a Space with `space_sdk` (e.g. "gradio").

    `create_commit` with one CommitOperationAdd per file, not `upload_folder`: with hf_xet installed (the
    default since huggingface_hub 1.x) upload_folder runs a pipelined upload that may split a folder into several
    commits ("(part N)", hf_api.py 2.4.0); one create_commit uploads every blob first and then makes a single
    commit, so a failure leaves the repo's history untouched. A transient failure (429, 5xx, connection) retries
    the whole attempt `retries` times with backoff; blobs already uploaded are deduplicated by the Hub."""
    _check_args(repo_id, revision)
    url = _endpoint(endpoint)
    api = HfApi(endpoint=url, token=tok.value)
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    where = f"{repo_id!r} (revision {revision or constants.DEFAULT_REVISION!r})"
    for attempt in range(retries + 1):
        try:
            api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
            if revision and revision != constants.DEFAULT_REVISION:
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
            ops = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
                   for p in files]
            info = api.create_commit(repo_id, ops, commit_message=commit_message, revision=revision,
                                     repo_type=repo_type)
            logger.info("hub: pushed %d files to %s in one commit", len(files), where)
            return str(info.commit_url)
        except (HfHubHTTPError, httpx2.HTTPError, ConnectionError) as e:
            if _transient(e) and attempt < retries:
                wait = _wait_s(e, attempt, backoff_s)
                logger.warning("hub: %s; retry %d/%d in %.1f s", _describe(e, tok.value), attempt + 1, retries, wait)
                sleep(wait)
                continue
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status in (401, 403):
                msg = (f"the Hub at {url} refused to create or push {where} with the token from {tok.source} "
                       f"(HTTP {status}): the token needs the 'write' role on {repo_id.split('/')[0]!r}")
            else:
                tries = f" after {attempt + 1} attempts" if attempt else ""
                msg = f"publishing {where} to {url} failed{tries}; nothing was committed"
            raise HubError(_redact(f"{msg} [{_describe(e, tok.value)}]", tok.value)) from None
    raise AssertionError("unreachable")


def request_space_hardware(repo_id: str, tok: HubToken, hardware: str, endpoint: str | None = None) -> str:
    """Ask the Hub to run Space `repo_id` on `hardware` (e.g. "zero-a10g" for ZeroGPU, which needs a PRO or
    Enterprise account); returns the hardware the Space reports it will run on. HubError (token redacted) on
    refusal, e.g. HTTP 402/403 for an account that may not request it."""
    _check_args(repo_id, None)
    url = _endpoint(endpoint)
    try:
        rt = HfApi(endpoint=url, token=tok.value).request_space_hardware(repo_id, hardware)
    except (HfHubHTTPError, httpx2.HTTPError) as e:
        raise HubError(_redact(f"the Hub at {url} refused hardware {hardware!r} for Space {repo_id!r} "
                               f"(ZeroGPU needs a PRO or Enterprise account) [{_describe(e, tok.value)}]",
                               tok.value)) from None
    return str(rt.requested_hardware or rt.hardware or hardware)
