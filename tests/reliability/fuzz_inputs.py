"""Hypothesis strategies for the fuzz targets (tests/reliability/fuzz_targets.py): raw and early-modern text,
malformed values of every JSON type, TEI / XHTML / Bosak-play XML trees with their mutations (truncated,
spliced with junk bytes, re-encoded, binary), manifest lines, and the keyword arguments of every app endpoint.

The side-effecting endpoints (jobs, publishing) get arguments that are invalid *by construction* (a missing
manifest, a model folder that does not exist, a malformed repo id, no token), so a fuzz run can never start a
corpus build, a training process or a Hub request; what is fuzzed there is how the refusal is worded."""
from __future__ import annotations

import functools
import json

from hypothesis import strategies as st

# Characters the pipeline treats specially: long s, ligatures, vv, curly quotes, invisible and control
# characters, line separators, mojibake, combining marks, astral characters, the noncharacters the extractor
# uses as markers (U+FDD0-FDD5), control-token text and entities.
ODD = ["\u017f", "\ufb01", "\ufb05", "vv", "VV", "vvy", "\u2019tis", "\u201cquoth\u201d", "\u00ad", "\u200b",
       "\ufeff", "\r\n", "\r", "\u2028", "\u0085", "\x0b", "\x00", "\x1b[31m", "Ã©", "Â\x0b\x95", "e\u0301",
       "\u0301", "😀", "👨‍👩‍👧", "<|endoftext|>", "<|1600s|>", "<|unknown-era|>", "&amp;", "&lt;p&gt;", "\ufdd0",
       "\ufdd3", "\u3008\u2026\u3009", "\t", "  ", "\n\n\n", "\u00a0", "\u3000", "ﬀ", "Ĳ", "ǆ", "\x7f", "\x9d"]
WORDS = ("the king towne church hath doth quoth thou ye yeare London Thames telephone email smartphone railway "
         "o'er 'tis 1666 fire plague sermon merchant steam-engine okay selfie").split()
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300)  # lone surrogates: not UTF-8
PERIOD = st.lists(st.sampled_from(WORDS + ODD), max_size=60).map(" ".join)
ANY_TEXT = st.one_of(TEXT, PERIOD, st.lists(st.sampled_from(ODD), max_size=20).map("".join))

# JSON values of every type (what a form or API client can send): no NaN/inf, which JSON cannot carry.
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False,
                   allow_infinity=False), TEXT, st.sampled_from(["", " ", "1600", "1600.0", "1600.5", "-1",
                                                                 "1e9", "nan", "inf", "0x10", "١٦٠٠"]))
JSON = st.recursive(SCALAR, lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3), max_leaves=6)
# Library calls may also receive NaN, infinities and non-JSON objects.
PY = st.one_of(JSON, st.floats(), st.just(object()), st.binary(max_size=20))


def near(lo: int, hi: int):
    """Integers at and around a field's range edges (and far outside), as ints, floats or strings."""
    ints = st.one_of(st.integers(lo - 2, lo + 2), st.integers(hi - 2, hi + 2), st.integers(-2**64, 2**64))
    good = st.integers(lo, hi)
    return st.one_of(good, good, good.map(float), good.map(str), ints, ints.map(str), ints.map(lambda i: i + 0.5),
                     JSON)


# ------------------------------------------------------------------------------------------------ XML

TEI_TAGS = ("text body front back group div p lb pb gap hi choice abbr expan sic corr orig reg g sup note head "
            "l lg sp speaker stage list item table row cell label milestone q figure trailer closer seg ref am "
            "fw teiHeader floatingText unknownThing").split()
