"""Fuzz targets: one plain function per input surface of Anno, each calling the real library function (or the
launched app through gradio_client) with one generated input and saying how it went, plus `run_fuzz`, the long
seeded run that benchmarks/soak.py reports.

An outcome is one of
  ok         the call succeeded (and, for the tokenizer and normaliser, its property held);
  rejection  the call raised the surface's documented error type (RequestError, JudgeError, SourceError,
             ManifestError, TypeError/ValueError of the normaliser, AppError from the app) with a clear
             message: no Python-internal wording ("invalid literal for int()", "'NoneType' object ...", a
             wrapped "KeyError: ..."), and, where the surface has named fields, naming one of them;
  unclear    the documented error type, but a message that fails that test (a masked bug or an unhelpful
             refusal);
  unhandled  any other exception, or the app's generic "raised an exception" answer (a crash in a callback);
  broken     a property failed (decode(encode(x)) != the normalised x, normalize not idempotent or not NFC).
`unhandled_exceptions` in run_fuzz's result counts unhandled + unclear + broken: all must be 0.

Surfaces (TARGETS): corpus extraction of TEI, Standard Ebooks XHTML (content.opf + a chapter), Bosak plays in
a zip and plain-text bytes (training.extract.extract); a user's upload (read_upload); manifest lines
(training.manifest.read_manifest); the tokenizer round trip and prompt encoding; the normaliser; the judge's
check / date / profile (evals/judge.py); generation settings (engine.serving.request_config, then decoding a
few tokens with a tiny model, and serving.compare); and every named endpoint of the app."""
from __future__ import annotations

import re
import tempfile
import traceback
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hypothesis import strategies as st

try:  # imported as tests.reliability.fuzz_targets (benchmarks/soak.py) or from this folder (pytest)
    from . import fuzz_inputs as I
except ImportError:
    import fuzz_inputs as I

GENERIC_APP_ERROR = "raised an exception but has not enabled verbose error reporting"
# Wording that only Python internals produce: a refusal carrying it was not written for a user.
INTERNAL = re.compile(r"Traceback \(most recent|^\w*(Error|Exception)\b:|\b(Key|Index|Attribute|Type|Value|"
                      r"Zero\w*|Overflow|Recursion)Error\b|invalid literal for|could not convert|has no attribute|"
                      r"object is not (iterable|subscriptable|callable)|unsupported operand|not supported between|"
                      r"argument must be|argument should be|unhashable type|'NoneType' object|positional argument|"
                      r"unexpected keyword|out of range for|index out of range|codec can't|<object object at")


@dataclass
class Outcome:
    kind: str  # ok | rejection | unclear | unhandled | broken
    detail: str = ""


def unclear_reason(msg: str, fields: tuple[str, ...] = ()) -> str | None:
    """Why a refusal message is not clear, or None when it is."""
    if not msg.strip():
        return "empty message"
    if m := INTERNAL.search(msg):
        return f"Python-internal wording {m.group(0)!r}"
    if fields and not any(re.search(rf"(?<![\w]){re.escape(f)}(?![\w])", msg) for f in fields):
        return f"names none of the fields {', '.join(fields)}"
    return None


def call(fn: Callable, documented: tuple[type, ...], fields: tuple[str, ...] = ()) -> Outcome:
    """Run fn(); classify what it raised."""
    try:
        fn()
    except documented as e:
        why = unclear_reason(str(e), fields)
        return Outcome("unclear", f"{type(e).__name__}: {e} [{why}]") if why else Outcome("rejection", str(e))
    except Exception as e:  # noqa: BLE001  (what the fuzzer looks for)
        return Outcome("unhandled", "".join(traceback.format_exception(e))[-3000:])
    return Outcome("ok")


@dataclass
class Env:
    """What the targets need: a scratch folder, a built corpus (or None), a trained tokenizer folder, a tiny
    random-initialised model on it, and a gradio_client for the launched app (or None)."""
    scratch: Path
    corpus: str | None
    tokenizer_dir: str
    app_url: str | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def tok(self):
        if "tok" not in self._cache:
            from engine.tokenizer import load_tokenizer
            self._cache["tok"] = load_tokenizer(self.tokenizer_dir)
        return self._cache["tok"]

    @property
    def loaded(self):
        if "loaded" not in self._cache:
            import torch

            from engine.loading import Loaded
            from engine.model import build_model, model_config
            torch.manual_seed(0)
            model = build_model(model_config("tiny", len(self.tok), n_ctx=64), 0, 0, 0).eval()
            self._cache["loaded"] = Loaded("fuzz-tiny", self.scratch, model, self.tok, 0)
        return self._cache["loaded"]

    @property
    def client(self):
        if "client" not in self._cache:
            from app_fixtures import api_client
            self._cache["client"] = api_client(self.app_url)
        return self._cache["client"]


