"""engine/normalize.py: each rule on known inputs; the tokenizer.json normalizer agrees with the Python function
(generated strings and raw mirror passages); idempotence; exact round trip of normalised text; old tokenizer
folders without a normalizer still load and still get normalised prompts."""
from __future__ import annotations

import html
import json
import re
import unicodedata
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import MIRROR
from engine.normalize import (NormalizeConfig, apply_rules, char_map, normalize, repair, rule_counts, rules,
                              tokenizer_normalizer)

TRICKY = ("ſ\u017f\u0307ﬅﬁﬂﬀﬃﬄﬆĳŉǅ\u00ad\u200b\u200c\u200d\u2060\ufeff\x00\x01\x0b\x7f\u206a\ufff9"
          "\u2018\u2019\u201a\u201b\u02bc\u201c\u201d\u201e\u201f'\"` \t\u00a0\u2002\u2009\u202f\u3000"
          "\r\n\u2028\u2029\u0085\x0c vVwyYe\u0301\u0327aAﬁſ〈…〉—-")
# Characters Python's Unicode database knows (tokenizers' Rust NFC may be a later Unicode version; a
# character unassigned here could compose there) and no lone surrogates (not UTF-8).
ASSIGNED = st.characters(exclude_categories=("Cs", "Cn"))
TEXT = st.text(alphabet=st.one_of(st.sampled_from(TRICKY), ASSIGNED), max_size=120)


@pytest.fixture(scope="module")
def tok_norm():
    return tokenizer_normalizer()


def test_rules_on_known_inputs():
    assert normalize("ſhall vvhich VVILLIAM Vvas novv savvy") == "shall which WILLIAM Was now savvy"
    assert normalize("\ufb05ay \ufb01ne o\ufb00ice") == "stay fine office"  # ﬅ -> ſt -> st
    assert normalize("\u2019tis \u201cquoth\u201d") == "'tis \"quoth\""
    assert normalize("a\u00adb\u200bc\u2060d\x01") == "abcd"
    assert normalize("a \t\u00a0b") == "a b" and normalize(" lead and trail ") == " lead and trail "
    assert normalize("x \n  y\n\n\n\nz\r\nw\rv\u2028u") == "x\ny\n\nz\nw\nv\nu"
    assert normalize("e\u0301") == "\u00e9" and normalize("ſ\u0307") == "\u1e61"  # long s first, then NFC: ṡ
    assert normalize("caf\u00c3\u00a9") == "caf\u00e9"  # mojibake: only the Python stage repairs it
    assert apply_rules("caf\u00c3\u00a9") == "caf\u00c3\u00a9"
    assert normalize("ſo", NormalizeConfig(keep_long_s=True)) == "ſo"
    assert normalize("\ufb05", NormalizeConfig(keep_long_s=True)) == "ſt"
    with pytest.raises(ValueError, match="keep_long_s='yes' must be True or False"):
        NormalizeConfig(keep_long_s="yes")
    with pytest.raises(TypeError, match="text must be str"):
        normalize(b"bytes")


def test_rule_counts():
    r = rule_counts(["ſo ſhall it be", "vvhich \u2019tis", "plain"])
    assert (r["texts"], r["changed"]) == (3, 2)
    assert r["rules"]["long_s"] == 2 and r["rules"]["vv"] == 1 and r["rules"]["quotes"] == 1
    assert r["rules"]["spaces"] == 0 and list(r["rules"])[0] == "repair" and list(r["rules"])[-1] == "nfc"


def test_char_map_is_the_table_one_character_at_a_time():
    m = char_map()
    assert m["\u017f"] == "s" and m["\ufb05"] == "st" and m["\u00ad"] == "" and m["\u2019"] == "'"
    assert all(apply_rules(c) == r for c, r in m.items())
    assert "\u017f" not in char_map(NormalizeConfig(keep_long_s=True))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=TEXT)
@example(s="a \n \n b")
@example(s="\u017f\u0307 vvy VVY vvv")
@example(s="\r\r\n\n\u2028 \u3000\n")
def test_tokenizer_normalizer_agrees_with_python(tok_norm, s):
    assert tok_norm.normalize_str(s) == apply_rules(s)