PLAY_TAGS = "PLAY TITLE FM PERSONAE PERSONA PGROUP GRPDESCR SCNDESCR ACT SCENE SPEECH SPEAKER LINE STAGEDIR P".split()
XHTML_TAGS = "section article div p br span i b em abbr a sup sub h1 h2 h3 hgroup blockquote table tr td header".split()
ATTRS = {"rend": ["sup", "superscript", "italic", "EOLhyphen", ""], "type": ["chapter", "letter", "noteref", "x"],
         "reason": ["illegible", "missing"], "extent": ["1 letter", "2 words", "-3"], "ref": ["char:EOLhyphen",
         "char:punc", "#x"], "unit": ["line", "page"], "n": ["1", "ii"],
         "epub:type": ["chapter", "titlepage", "z3998:poem", "noteref", "introduction"]}


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def element(draw, tags, depth: int = 0) -> str:
    tag = draw(st.sampled_from(tags))
    attrs = draw(st.dictionaries(st.sampled_from(sorted(ATTRS)), st.just(None), max_size=2))
    attr = "".join(f' {k}="{_esc(draw(st.sampled_from(ATTRS[k])))}"' for k in attrs)
    if depth >= 4 or draw(st.integers(0, 4)) == 0:
        kids = [_esc(draw(ANY_TEXT))]
    else:
        kids = draw(st.lists(st.one_of(ANY_TEXT.map(_esc), element(tags, depth + 1)), max_size=4))
    return f"<{tag}{attr}>{''.join(kids)}</{tag}>" if kids or draw(st.booleans()) else f"<{tag}{attr}/>"


@st.composite
def mutated(draw, xml: str) -> bytes:
    """Well-formed XML, or the same broken: truncated, junk spliced in, re-encoded, binary, a DOCTYPE."""
    how = draw(st.sampled_from(["asis", "asis", "truncate", "splice", "utf16", "bom", "doctype", "binary", "empty"]))
    data = xml.encode("utf-8")
    if how == "truncate":
        return data[:draw(st.integers(0, len(data)))]
    if how == "splice":
        i = draw(st.integers(0, len(data)))
        return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
    if how == "utf16":
        return xml.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "doctype":  # internal entities: never resolved (resolve_entities=False), never expanded
        dtd = ('<!DOCTYPE TEI [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
               '<!ENTITY ext SYSTEM "file:///etc/passwd">]>')
        body = xml.split("?>", 1)[-1].replace("</p>", "&b;&ext;</p>", 1)
        return (dtd + body).encode("utf-8")
    if how == "binary":
        return draw(st.binary(max_size=200))
    return b"" if how == "empty" else data


TEI_NS = 'xmlns="http://www.tei-c.org/ns/1.0"'


@st.composite
def tei_bytes(draw) -> bytes:
    body = "".join(draw(st.lists(element(TEI_TAGS), max_size=4)))
    ns = draw(st.sampled_from([TEI_NS, TEI_NS, ""]))
    root = draw(st.sampled_from(["TEI", "TEI", "text", "html"]))
    inner = f"<teiHeader><title>x</title></teiHeader><text><body>{body}</body></text>" if root != "text" else \
        f"<body>{body}</body>"
    return draw(mutated(f'<?xml version="1.0" encoding="UTF-8"?><{root} {ns}>{inner}</{root}>'))


@st.composite
def play_bytes(draw) -> bytes:
    acts = "".join(draw(st.lists(element(PLAY_TAGS), max_size=4)))
    return draw(mutated(f'<?xml version="1.0" encoding="UTF-8"?><PLAY><TITLE>T</TITLE>{acts}</PLAY>'))


@st.composite
def xhtml_bytes(draw) -> bytes:
    body = "".join(draw(st.lists(element(XHTML_TAGS), max_size=4)))
    return draw(mutated('<?xml version="1.0" encoding="UTF-8"?><html xmlns="http://www.w3.org/1999/xhtml" '
                        f'xmlns:epub="http://www.idpf.org/2007/ops"><body>{body}</body></html>'))


@st.composite
def opf_bytes(draw, hrefs: list[str]) -> bytes:
    """A content.opf whose spine names the given files, sometimes with a dangling or missing item."""
    items = "".join(f'<item id="i{i}" href="{_esc(h)}"/>' for i, h in enumerate(hrefs))
    refs = [f'<itemref idref="i{i}"/>' for i in range(len(hrefs))] + draw(st.lists(
        st.sampled_from(['<itemref idref="nope"/>', "<itemref/>"]), max_size=1))
    return draw(mutated('<?xml version="1.0" encoding="UTF-8"?><package xmlns="http://www.idpf.org/2007/opf">'
                        f'<manifest>{items}</manifest><spine>{"".join(refs)}</spine></package>'))