# ------------------------------------------------------------------------------------------------ corpus

def _extract(env: Env, fmt: str, files: dict[str, bytes], record_files: list[dict] | None = None) -> Outcome:
    from training.extract import extract
    from training.manifest import SourceError

    paths = {}
    for name, data in files.items():
        p = env.scratch / "extract" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        paths[name] = p
    rec = {"id": "fuzz", "format": fmt, "files": record_files or [{"path": n} for n in files]}
    return call(lambda: extract(rec, paths), (SourceError,))


def extract_tei(env: Env, data: bytes) -> Outcome:
    return _extract(env, "tcp-tei", {"a.xml": data})


def extract_xhtml(env: Env, x: tuple[bytes, bytes]) -> Outcome:
    opf, chapter = x
    return _extract(env, "standardebooks-xhtml",
                    {"src/epub/content.opf": opf, "src/epub/text/chapter-1.xhtml": chapter})


def extract_play(env: Env, x: tuple[bytes, str]) -> Outcome:
    data, member = x
    z = env.scratch / "extract" / "plays.zip"
    z.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("shakespeare/a.xml", data)
    return _extract(env, "nltk-bosak-xml", {"plays.zip": z.read_bytes()}, [{"path": "plays.zip", "member": member}])


def extract_text(env: Env, data: bytes) -> Outcome:
    return _extract(env, "text", {"a.txt": data})


def upload(env: Env, x: tuple[str, bytes]) -> Outcome:
    from training.extract import read_upload

    suffix, data = x
    p = env.scratch / "upload" / f"pasted{suffix}"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return call(lambda: read_upload(p), (ValueError,), ("file",))


def manifest(env: Env, lines: list[str]) -> Outcome:
    from training.manifest import ManifestError, Selection, read_manifest

    p = env.scratch / "m.jsonl"
    p.write_text("\n".join(lines), encoding="utf-8")

    def go():
        records, errors = read_manifest(p)
        for e in errors:  # per-line refusals are reported, not raised: each must be clear too
            if why := unclear_reason(e.message):
                raise AssertionError(f"unclear manifest error {e.message!r}: {why}")
        for r in records:
            Selection(year_from=1500, year_to=1700, london_only=True, sources=("x",)).keeps(r)
    return call(go, (ManifestError,))


# ---------------------------------------------------------------------------------- tokenizer, normaliser

