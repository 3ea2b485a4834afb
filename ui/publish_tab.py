"""Publish tab: the picked model + a Hub repo id + private toggle + a token (the field, else HF_TOKEN, else on a
Space the visitor's "Sign in with Hugging Face") -> "Preview (dry run)" lists the staged files with their sizes
and renders the model card; "Publish" pushes them (engine/publish.py) in the background while the page polls.
Public endpoints: `/publish_preview` (a dry run: no token, no request) and `/publish` + `/publish_status`.

Why a background thread and not a job process (training/jobs.py): a job is recorded in job.json and resumed
from it alone, but a token may not be written there, and handing it to the job process would mean putting it
in the server's environment, which every other job of every visitor inherits. A publish is one commit of
files already on disk (seconds to minutes): if the server restarts mid-way the repo is untouched (one commit,
engine/hub.py) and Publish is simply pressed again. The token lives only in the thread's arguments: it is
never in a task record, a component value, a log line or an API result (tests/test_publish_tab.py)."""
from __future__ import annotations

import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from engine import hub
from engine.publish import publish
from ui.common import Ctx, user_errors

POLL_S = 1.0
_TASKS: dict[str, dict] = {}  # task id -> {id, state, model, repo_id, private, commit_url, error, started, ended}
_LOCK = threading.Lock()


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def card_markdown(card: str) -> str:
    """The card as the Hub shows it: its YAML metadata as a code block, then the Markdown body."""
    m = re.match(r"---\n(.*?)\n---\n", card, re.S)
    return f"```yaml\n{m.group(1)}\n```\n\n{card[m.end():]}" if m else card


def preview(model: str, repo_id: str) -> dict:
    """Dry run: the files publish would upload (name, bytes) and the README.md card; nothing is sent."""
    if not model:
        raise ValueError("model is required: pick a run, model or quantized folder at the top")
    with tempfile.TemporaryDirectory(prefix="anno-preview-") as tmp:
        r = publish(model, (repo_id or "").strip(), dry_run_dir=Path(tmp) / "staged")
        files = [{"name": f, "bytes": (Path(tmp) / "staged" / f).stat().st_size} for f in r.files]
    return {"repo_id": r.repo_id, "files": files, "card": r.card}


def start(model: str, repo_id: str, private: bool = False, token: str | None = None, oauth_token=None) -> dict:
    """Check the token's write access now (a clear error before any work), then push in a background thread.
    Returns the task's status (poll `task_status`)."""
    if not model:
        raise ValueError("model is required: pick a run, model or quantized folder at the top")
    repo_id = (repo_id or "").strip()
    # On a Space, HF_TOKEN is the owner's secret: a visitor publishes with their own token or sign-in only.
    on_space = bool(os.environ.get("SPACE_ID"))
    if on_space and not token and oauth_token is None:
        raise ValueError("token is required on a Space: sign in with Hugging Face or paste a write token")
    try:
        tok = hub.check_write_access(repo_id, token or None, oauth_token, env_token=not on_space)
    except hub.HubError as e:  # a missing/weak token is the user's to fix: its (redacted) message goes to the page
        raise ValueError(str(e)) from None
    task = {"id": f"{time.strftime('%Y%m%d-%H%M%S')}-publish-{secrets.token_hex(3)}", "state": "running",
            "model": str(model), "repo_id": repo_id, "private": bool(private), "commit_url": None, "error": None,
            "started": time.time(), "ended": None}
    with _LOCK:
        _TASKS[task["id"]] = task

    def run(value: str) -> None:
        try:
            r = publish(model, repo_id, private=private, token=value)
            task.update(state="done", commit_url=r.commit_url)
        except Exception as e:  # noqa: BLE001  (the page shows every failure; the message is redacted)
            task.update(state="failed", error=hub._redact(f"{type(e).__name__}: {e}", value))
        task["ended"] = time.time()

    threading.Thread(target=run, args=(tok.value,), name=f"anno-{task['id']}", daemon=True).start()
    return task_status(task["id"])


def task_status(task_id: str) -> dict:
    with _LOCK:
        task = _TASKS.get(task_id)
    if task is None:
        raise ValueError(f"task_id={task_id!r}: no such publish task in this server (tasks live until it restarts)")
    return dict(task)