TEXT_BYTES = st.one_of(st.binary(max_size=400), ANY_TEXT.map(lambda s: s.encode("utf-8", "surrogatepass")),
                       ANY_TEXT.map(lambda s: s.encode("utf-16")),
                       ANY_TEXT.map(lambda s: s.encode("cp1252", "replace")),
                       st.lists(ANY_TEXT, max_size=4).map(lambda p: "\f".join(p).encode("utf-8")))

# --------------------------------------------------------------------------------------------- manifest

SHA = "0" * 64
GOOD_RECORD = {"id": "x1", "title": "T", "year": 1600, "format": "text", "license": "CC0-1.0",
               "files": [{"path": "a.txt", "sha256": SHA, "bytes": 3}]}


@st.composite
def manifest_line(draw) -> str:
    """One JSONL line: a good record with some fields replaced by junk or removed, junk JSON, or not JSON."""
    how = draw(st.sampled_from(["record", "record", "record", "json", "text"]))
    if how == "json":
        return json.dumps(draw(JSON))
    if how == "text":
        return draw(ANY_TEXT).replace("\n", " ")
    rec = dict(GOOD_RECORD)
    for k in draw(st.lists(st.sampled_from(sorted(GOOD_RECORD) + ["upstream_urls", "london", "decade", "source"]),
                           max_size=3)):
        if draw(st.booleans()):
            rec[k] = draw(JSON)
        else:
            rec.pop(k, None)
    return json.dumps(rec)


# ------------------------------------------------------------------------------------------ app endpoints

MISSING = st.one_of(TEXT.map(lambda s: "fuzz-no-such-dir/" + s), st.integers(1, 10**6), st.just(True),
                    st.lists(st.integers(), min_size=1, max_size=2), st.dictionaries(TEXT, st.integers(), min_size=1,
                                                                                   max_size=1))
BAD_REPO = st.one_of(TEXT.map(lambda s: "bad repo id " + s), st.integers(), st.just(None), st.lists(TEXT, max_size=2))
NO_TOKEN = st.sampled_from(["", None])
PROMPT = st.one_of(ANY_TEXT, ANY_TEXT, ANY_TEXT, JSON)
# A model name that is never a Hub id (exactly one '/'): the app must not go to the network for it.
MODEL = st.one_of(st.none(), st.just(""), TEXT.map(lambda s: "fuzz-missing-" + s.replace("/", "")),
                  st.sampled_from(["../../etc", "/etc/passwd", "~", ".", "runs/../../x/y"]), st.integers(),
                  st.booleans())


