"""Tests for evals/profile.py: hand-computed metric values on hand-made texts, archaic-form word boundaries, bad
input (empty, 10 MB), and the period reference built from the tiny corpus (percentiles in 0..100, monotonic in
the metric, sparse half-centuries pooled into centuries, the cache file reused and rebuilt when stale)."""
from __future__ import annotations

import itertools
import json
import statistics

import pytest

from evals import profile as P

CFG = P.ProfileConfig(min_passages=20)  # tiny corpus: 30 passages in 1550-99 and 1600-49, 12 in 1650-99


def distinct_words(n: int) -> list[str]:
    return ["".join(t) for t in itertools.islice(itertools.product("bcdfghjklm", repeat=3), n)]


def prof(text: str, year=None) -> dict:
    return P.profile(text, year, corpus_dir=None)


def test_mattr_known_answers():
    assert P.mattr(distinct_words(250), 100) == 1.0            # all distinct, longer than a window
    assert prof(" ".join(distinct_words(250)) + ".")["metrics"]["mattr"] == 1.0
    assert P.mattr(["a", "b"] * 100, 100) == pytest.approx(0.02)  # every window: 2 types / 100
    assert P.mattr(list("aabc"), 2) == pytest.approx((1 + 2 + 2) / 6)  # windows aa, ab, bc
    assert P.mattr(list("abca"), 3) == 1.0
    assert P.mattr(list("aab"), 100) == pytest.approx(2 / 3)     # shorter than the window: plain TTR
    assert P.mattr([], 100) == 0.0


def test_distinct_n_and_repeated_4grams():
    words = "a b a b c".split()
    assert P.distinct_n(words, 1) == pytest.approx(3 / 5)
    assert P.distinct_n(words, 2) == pytest.approx(3 / 4)       # ab ba ab bc
    assert P.distinct_n(words, 3) == 1.0
    assert P.distinct_n(words[:2], 3) == 0.0
    assert P.repeated_share("a b c d a b c d".split()) == pytest.approx(2 / 5)
    assert P.repeated_share(distinct_words(50)) == 0.0
    m = prof("A b a b c.")["metrics"]
    assert (m["distinct_1"], m["distinct_2"], m["distinct_3"]) == (0.6, 0.75, 1.0)


def test_flesch_on_standard_examples():
    assert [P.syllables(w) for w in "the quick brown fox jumps over lazy dog table make people".split()] == \
        [1, 1, 1, 1, 1, 2, 2, 1, 2, 1, 2]
    # 9 words, 11 syllables, 1 sentence: 206.835 - 1.015*9 - 84.6*11/9 = 94.3; 0.39*9 + 11.8*11/9 - 15.59
    m = prof("The quick brown fox jumps over the lazy dog.")["metrics"]
    assert m["flesch_reading_ease"] == pytest.approx(94.3, abs=1e-6)
    assert m["flesch_kincaid_grade"] == pytest.approx(0.39 * 9 + 11.8 * 11 / 9 - 15.59, abs=1e-6)
    m = prof("The cat sat on the mat.")["metrics"]  # 6 words, 6 syllables
    assert m["flesch_reading_ease"] == pytest.approx(206.835 - 1.015 * 6 - 84.6, abs=1e-6)


def test_sentence_statistics():
    long = " ".join(distinct_words(45))
    p = prof(f"Go home. Mr. Smith came here today! {long}? ")
    assert p["sentences"] == 3                                  # "Mr." does not end a sentence
    m = p["metrics"]
    assert m["words_per_sentence_mean"] == pytest.approx(52 / 3, abs=1e-6)  # 2, 5 and 45 words
    assert m["words_per_sentence_sd"] == pytest.approx(statistics.pstdev([2, 5, 45]), abs=1e-6)
    assert m["long_sentence_share"] == pytest.approx(1 / 3, abs=1e-6)
    assert prof("One\n\nTwo three")["sentences"] == 2           # a blank line ends a sentence


def test_archaic_forms_whole_words_only():
    p = prof("Thou hath")
    assert p["archaic_counts"] == {"thou": 1, "hath": 1}
    assert p["metrics"]["archaic_per_1000"] == 1000.0
    none = prof("This year the heart of there is thereby unthought; they hasten through the theatre of art.")
    assert none["archaic_counts"] == {} and none["metrics"]["archaic_per_1000"] == 0.0
    p = prof("'Tis said thou art wise; art thou? He cometh vnto Elizabeth with teeth, and Seth goeth. Yea, ye.")
    assert p["archaic_counts"] == {"'tis": 1, "thou": 2, "art": 2, "-eth": 2, "unto": 1, "ye": 1}
    assert P.archaic_counts(P.normalise("’twas ſhalt")) == {"'twas": 1, "shalt": 1}  # curly quote, long s


