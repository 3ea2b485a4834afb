"""What every tab shares: the app context (model roots, the corpus, how GPU work is wrapped), turning library
errors into messages the page and API clients show, throttled streaming, and findings -> highlighted text.
No logic of Anno's own lives here: only glue between gradio and the library."""
from __future__ import annotations

import functools
import inspect
import time
import types
import typing
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


def _shape_ok(v, ann) -> bool:
    """Whether a JSON value has the shape of an annotation (str, int, float, bool, list[...], dict, unions
    with None); any other annotation accepts everything. Numbers may come as strings (forms send them so;
    the library parses them and checks the range)."""
    if ann is None or ann is type(None):
        return v is None
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        return any(_shape_ok(v, a) for a in typing.get_args(ann))
    origin = typing.get_origin(ann) or ann
    if origin is str:
        return isinstance(v, str)
    if origin is bool:
        return isinstance(v, bool)
    if origin in (int, float):
        return isinstance(v, (int, float, str)) and not isinstance(v, bool)
    if origin is list:
        item = (typing.get_args(ann) or (typing.Any,))[0]
        return isinstance(v, list) and all(_shape_ok(x, item) for x in v)
    if origin is dict:
        return isinstance(v, dict)
    return True


_SHAPES = {str: "a string", bool: "true or false", int: "a number", float: "a number", list: "a list",
           dict: "a JSON object", type(None): "null"}
_PLURAL = {str: "strings", bool: "true/false values", int: "numbers", float: "numbers", list: "lists",
           dict: "JSON objects"}


def _shape_name(ann) -> str:
    if isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union:
        return " or ".join(dict.fromkeys(_shape_name(a) for a in typing.get_args(ann)))
    origin = typing.get_origin(ann) or ann
    if origin is list and typing.get_args(ann):
        item = typing.get_origin(typing.get_args(ann)[0]) or typing.get_args(ann)[0]
        return f"a list of {_PLURAL.get(item, 'values')}"
    return _SHAPES.get(origin, getattr(origin, "__name__", str(origin)))


def check_shapes(fn, args: tuple, kwargs: dict) -> None:
    """API arguments against the callback's annotations: gr.api shows clients the types but does not enforce
    them, and a list where a path belongs reached the library as "expected str, bytes or os.PathLike object,
    not list" (tests/reliability/test_fuzz.py). A parameter whose default is None also accepts null. Ranges and
    parsing stay with the library."""
    try:
        sig = inspect.signature(fn, eval_str=True)
        bound = sig.bind_partial(*args, **kwargs)
    except (TypeError, ValueError, NameError):  # unannotated UI callbacks, gradio's own parameters
        return
    for name, v in bound.arguments.items():
        p = sig.parameters[name]
        if p.annotation is p.empty or (v is None and p.default is None) or _shape_ok(v, p.annotation):
            continue
        shown = repr(v) if len(repr(v)) <= 80 else repr(v)[:80] + "..."
        raise RequestError(f"{name}={shown}: must be {_shape_name(p.annotation)}")


def user_errors(fn):
    """Wrap a callback (plain or generator) so that bad input becomes a gr.Error with its message; arguments
    of the wrong shape for its annotations (the API functions) are refused first, naming the parameter."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args, **kwargs):
            try:
                check_shapes(fn, args, kwargs)
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except USER_ERRORS as e:
                raise gr.Error(str(e), print_exception=False) from None
        return gen

    @functools.wraps(fn)
    def plain(*args, **kwargs):
        try:
            check_shapes(fn, args, kwargs)
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