def status_md(s: dict | None) -> str:
    if not s:
        return "Nothing published from this page yet."
    if s["state"] == "running":
        return f"Publishing `{s['model']}` to **{s['repo_id']}**… ({time.time() - s['started']:.0f} s)"
    if s["state"] == "done":
        return f"Published to **{s['repo_id']}** in one commit: {s['commit_url']}"
    return f"**Publishing failed:** {s['error']}"


def build(ctx: Ctx, picker) -> None:
    on_space = bool(os.environ.get("SPACE_ID"))
    gr.Markdown("Publishes the model chosen at the top as a Hugging Face model repo: weights, configs, tokenizer, "
                "evaluation report and a model card filled from the run's own records. **Preview** is a dry run "
                "(nothing is sent); **Publish** needs a token with the *write* role: the field below, else "
                + ("your Hugging Face sign-in (the Space's own HF_TOKEN is never used for visitors)." if on_space
                 else "`HF_TOKEN` of the server."))
    with gr.Row(equal_height=True):
        repo_id = gr.Textbox(label="Repo id", placeholder="your-name/anno-tiny", scale=3, elem_id="pub-repo")
        private = gr.Checkbox(False, label="Private", scale=1, elem_id="pub-private")
        token = gr.Textbox("", type="password", label="Token (never stored or shown)", scale=3,
                           placeholder="hf_… (empty: " + ("your sign-in)" if on_space else "HF_TOKEN)"),
                           elem_id="pub-token")
        if on_space:  # off Spaces LoginButton tries a mocked login that needs the network (notes/gradio6.md)
            gr.LoginButton(scale=1)
    with gr.Row():
        go_preview = gr.Button("Preview (dry run)", elem_id="pub-preview")
        go = gr.Button("Publish", variant="primary", elem_id="pub-go")
    status = gr.Markdown(status_md(None), elem_id="pub-status")
    task = gr.Textbox(visible=False, elem_id="pub-task")
    files = gr.Dataframe(headers=["file", "size"], label="Staged files", interactive=False, elem_id="pub-files")
    card = gr.Markdown(elem_id="pub-card")
    timer = gr.Timer(POLL_S, active=False)

    @user_errors
    def on_preview(model, repo):
        p = preview(model, repo)
        return [[f["name"], _size(f["bytes"])] for f in p["files"]], card_markdown(p["card"])

    @user_errors
    def on_go(model, repo, priv, tok, oauth: gr.OAuthToken | None = None):
        s = start(model, repo, priv, tok, oauth)
        return s["id"], status_md(s), gr.Timer(active=True)

    def poll(task_id):
        if not task_id:
            return gr.skip(), gr.Timer(active=False)
        try:
            s = task_status(task_id)
        except ValueError as e:
            return f"**Error:** {e}", gr.Timer(active=False)
        return status_md(s), gr.skip() if s["state"] == "running" else gr.Timer(active=False)

    private_ = dict(api_visibility="private")
    go_preview.click(on_preview, [picker.model, repo_id], [files, card], **private_)
    go.click(on_go, [picker.model, repo_id, private, token], [task, status, timer], **private_)
    timer.tick(poll, task, [status, timer], queue=False, **private_)

    def publish_preview(model: str, repo_id: str) -> dict:
        """Dry run of publishing model (run, model or quantized folder) as repo_id: {repo_id, files: [{name,
        bytes}], card}. No token, no request."""
        return preview(model, repo_id)

    def publish_api(model: str, repo_id: str, private: bool = False, token: str = "") -> dict:
        """Publish model as the Hub repo repo_id in the background (token: a write token; empty: the server's
        HF_TOKEN). Returns the task's status {id, state, repo_id, commit_url, error}; poll /publish_status."""
        return task_status(start(model, repo_id, private, token or None)["id"])

    def publish_status(task_id: str) -> dict:
        """A publish task's status: state running | done | failed, commit_url, error."""
        return task_status(task_id)

    gr.api(user_errors(publish_preview), api_name="publish_preview", concurrency_limit=2)
    gr.api(user_errors(publish_api), api_name="publish", concurrency_limit=2)
    gr.api(user_errors(publish_status), api_name="publish_status", queue=False)
