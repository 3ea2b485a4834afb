"""Tests for engine/tokenizer.py: losslessness, control tokens, encoding layout, folder format, reports, seed recipe."""
from __future__ import annotations

import html
import json
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from conftest import MIRROR
from engine.normalize import apply_rules
from engine.tokenizer import (
    _train_bpe,
    _wrap,
    EOT,
    ERA_DECADES,
    MIN_VOCAB_SIZE,
    SPECIAL_TOKENS,
    UNKNOWN_ERA,
    TokenizerConfig,
    archaic_words,
    compare_with_seed,
    encode_document,
    encode_prompt,
    era_token,
    load_tokenizer,
    seed_recipe_tokenizer,
    tokenizer_hash,
    tokenizer_report,
    train_tokenizer,
)

# ~1.6 MB of text once tags are stripped: early modern (1564, 1615), Georgian (1724) and an 1847 novel.
MIRROR_FILES = ("raw/tcp/A07669.xml", "raw/tcp/A12957.xml", "raw/tcp/K059809.000.xml", "raw/eltec/ENG18471_Bronte.xml")
GENERATED = [
    f"Chapter {i}.\n\nThou art in Cheapside, ſir; the café is {i} rods hence — “quoth he”.  Naïve Ælfric's "
    f"maſter went to Newgate in {1500 + i}.\n"
    for i in range(400)
]


def strip_tags(xml: str) -> str:
    """Crude test-only extraction: the <text> element with tags removed and entities unescaped."""
    return html.unescape(re.sub(r"<[^>]+>", "", xml[xml.find("<text"):]))


@pytest.fixture(scope="module")
def train_texts() -> list[str]:
    """Real mirror text when the mirror is present, generated text otherwise (so the property test always runs)."""
    if all((MIRROR / f).exists() for f in MIRROR_FILES):
        return [strip_tags((MIRROR / f).read_text(encoding="utf-8")) for f in MIRROR_FILES]
    return GENERATED


@pytest.fixture(scope="module")
def folder(tmp_path_factory, train_texts):
    out = tmp_path_factory.mktemp("tok") / "bpe2k"
    train_tokenizer(train_texts, TokenizerConfig(vocab_size=2000), out)
    return out


@pytest.fixture(scope="module")
def tok(folder) -> PreTrainedTokenizerFast:
    return AutoTokenizer.from_pretrained(str(folder))  # the plain transformers path, not our loader


# ------------------------------------------------------------------------------------------ losslessness


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=200))  # lone surrogates: not UTF-8
@example(s="")
@example(s="  leading and trailing  \n")
@example(s="line one\r\nline two\n\n\tindented")
@example(s="ſhall cafe\u0301 café Ælfric ÿ ⁊ ꝑ 〈◊◊◊〉 ¶")
@example(s="emoji 😀👍🏽 and 👨‍👩‍👧 zwj, e\u0301\u0323 stacked marks")
@example(s="don 't , ok . spaces before punctuation ?")
def test_decode_encode_is_identity(tok, s):
    """Nothing is added or cleaned up beyond the corpus's normalisation (in tokenizer.json): decode(encode(s))
    is s as the normaliser leaves it, and exactly s when s is already normal (tests/test_normalize.py has
    the agreement of that normalizer with engine.normalize)."""
    ids = tok.encode(s)  # default arguments
    assert tok.decode(ids) == apply_rules(s)
    if apply_rules(s) == s:
        assert tok.decode(ids) == s


# ------------------------------------------------------------------------------------------ control tokens


def test_era_token_edges():
    assert era_token(1499) == UNKNOWN_ERA
    assert era_token(1500) == "<|1500s|>"
    assert era_token(1675) == "<|1670s|>"
    assert era_token(1859) == "<|1850s|>"
    assert era_token(1860) == UNKNOWN_ERA
    assert era_token(None) == UNKNOWN_ERA
    assert ERA_DECADES[0] == 1500 and ERA_DECADES[-1] == 1850 and len(ERA_DECADES) == 36
    with pytest.raises(TypeError, match="year"):
        era_token("1650")