@functools.lru_cache(maxsize=1)
def endpoint_params() -> dict[str, tuple[dict, dict]]:
    """Endpoint name -> (required, optional) keyword strategies, named as the app declares its parameters."""
    y, tok, p = near(1500, 1859), near(1, 128), st.one_of(st.floats(0, 1), JSON)
    return {
        "/generate": ({"prompt": PROMPT, "year": y}, {
            "lock_year": near(1500, 2100), "max_new_tokens": tok, "temperature": st.one_of(st.floats(-1, 6), JSON),
            "top_k": near(0, 100_000), "top_p": p, "seed": near(0, 2**63 - 1), "model": MODEL}),
        "/compare": ({"prompt": PROMPT, "years": st.one_of(st.lists(y, max_size=5), JSON)},
                     {"lock": st.one_of(st.booleans(), st.lists(st.booleans(), max_size=5), JSON),
                      "seed": near(0, 2**63 - 1), "max_new_tokens": tok, "model": MODEL}),
        "/check": ({"text": PROMPT, "year": near(1000, 2100)}, {}),
        "/date": ({"text": PROMPT}, {}),
        "/profile": ({"text": PROMPT}, {"year": near(1000, 2100)}),
        "/models": ({}, {}),
        "/jobs": ({}, {}),
        "/job_status": ({"job_id": JSON}, {}),
        "/job_stop": ({"job_id": JSON}, {}),
        "/job_resume": ({"job_id": JSON}, {}),
        "/job_extend": ({"job_id": JSON, "max_steps": JSON}, {}),
        "/publish_status": ({"task_id": JSON}, {}),
        "/publish_preview": ({"model": MISSING, "repo_id": JSON}, {}),
        "/publish": ({"model": MISSING, "repo_id": BAD_REPO, "token": NO_TOKEN}, {"private": JSON}),
        "/corpus_build": ({"out": JSON, "manifest": MISSING}, {
            k: JSON for k in ("mirror", "year_from", "year_to", "london_only", "sources", "val_fraction",
                              "test_fraction", "workers", "strict")}),
        "/train_start": ({"corpus": MISSING, "tokenizer": JSON, "out": JSON}, {
            k: JSON for k in ("preset", "max_steps", "batch_size", "n_ctx", "lr", "eval_every", "checkpoint_every",
                              "options")}),
        "/quantize": ({"model": MISSING}, {k: JSON for k in ("method", "out", "eval_docs", "corpus")}),
        "/evaluate": ({"model": MISSING}, {k: JSON for k in ("suite", "corpus", "out")}),
    }


def endpoint_args() -> dict:
    """Endpoint name -> strategy of its keyword arguments."""
    return {n: st.fixed_dictionaries(req, optional=opt) for n, (req, opt) in endpoint_params().items()}


# ------------------------------------------------------------------------------------- generation settings

SUFFIXES = st.sampled_from([".txt", ".md", ".xml", ".tei", ".TXT", ".pdf", ""])
_GEN = {"prompt": PROMPT, "year": near(1500, 1859), "lock_year": near(1500, 2100),
        "max_new_tokens": near(1, 64),
        "temperature": st.one_of(st.floats(0, 5), st.floats(0, 5), st.floats(), JSON),
        "top_k": near(0, 100_000), "top_p": st.one_of(st.floats(1e-6, 1), st.floats(1e-6, 1), st.floats(), JSON),
        "seed": near(0, 2**63 - 1)}


def generation_kwargs():
    """A valid request with 0-2 fields replaced by fuzzed values (all fuzzed: nearly always refused early)."""
    good = st.fixed_dictionaries({"prompt": st.sampled_from(["The king", "ſir, the towne", "vvhich"]),
                                  "year": st.integers(1500, 1859), "max_new_tokens": st.integers(1, 8),
                                  "temperature": st.sampled_from([0, 0.7, 1.0]), "seed": st.integers(0, 9)})
    bad = st.dictionaries(st.sampled_from(sorted(_GEN)), st.none(), max_size=2).flatmap(
        lambda d: st.fixed_dictionaries({k: _GEN[k] for k in d}))
    return st.tuples(good, bad).map(lambda gb: gb[0] | gb[1])


def compare_kwargs():
    good = st.fixed_dictionaries({"prompt": st.just("The king"), "years": st.lists(st.integers(1500, 1859), min_size=2,
                                                                                   max_size=4),
                                  "locks": st.booleans(), "seed": st.integers(0, 9),
                                  "max_new_tokens": st.integers(1, 8)})
    junk = {"prompt": PROMPT, "years": st.one_of(st.lists(near(1500, 1859), max_size=5), JSON),
            "locks": st.one_of(st.lists(st.booleans(), max_size=5), JSON), "seed": near(0, 2**63 - 1),
            "max_new_tokens": near(1, 64)}
    bad = st.dictionaries(st.sampled_from(sorted(junk)), st.none(), max_size=2).flatmap(
        lambda d: st.fixed_dictionaries({k: junk[k] for k in d}))
    return st.tuples(good, bad).map(lambda gb: gb[0] | gb[1])
