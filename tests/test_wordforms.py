"""engine/wordforms.py on known answers, and the lock/detector consistency it exists for: every form the detector
can flag for a lexicon entry is banned by the time lock, and text generated under the lock (tiny model, pushed
hard towards banned words) gets no lexicon finding from the detector at the lock year."""
from __future__ import annotations

import random
import re

import pytest
import torch

from engine.lexicon import load_lexicon
from engine.timelock import TimeLock, banned_forms
from engine.wordforms import (base_forms, inflections, plural, solid, spelling_variants, surfaces, verb_forms,
                              words)
from evals.anachronism import CheckConfig, _resources, check
from evals.anachronism_forms import SEP_RE, fold

YEARS = (1500, 1600, 1650, 1700, 1750, 1800, 1850)
LEXICON_ONLY = CheckConfig(corpus_dir=None)  # no corpus: lexicon evidence, every derived form kept


def test_known_forms():
    assert base_forms("steam engines")[:2] == ["steam engines", "steam engine"]
    assert plural("lorry") == "lorries" and plural("potato") == "potatoes" and plural("guineas") is None
    assert plural("steam engine") == "steam engines" and plural("o.k.") is None
    assert inflections("telegraph", verbs=False) == ["telegraphs", "telegraph's", "telegraphs'"]
    assert verb_forms("vaccinate") == ["vaccinated", "vaccinating", "vaccinateth", "vaccinat'd"]
    assert verb_forms("carry") == ["carried", "carrying", "carrieth", "carri'd"]
    assert verb_forms("gas") == [] and solid("lightning rod") == "lightningrod" and solid("o k") == "ok"
    assert set(spelling_variants("umbrella")) == {"vmbrella"}  # ends in a vowel: no final e
    assert set(spelling_variants("revolver")) == {"reuoluer", "revolvere"}
    assert set(spelling_variants("journal")) == {"iournal", "journale"}
    assert set(spelling_variants("galvanic")) == {"galuanic", "galvanick"}
    assert set(spelling_variants("lorry")) == {"lorrie"}
    assert spelling_variants("sham") == [] and spelling_variants("dvds") == []  # < 5 letters: shame, duds
    assert words("st. paul's school") == ("st", "paul", "s", "school") and words("ww2") == ("ww",)


def test_surfaces_by_kind():
    s = surfaces("telegraph")
    assert {"telegraphs", "telegraphed", "telegraph'd", "telegrapheth", "telegraphe", "telegraphes"} <= set(s)
    assert "telegraph" not in s and len(s) == len(set(s))
    assert surfaces("great fire", polysemous=True) == ["great fires", "great fire's", "great fires'"]
    cued = surfaces("train", cued=True)
    assert "trained" not in cued and "traine" not in cued and "trains" in cued
    assert "steamengine" in surfaces("steam engine") and "vmbrellas" in surfaces("umbrella")


def _lock_bans(surface: str, singles, multi) -> bool:
    """Would the lock forbid finishing `surface` (as its words, read the way the lock reads text)?"""
    ws = words(surface)
    for i, w in enumerate(ws):
        if w in singles or any(w in multi.get(tuple(ws[i - k:i]), ()) for k in range(1, min(i, 7) + 1)):
            return True
    return False


@pytest.fixture(scope="module")
def matcher():
    return _resources(LEXICON_ONLY)[0]


@pytest.mark.parametrize("year", YEARS)
def test_every_form_the_detector_flags_is_banned_by_the_lock(matcher, year):
    """Entry by entry: each surface the detector flags at `year` (lexicon evidence, not a cued sense) is banned
    by the lock at `year`. Before engine/wordforms.py, 321 of 5,062 such surfaces at 1600 were not (solid
    compounds such as "leydenjar", "o.k.", verb forms of -y nouns)."""
    singles, multi = banned_forms(year)
    flagged = [s for s, (threshold, kind, entry, _) in matcher.surfaces.items()
               if kind == "lexicon" and year < threshold and not entry.cues]
    assert flagged, year
    assert [s for s in flagged if not _lock_bans(s, singles, multi)] == []
    assert max(len(words(s)) for s in flagged) <= 8  # the lock looks back 7 words before the last one


class Tempt:
    """Adds a large bias to the next token of a cycle of target strings (banned surfaces), one after another."""

    def __init__(self, tok, targets: list[str], bias: float = 12.0):
        enc = tok.backend_tokenizer.encode
        self.seq = [t for s in targets for t in enc(" " + s + ".", add_special_tokens=False).ids]
        self.bias, self.start = bias, None

    def __call__(self, input_ids, scores):
        self.start = self.start if self.start is not None else input_ids.shape[1]
        k = (input_ids.shape[1] - self.start) % len(self.seq)
        out = scores.clone()
        out[:, self.seq[k]] += self.bias
        return out


@pytest.mark.parametrize("year", YEARS[::2])
def test_text_generated_under_the_lock_has_no_lexicon_finding(tiny_tokenizer, matcher, year):
    from engine.generate import GenerationConfig, stream
    from engine.model import build_model, model_config
    from engine.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer)
    rng = random.Random(year)
    flagged = sorted(s for s, (threshold, kind, entry, _) in matcher.surfaces.items()
                     if kind == "lexicon" and year < threshold and not entry.cues and re.fullmatch(r"[a-z' ]+", s))
    targets = rng.sample(flagged, 12) + [s for s in ("telegraph", "steamengine", "vmbrella") if s in flagged]
    torch.manual_seed(year)
    model = build_model(model_config("tiny", len(tok), n_layer=1, n_ctx=256), 0, 0, 0).eval()
    cfg = GenerationConfig(max_new_tokens=120, temperature=0, top_k=0, top_p=1.0, lock_year=year)
    unlocked = GenerationConfig(max_new_tokens=120, temperature=0, top_k=0, top_p=1.0)
    free = [e for e in stream(model, tok, "It was", unlocked, processors=[Tempt(tok, targets)])][-1].text
    assert any(f.basis != "corpus" for f in check(free, year, LEXICON_ONLY)), free  # the push works unlocked
    locked = [e for e in stream(model, tok, "It was", cfg, processors=[Tempt(tok, targets)])][-1].text
    found = [f for f in check(locked, year, LEXICON_ONLY) if f.basis != "corpus" and not _cued(matcher, f.word)]
    assert found == [], (locked, found)


def _cued(matcher, written: str) -> bool:
    """A finding of a cued entry ("train" with "stations" nearby): an old word whose later sense only the
    context selects. The lock cannot see the words that follow, so it bans none of them (engine/timelock.py)."""
    low = fold(written)
    hit = matcher.surfaces.get(low) or matcher.surfaces.get(SEP_RE.sub(" ", low))
    return hit is not None and bool(hit[2].cues)