def tokenizer_round_trip(env: Env, x: tuple[str, object]) -> Outcome:
    """decode(encode(s)) is s as the tokenizer's normalizer (engine.normalize.apply_rules) leaves it, and a
    prompt decodes to normalize(s): the lossless contract of engine/tokenizer.py."""
    from engine.normalize import apply_rules, normalize
    from engine.tokenizer import encode_prompt, era_token, prompt_normalization

    s, year = x
    tok = env.tok
    try:
        cfg = prompt_normalization(tok)
        back = tok.decode(tok.encode(s), skip_special_tokens=False, clean_up_tokenization_spaces=False)
        ids = encode_prompt(tok, s, year)
        era = era_token(year) if year is not None else None
        prompt = tok.decode(ids[1:] if era else ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    except Exception as e:  # noqa: BLE001
        return Outcome("unhandled", "".join(traceback.format_exception(e))[-3000:])
    if back != apply_rules(s, cfg):
        return Outcome("broken", f"decode(encode({s!r})) = {back!r} != {apply_rules(s, cfg)!r}")
    if prompt != normalize(s, cfg):
        return Outcome("broken", f"encode_prompt({s!r}) decodes to {prompt!r} != {normalize(s, cfg)!r}")
    if era and tok.convert_ids_to_tokens(ids[0]) != era:
        return Outcome("broken", f"encode_prompt(year={year}) starts with {ids[0]}, not {era}")
    return Outcome("ok")


def normaliser(env: Env, s) -> Outcome:
    """normalize is idempotent, NFC, a fixed point of the tokenizer's normalizer; non-text is a TypeError."""
    from engine.normalize import NormalizeConfig, apply_rules, normalize, tokenizer_normalizer

    if not isinstance(s, str):
        return call(lambda: normalize(s), (TypeError,), ("text",))
    for cfg in (NormalizeConfig(), NormalizeConfig(keep_long_s=True)):
        try:
            once = normalize(s, cfg)
            twice = normalize(once, cfg)
            tok_norm = env._cache.setdefault(("norm", cfg), tokenizer_normalizer(cfg)).normalize_str(once)
        except Exception as e:  # noqa: BLE001
            return Outcome("unhandled", "".join(traceback.format_exception(e))[-3000:])
        if twice != once:
            return Outcome("broken", f"normalize not idempotent on {s!r}: {once!r} -> {twice!r} ({cfg})")
        if not unicodedata.is_normalized("NFC", once):
            return Outcome("broken", f"normalize({s!r}) = {once!r} is not NFC ({cfg})")
        if apply_rules(once, cfg) != once or tok_norm != once:
            return Outcome("broken", f"normalize({s!r}) = {once!r} is not a fixed point of the table ({cfg})")
    return Outcome("ok")


# ------------------------------------------------------------------------------------------- judge, serving

def judge(env: Env, x: tuple[str, object, object, bool]) -> Outcome:
    from evals import judge as J

    what, text, year, with_corpus = x
    corpus = env.corpus if with_corpus else None
    fn = {"check": lambda: J.findings(text, year, corpus), "date": lambda: J.date(text, corpus),
          "profile": lambda: J.profile(text, year, corpus)}[what]
    return call(fn, (J.JudgeError,), ("text", "year", "corpus"))


GEN_FIELDS = ("prompt", "year", "lock_year", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "context",
              "years", "lock")


def generation(env: Env, kw: dict) -> Outcome:
    """request_config with the fields as a form or client sends them; accepted settings then decode 3 tokens."""
    from engine.generate import stream
    from engine.serving import RequestError, request_config

    def go():
        prompt, cfg = request_config(context=64, **kw)
        events = stream(env.loaded.model, env.loaded.tokenizer, prompt, cfg)
        for _, _ in zip(range(3), events):
            pass
        events.close()
    return call(go, (RequestError,), GEN_FIELDS)


def compare(env: Env, kw: dict) -> Outcome:
    from engine import serving

    def go():
        cols = serving.compare(env.loaded, batched=False, **kw)
        next(cols, None)
        cols.close()
    return call(go, (serving.RequestError,), GEN_FIELDS)


# ---------------------------------------------------------------------------------------------------- app

def app(env: Env, x: tuple[str, dict]) -> Outcome:
    """One call of a named endpoint with fuzzed keyword arguments; a refusal must name one of its parameters
    (possibly one left at its default: /generate's max_new_tokens=200 is refused for a 128-token model)."""
    from gradio_client.exceptions import AppError

    name, kw = x
    try:
        env.client.submit(**kw, api_name=name).result(timeout=120)
    except AppError as e:
        msg = str(e)
        if GENERIC_APP_ERROR in msg:
            return Outcome("unhandled", f"{name} {_short(kw)}: {msg}")
        req, opt = I.endpoint_params()[name]
        why = unclear_reason(msg, (*req, *opt) or ("",))
        return Outcome("unclear", f"{name} {_short(kw)}: {msg} [{why}]") if why else Outcome("rejection", msg)
    except Exception as e:  # noqa: BLE001  (transport errors, timeouts: the server did not answer)
        return Outcome("unhandled", f"{name} {_short(kw)}: {type(e).__name__}: {e}")
    return Outcome("ok")


def _short(v, n: int = 300) -> str:
    r = repr(v)
    return r if len(r) <= n else r[:n] + f"... ({len(r):,} chars)"


# ------------------------------------------------------------------------------------------------ registry

@dataclass(frozen=True)
class Target:
    strategy: Callable[[], st.SearchStrategy]
    fn: Callable[[Env, object], Outcome]
    weight: int = 1  # share of run_fuzz's cases
    needs_app: bool = False


TARGETS: dict[str, Target] = {
    "extract_tei": Target(I.tei_bytes, extract_tei, 2),
    "extract_xhtml": Target(lambda: st.tuples(I.opf_bytes(["text/chapter-1.xhtml"]), I.xhtml_bytes()), extract_xhtml),
    "extract_play": Target(lambda: st.tuples(I.play_bytes(), st.sampled_from(["shakespeare/a.xml", "missing.xml", ""])),
                           extract_play),
    "extract_text": Target(lambda: I.TEXT_BYTES, extract_text),
    "upload": Target(lambda: st.tuples(I.SUFFIXES, st.one_of(I.TEXT_BYTES, I.tei_bytes())), upload),
    "manifest": Target(lambda: st.lists(I.manifest_line(), max_size=4), manifest),
    "tokenizer": Target(lambda: st.tuples(I.ANY_TEXT, st.one_of(st.none(), st.integers(1490, 1870))),
                        tokenizer_round_trip, 2),
    "normaliser": Target(lambda: st.one_of(I.ANY_TEXT, I.ANY_TEXT, I.PY), normaliser, 2),
    "judge": Target(lambda: st.tuples(st.sampled_from(["check", "date", "profile"]),
                                      st.one_of(I.ANY_TEXT, I.ANY_TEXT, I.ANY_TEXT, I.PY, st.just("a " * 1_000_001)),
                                      st.one_of(I.near(1000, 2100), st.none()), st.booleans()), judge, 2),
    "generation": Target(I.generation_kwargs, generation, 2),
    "compare": Target(I.compare_kwargs, compare),
    "app": Target(lambda: st.sampled_from(sorted(I.endpoint_args())).flatmap(
        lambda n: st.tuples(st.just(n), I.endpoint_args()[n])), app, 3, needs_app=True),
}


def run_target(env: Env, name: str, x) -> Outcome:
    return TARGETS[name].fn(env, x)


def prepare(scratch: str | Path, corpus: str | Path | None = None, tokenizer: str | Path | None = None,
            app_url: str | None = None) -> Env:
    """An Env; without corpus/tokenizer it builds the tests' tiny corpus (24 generated sources, the real
    pipeline) and a 512-token tokenizer under scratch (about a minute on 2 cores)."""
    scratch = Path(scratch)
    if corpus is None:
        import sys
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from fixtures import make_corpus
        corpus = make_corpus(scratch / "corpus_src")
    if tokenizer is None:
        from training.tok_train import train_corpus_tokenizer
        tokenizer = scratch / "tok"
        train_corpus_tokenizer(corpus, tokenizer, vocab_size=512, compare_seed=False, log=lambda m: None)
    return Env(scratch, str(corpus), str(tokenizer), app_url)


def run_fuzz(cases: int, seed: int = 0, app_url: str | None = None, *, corpus: str | Path | None = None,
             tokenizer: str | Path | None = None, log: Callable[[str], None] = lambda m: None) -> dict:
    """Fuzz every target with about `cases` generated inputs in all (split by TARGETS' weights; the app
    target only when app_url is given: the URL of a running Anno app), reproducibly for a seed. corpus /
    tokenizer: a built corpus and tokenizer folder to use (default: a tiny pair built in a temp folder).

    Returns {"fuzz_cases", "unhandled_exceptions", "rejections", "by_target": {name: {"cases", "ok",
    "rejection", "unclear", "unhandled", "broken", "examples": [first 5 failure details]}}, "app_alive"};
    unhandled_exceptions = unhandled + unclear + broken over all targets (0 is the pass mark)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    names = [n for n, t in TARGETS.items() if app_url or not t.needs_app]
    total_w = sum(TARGETS[n].weight for n in names)
    by: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="anno-fuzz-") as tmp:
        env = prepare(tmp, corpus, tokenizer, app_url)
        for name in names:
            n = max(1, round(cases * TARGETS[name].weight / total_w))
            tally: Counter = Counter()
            examples: list[str] = []

            def record(x, name=name, tally=tally, examples=examples):
                out = run_target(env, name, x)
                tally[out.kind] += 1
                if out.kind not in ("ok", "rejection") and len(examples) < 5:
                    examples.append(f"{out.kind}: {out.detail[-1500:]}")

            # generate only: nothing fails inside, so there is nothing to shrink; the seed fixes the inputs
            hseed(seed)(settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
                                 suppress_health_check=list(HealthCheck))(
                given(x=TARGETS[name].strategy())(lambda x: record(x))))()
            by[name] = {"cases": sum(tally.values()), **{k: tally[k] for k in
                                                          ("ok", "rejection", "unclear", "unhandled", "broken")},
                        "examples": examples}
            log(f"fuzz {name}: {by[name]['cases']} cases, {by[name]['rejection']} rejections, "
                f"{by[name]['unclear'] + by[name]['unhandled'] + by[name]['broken']} failures")
        alive = None
        if app_url:  # the server still answers a good request after everything above
            good = ("/check", {"text": "He rang me on the telephone", "year": 1600})
            alive = run_target(env, "app", good).kind == "ok"
    return {"fuzz_cases": sum(b["cases"] for b in by.values()),
            "unhandled_exceptions": sum(b["unclear"] + b["unhandled"] + b["broken"] for b in by.values()),
            "rejections": sum(b["rejection"] for b in by.values()), "app_alive": alive, "by_target": by}