def test_empty_and_wordless_text_give_zeros_and_a_note():
    for text in ("", "   \n\n ", "... 1666 !!"):
        p = P.profile(text, 1600)  # no corpus, and none needed for a text without words
        assert p["words"] == 0 and p["percentiles"] == {}
        assert set(p["metrics"].values()) == {0.0}
        assert any("empty text" in n for n in p["notes"])
    with pytest.raises(TypeError, match="year must be an int"):
        prof("Thou art.", "1600")


def test_ten_megabyte_text_is_sampled():
    chunk = "Thou art a knave and a fool. The merchant went to the market and bought bread.\n\n"
    big = chunk * (10_000_000 // len(chunk))
    p = prof(big)
    assert p["sampled"] and "sampled 200,000 of" in p["notes"][0]
    assert 30_000 < p["words"] < 40_000                        # bounded work: ~35k words of 1.7M
    assert p["archaic_counts"]["thou"] == p["archaic_counts"]["art"]
    assert p["metrics"]["words_per_sentence_mean"] == pytest.approx(8.0, abs=0.01)  # sentences of 7 and 9


@pytest.fixture(scope="module")
def ref(tiny_corpus, tmp_path_factory):
    cache = tmp_path_factory.mktemp("profile_cache")
    return P.reference(tiny_corpus, cache_dir=cache, cfg=CFG), cache


def test_reference_groups_and_sparse_half_pooled(ref):
    data, _ = ref
    assert {k: v["passages"] for k, v in data["periods"].items()} == \
        {"1550-1599": 27, "1600-1649": 30, "1600-1699": 39}     # 1650-99 has 9 < 20: pooled with 1600-49
    assert data["all"]["passages"] == 66  # validation + train: the tiny corpus's 2 test sources are not read
    assert P.period_group(data, 1655)[0] == "1600-1699"
    assert P.period_group(data, 1610)[0] == "1600-1649"
    assert P.period_group(data, 1820)[0] == "all"
    assert P.period_group(data, None)[0] == "all"


def test_percentiles_bounded_and_monotonic(ref, tiny_corpus):
    data, _ = ref
    for group in list(data["periods"].values()) + [data["all"]]:
        for name in P.METRICS:
            vals = group["values"][name]
            assert vals == sorted(vals) and len(vals) == group["passages"]
            grid = [vals[0] - 1] + vals + [vals[-1] + 1]
            pcts = [P.percentile(v, vals) for v in grid]
            assert pcts[0] == 0.0 and pcts[-1] == 100.0
            assert all(0 <= a <= b <= 100 for a, b in zip(pcts, pcts[1:])), name
    assert P.percentile(2.0, [1.0, 2.0, 2.0, 3.0]) == 50.0      # mid-rank: 1 below + 2 ties / 2 of 4
    plain = "The merchant sold bread and wine in the market by the river. " * 30
    archaic = "Thou hath sold bread and wine; thou dost walk by the river and he cometh. " * 30
    lo, hi = (P.profile(t, 1610, reference_data=data) for t in (plain, archaic))
    assert lo["period"] == "1600-1649" and lo["reference_passages"] == 30
    assert set(lo["percentiles"]) == set(P.METRICS)
    assert all(0 <= v <= 100 for v in lo["percentiles"].values())
    assert lo["metrics"]["archaic_per_1000"] < hi["metrics"]["archaic_per_1000"]
    vals = data["periods"]["1600-1649"]["values"]["archaic_per_1000"]
    assert lo["percentiles"]["archaic_per_1000"] == P.percentile(0.0, vals) < 50  # a few tiny texts lack them
    assert hi["metrics"]["archaic_per_1000"] > vals[-1] and hi["percentiles"]["archaic_per_1000"] == 100.0
    note = P.profile(plain, 1820, reference_data=data)
    assert note["period"] == "all" and "reference period all" in note["notes"][0]


def test_reference_cache_reused_and_rebuilt_when_stale(ref, tiny_corpus, monkeypatch):
    data, cache = ref
    path = P.cache_path(tiny_corpus, cache)
    assert path.parent == cache / "profile" and path.name == f"{P._fingerprint(tiny_corpus)}.json"
    assert json.loads(path.read_text()) == data
    P._load.cache_clear()
    built = []
    monkeypatch.setattr(P, "build_reference", lambda c, cfg: built.append(cfg) or {"rebuilt": True})
    assert P.reference(tiny_corpus, cache_dir=cache, cfg=CFG) == data and built == []  # read from the file
    P._load.cache_clear()
    assert P.reference(tiny_corpus, cache_dir=cache, cfg=P.ProfileConfig(min_passages=5)) == {"rebuilt": True}
    stale = dict(data, version=P.VERSION - 1)
    path.write_text(json.dumps(stale))
    P._load.cache_clear()
    assert P.reference(tiny_corpus, cache_dir=cache, cfg=CFG) == {"rebuilt": True} and len(built) == 2
    P._load.cache_clear()


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match=r"ProfileConfig.mattr_window=0 must be >= 1"):
        P.ProfileConfig(mattr_window=0)