_ASCII_PLAIN = "".join(chr(c) for c in range(128) if chr(c) not in "&\x1b")


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=_ASCII_PLAIN, max_size=80))
@example("\r\n\x00\x7f\x0b<b>it's</b> \"quoted\" -- ae oe fi ... 1/2 \\x41 \\u00e9")
def test_repair_skips_ftfy_only_where_ftfy_changes_nothing(s):
    import ftfy

    from engine.normalize import _REPAIR
    assert repair(s) == s == ftfy.fix_text(s, _REPAIR)
    for t in (s + "&amp;", s + "\x1b[31m"):  # an entity, a terminal escape: ftfy's work
        assert repair(t) == ftfy.fix_text(t, _REPAIR)
    assert repair("a &amp; b \x1b[1mX\x1b[0m") == "a & b X"


@settings(max_examples=100, deadline=None)
@given(s=TEXT)
@example(s="\u00c2\x0b\x95")  # removing \x0b uncovers mojibake: normalize repeats repair until it holds
def test_normalize_is_idempotent(s):
    once = normalize(s)
    assert normalize(once) == once and apply_rules(once) == once


def _mirror_passages(n_files: int = 12, per_file: int = 40, span: int = 600) -> list[str]:
    tcp = sorted((MIRROR / "raw" / "tcp").glob("*.xml"))
    files = tcp[:: max(1, len(tcp) // n_files)]
    files += sorted((MIRROR / "raw" / "eltec").glob("*.xml"))[:2]
    out = []
    for f in files[: n_files + 2]:
        raw = f.read_text(encoding="utf-8")
        text = html.unescape(re.sub(r"<[^>]+>", "", raw[raw.find("<text"):]))
        step = max(span, len(text) // per_file)
        out += [text[i:i + span] for i in range(0, len(text) - span, step)][:per_file]
    return out


def test_agreement_on_raw_mirror_passages(tok_norm):
    if not (MIRROR / "raw" / "tcp").is_dir():
        pytest.skip(f"no corpus mirror at {MIRROR}")
    passages = _mirror_passages()
    assert len(passages) > 300
    counts = Counter()
    for p in passages:
        assert tok_norm.normalize_str(repair(p)) == normalize(p, counts=counts)
    # the raw mirror really exercises the table: long s, line layout and spaces in almost every passage
    assert counts["long_s"] > 1000 and counts["line_edges"] > 100 and counts["spaces"] > 100


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from engine.tokenizer import TokenizerConfig, train_tokenizer
    text = "Thou art in Cheapside, sir; 'tis which \"quoth\" he, fine office.\n\nA new line.\n" * 40
    return train_tokenizer([text] * 20, TokenizerConfig(vocab_size=400), tmp_path_factory.mktemp("t") / "tok")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=TEXT)
@example(s="\u017fhall vvhich \ufb01ne \u2019tis  x\n\n\n")
def test_round_trip_exact_on_normalised_text(trained, s):
    ids = trained.encode(s)
    assert trained.decode(ids) == apply_rules(s)  # stock AutoTokenizer path: the table is in tokenizer.json
    x = normalize(s)
    assert trained.decode(trained.encode(x)) == x


def test_old_folder_without_normalizer_loads_and_prompts_are_normalised(trained, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    from engine.tokenizer import encode_prompt, load_tokenizer, prompt_normalization
    src = trained.name_or_path
    old = tmp_path / "old"
    shutil.copytree(src, old)
    data = json.loads((old / "tokenizer.json").read_text(encoding="utf-8"))
    assert data["normalizer"]["type"] == "Sequence"
    data["normalizer"] = None  # as saved before this change
    (old / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    tok = load_tokenizer(old)
    assert tok.backend_tokenizer.normalizer is None
    assert tok.decode(tok.encode("\u017fir")) == "\u017fir"  # no normalizer: bytes in, bytes out
    assert encode_prompt(tok, "\u017fir vvhich") == encode_prompt(trained, "sir which") == tok.encode("sir which")
    assert prompt_normalization(tok) == NormalizeConfig()
    assert AutoTokenizer.from_pretrained(str(old)).encode("ſ") == tok.encode("ſ")


def test_keep_long_s_tokenizer(tmp_path):
    from engine.tokenizer import TokenizerConfig, encode_prompt, prompt_normalization, train_tokenizer
    cfg = TokenizerConfig(vocab_size=300, normalize=NormalizeConfig(keep_long_s=True))
    tok = train_tokenizer(["\u017fo it is, vvhich"] * 5, cfg, tmp_path / "k")
    assert prompt_normalization(tok) == NormalizeConfig(keep_long_s=True)
    assert tok.decode(encode_prompt(tok, "\u017fo vvhich")) == "\u017fo which"
    assert [r.name for r in rules(NormalizeConfig(keep_long_s=True))].count("long_s") == 0
    assert unicodedata.is_normalized("NFC", tok.decode(tok.encode("e\u0301")))