def test_control_tokens_are_single_stable_distinct_ids(tok, tmp_path):
    ids = [tok.encode(t, add_special_tokens=False) for t in SPECIAL_TOKENS]
    assert ids == [[i] for i in range(len(SPECIAL_TOKENS))]  # EOT = 0, <|1500s|> = 1 ... <|unknown-era|> = 37
    assert tok.convert_tokens_to_ids(UNKNOWN_ERA) == 37
    other = train_tokenizer(["a completely different text, much shorter."] * 3, TokenizerConfig(400), tmp_path / "o")
    assert [other.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    # never split inside text, and a partial control token is ordinary text
    assert 11 in tok.encode("before<|1600s|>after") and 0 not in tok.encode("<|endoftext")
    assert tok.bos_token == tok.eos_token == tok.pad_token == EOT


def test_encode_document_layout(tok):
    body = tok.encode("Thou art in Cheapside.\n", add_special_tokens=False)
    assert encode_document(tok, "Thou art in Cheapside.\n", 1650) == [16] + body + [0]
    assert encode_document(tok, "Thou art in Cheapside.\n", None) == [37] + body + [0]
    assert encode_document(tok, "", 1500) == [1, 0]


def test_encode_prompt_never_ends_with_eot(tok):
    for text in ("Thou art", "The end.", " ", "ſ\n"):
        for year in (None, 1400, 1500, 1849):
            ids = encode_prompt(tok, text, year)
            assert ids[-1] != 0 and 0 not in ids
    assert encode_prompt(tok, "Thou art") == tok.encode("Thou art")
    assert encode_prompt(tok, "Thou art", 1849)[0] == tok.convert_tokens_to_ids("<|1840s|>")
    assert encode_prompt(tok, "Thou art", 1400)[0] == 37


# ------------------------------------------------------------------------------------------ folder format


def test_folder_round_trip(folder, tok, train_texts):
    assert {p.name for p in folder.iterdir()} == {"tokenizer.json", "tokenizer_config.json", "anno_tokenizer.json"}
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert json.loads((folder / "tokenizer_config.json").read_text())["clean_up_tokenization_spaces"] is False
    meta = json.loads((folder / "anno_tokenizer.json").read_text())
    assert meta["config"] == {"vocab_size": 2000, "min_frequency": 2, "normalize": {"keep_long_s": False}}
    # 1.6 MB of mirror text fills the 2000 slots; the small generated fallback runs out of pairs before that
    assert len(tok) == meta["vocab_size"] == (2000 if train_texts is not GENERATED else len(tok)) <= 2000
    assert meta["tokenizer_sha256"] == tokenizer_hash(folder) == tokenizer_hash(folder / "tokenizer.json")
    assert meta["trained_on"] == {"documents": len(train_texts), "chars": sum(map(len, train_texts))}
    ours = load_tokenizer(folder)
    assert ours.get_vocab() == tok.get_vocab() and ours.encode("Thou art ſo") == tok.encode("Thou art ſo")


def test_atomic_overwrite_and_hash(tmp_path):
    out, cfg = tmp_path / "tok", TokenizerConfig(vocab_size=400)
    train_tokenizer(GENERATED, cfg, out)
    first = tokenizer_hash(out)
    train_tokenizer(GENERATED, cfg, out)
    assert tokenizer_hash(out) == first  # training is deterministic: same data, same hash
    train_tokenizer(["quite other words entirely"] * 5, cfg, out)
    assert tokenizer_hash(out) != first
    assert [p.name for p in tmp_path.iterdir()] == ["tok"]  # no temp or old folders left behind
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_vocab_too_small_and_bad_config():
    assert MIN_VOCAB_SIZE == 294  # 38 control tokens + 256 bytes
    with pytest.raises(ValueError, match=r"vocab_size.*294"):
        TokenizerConfig(vocab_size=293)
    with pytest.raises(ValueError, match="min_frequency"):
        TokenizerConfig(min_frequency=0)
    with pytest.raises(ValueError, match="vocab_size"):
        seed_recipe_tokenizer(GENERATED, 10)
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer([], TokenizerConfig(vocab_size=400), "/nonexistent/never-written")


# ------------------------------------------------------------------------------------------ reports


def test_report_on_byte_only_tokenizer(tmp_path):
    # vocab = 294 leaves no room for merges: every UTF-8 byte is one token, countable by hand.
    bytes_tok = train_tokenizer(GENERATED, TokenizerConfig(vocab_size=MIN_VOCAB_SIZE), tmp_path / "b")
    assert len(bytes_tok) == 294
    r = tokenizer_report(bytes_tok, ["héllo wörld", "ſ 1"], words=["thou"])
    # "héllo wörld" = 13 bytes (é, ö are 2 each), "ſ 1" = 4 bytes (ſ is 2); words: héllo, wörld, ſ. The
    # tokenizer's normalizer maps ſ to s (1 byte) before tokenizing: 13 + 3 tokens for 17 bytes of raw text.
    assert (r["tokens"], r["bytes"], r["words"]) == (16, 17, 3)
    assert r["fertility"] == pytest.approx(16 / 3) and r["bytes_per_token"] == pytest.approx(17 / 16)
    assert r["round_trip_failures"] == 0
    assert r["normalizer"]["counts"]["rules"]["long_s"] == 1 and r["normalizer"]["counts"]["changed"] == 1
    assert r["archaic"]["single_token"] == [] and r["archaic"]["tokens_per_word"] == {"thou": 5}


def test_report_on_merged_words(tmp_path):
    merged = train_tokenizer(["thou art here " * 200], TokenizerConfig(vocab_size=400), tmp_path / "m")
    r = tokenizer_report(merged, [" thou art here"], words=["thou", "art", "here", "forsooth"])
    assert (r["tokens"], r["words"], r["bytes"]) == (3, 3, 14)  # " thou", " art", " here"
    assert r["fertility"] == 1.0 and r["bytes_per_token"] == pytest.approx(14 / 3)
    assert r["archaic"]["single_token"] == ["thou", "art", "here"]
    assert r["archaic"]["single_token_fraction"] == 0.75


def test_archaic_word_list():
    words = archaic_words()
    assert len(words) >= 100 and len(set(words)) == len(words)
    assert {"thou", "'tis", "Cheapside", "Newgate", "Southwark"} <= set(words)
    assert not any(w.startswith("#") for w in words)


def test_report_on_real_text(tok, train_texts):
    r = tokenizer_report(tok, train_texts)
    assert r["round_trip_failures"] == 0 and r["texts"] == len(train_texts)
    assert 2.0 < r["bytes_per_token"] < 6.0  # 2.8 measured at vocab 1000 on 250 kB of TCP + ELTeC


# ------------------------------------------------------------------------------------------ seed recipe


def test_seed_recipe_loses_information():
    seed = seed_recipe_tokenizer(GENERATED, 400)

    def round_trip(s):
        return seed.decode(seed.encode(s).ids)

    assert round_trip("café") == "cafe"  # StripAccents
    assert round_trip("Thou\nart") == "Thou art"  # newline gone, words rejoined with a space
    assert round_trip("hence —") == "hence —" and round_trip("hence—") == "hence —"  # spacing invented
    assert round_trip("plain") == "p l a in"  # pieces of an unseen word rejoined with spaces
    assert round_trip("ſ") == "ſ"  # seen in training: kept
    assert seed.encode("😀").tokens == ["[UNK]"] and round_trip("😀") == ""  # unseen: [UNK], dropped by decode
    modern = seed_recipe_tokenizer(["so she said, so he said"] * 20, 400)
    assert modern.decode(modern.encode("ſo").ids) == "o"  # long s unseen in modern-spelling training text


def test_compare_with_seed_counts_seed_failures():
    val = ["Thou art in Cheapside, ſir.\n", "café", "he went to Newgate"]
    c = compare_with_seed(_wrap(_train_bpe(GENERATED, TokenizerConfig(vocab_size=400))), GENERATED, val)
    assert c["ours"]["round_trip_failures"] == 0
    assert c["seed_round_trip_failures"] == c["seed"]["round_trip_failures"] == 2  # only the last survives
    assert c["ours"]["words"] == c["seed"]["words"] == 10


def test_elisions_are_one_pretoken_but_quotes_stand_alone():
    from engine.tokenizer import _byte_level_bpe

    pieces = [p for p, _ in _byte_level_bpe().pre_tokenizer.pre_tokenize_str("he said 'tis o'er; 'Good,' quoth he")]
    assert "\u0120'tis" in pieces and "\u0120o'er" in pieces  # \u0120 is ByteLevel's space
    assert "\u0120'" in pieces and "Good" in pieces  # a quote before a capital is not glued to the word
    tok = _wrap(_train_bpe(["'tis so, 'tis true, and 'tis day"] * 50, TokenizerConfig(vocab_size=400)))
    assert len(tok.backend_tokenizer.encode(" 'tis", add_special_tokens=False).ids) == 1
