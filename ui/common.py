"""What every tab shares: the app context (model roots, the corpus, how GPU work is wrapped), turning library
errors into messages the page and API clients show, throttled streaming, and findings -> highlighted text.
No logic of Anno's own lives here: only glue between gradio and the library."""
from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

from engine.serving import RequestError
from evals.judge import JudgeError

# Errors a user can cause: their messages name the field and range, so they go to the page as they are.
# Anything else is a bug: the page says so briefly and the server log has the traceback.
USER_ERRORS = (RequestError, JudgeError, ValueError, FileNotFoundError, TypeError)
# The browser renders the latest streamed value; more than ~20 updates a second only costs websocket
# traffic and re-renders (a 4-column comparison at 300 tok/s would otherwise send 1,200 messages/s).
STREAM_EVERY_S = 0.05


@dataclass
class Ctx:
    """App-wide settings chosen once at launch and shown in the page (never a hidden default)."""

    model_roots: list[str]
    default_model: str | None
    corpus: str | None  # the corpus every check, date and profile uses; None: lexicon-only checks, no dating
    batched: bool = True  # False on ZeroGPU: each call decodes alone in its GPU worker
    gpu: Callable = field(default=lambda duration: (lambda fn: fn))  # app.py's spaces.GPU(duration=...)


def user_errors(fn):
    """Wrap a callback (plain or generator) so that bad input becomes a gr.Error with its message."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except USER_ERRORS as e:
                raise gr.Error(str(e), print_exception=False) from None
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as e:
            raise gr.Error(str(e), print_exception=False) from None
    return plain


def throttled(items, every: float = STREAM_EVERY_S):
    """Yield from `items` at most once per `every` seconds, always including the last item."""
    last_t, pending, sentinel = 0.0, None, object()
    pending = sentinel
    for item in items:
        now = time.monotonic()
        if now - last_t >= every:
            last_t, pending = now, sentinel
            yield item
        else:
            pending = item
    if pending is not sentinel:
        yield pending


def highlighted(text: str, findings: list[dict]) -> dict:
    """gr.HighlightedText value: each finding's span labelled with its evidence year and basis."""
    ents = [{"entity": f"{f['word']}: {f['year']} ({f['basis']})", "start": f["start"], "end": f["end"]}
            for f in findings]
    return {"text": text, "entities": ents}


FINDING_COLUMNS = ["word", "year", "basis", "confidence", "explanation"]


def findings_rows(findings: list[dict]) -> list[list]:
    return [[f["word"], f["year"], f["basis"], round(f["confidence"], 2), f["explanation"]] for f in findings]


def date_line(d: dict | None) -> str:
    if not d:
        return "Estimated date: needs a corpus (start the app with --corpus)."
    note = {"short": " (short text: a rough estimate)", "empty": " (no words to date)",
            "no_evidence": " (too little evidence: the corpus prior)"}.get(d.get("flag"), "")
    return (f"Estimated date: **{d['year']}**, {int(round(100 * d['interval']))}% interval "
            f"{d['low']}–{d['high']}{note}")
