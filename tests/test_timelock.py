"""Time-locked decoding: no token may finish a word dated after the lock year; everything else stays allowed."""
import re
from dataclasses import replace

import pytest
import torch

from engine.lexicon import load_lexicon, normalize
from engine.timelock import TimeLock, banned_forms
from engine.tokenizer import load_tokenizer

WORD = re.compile(r"[^\W\d_]+")  # letters only: an apostrophe ends a word, as for the detector


@pytest.fixture(scope="module")
def tok(tiny_tokenizer):
    return load_tokenizer(tiny_tokenizer)


def completed_words(text: str) -> list[str]:
    """Words followed by a non-letter (finished), normalised; the last one counts only if text ends after it."""
    return [normalize(m.group(0)) for m in WORD.finditer(text) if m.end() < len(text)]


def finishes_banned(text: str, singles, multi) -> bool:
    words = completed_words(text)
    for i, w in enumerate(words):
        if w in singles:
            return True
        for k in range(1, 8):
            if i >= k and w in multi.get(tuple(words[i - k:i]), ()):
                return True
    return False


def test_banned_forms():
    singles, multi = banned_forms(1700)
    assert {"telegraph", "telegraphs", "telegraphed", "steamboats"} <= singles
    assert "s" in multi[("telegraph",)]  # telegraph's: the apostrophe splits it like a two-word term
    assert "telescope" not in singles  # 1619
    assert not {"year", "heart", "there", "married", "canon", "ye", "art"} & singles
    assert "engine" in multi[("steam",)] and "engine" not in singles
    lex = load_lexicon()
    polysemous = {f for f, e in lex.forms().items() if e.category == "polysemous"}
    assert not polysemous & singles
    with pytest.raises(ValueError, match="lock_year=3000 must be an integer in 1000..2100"):
        banned_forms(3000)


@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("prefix", ["He sent a telegraph", "He sent a tele", "the steam", "the steam-engine",
                                    "By steamboat", "It is the year", "", "Thou art"])
def test_no_allowed_token_finishes_a_banned_word(tok, prefix, last):
    """Every token the lock allows leaves no banned word finished; at the last step (last=True) the text
    ends after the token, so a word still in progress counts as finished too."""
    lock = TimeLock(tok, 1700)
    singles, multi = banned_forms(1700)
    ids = tok.backend_tokenizer.encode(prefix, add_special_tokens=False).ids
    mask = lock.row_mask(ids, last=last)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    for t in range(len(tok)):
        text = tok.decode(ids + [t], skip_special_tokens=False) + (" " if t == eot or last else "")
        text = text.replace("<|endoftext|>", " ")
        if finishes_banned(text, singles, multi) and not finishes_banned(tok.decode(ids), singles, multi):
            assert mask[t], (prefix, tok.decode([t]))
    if prefix in ("He sent a telegraph", "the steam-engine", "By steamboat"):
        assert mask[eot] and mask.sum() > 0  # the banned word may not end here
    if prefix in ("It is the year", "Thou art", ""):
        assert not mask[eot]
    if prefix == "He sent a telegraph":
        assert mask[tok.convert_tokens_to_ids("'")] if "'" in tok.get_vocab() else True  # "telegraph'x" ends it


def test_lock_year_after_every_entry_bans_nothing(tok):
    lock = TimeLock(tok, 2100)
    ids = tok.backend_tokenizer.encode("He sent a telegraph", add_special_tokens=False).ids
    assert not lock.row_mask(ids).any()


def test_generation_is_steered_off_a_banned_word(tok):
    """A model pushed hard towards writing 'telegraph.' writes something else under a 1700 lock."""
    from engine.generate import GenerationConfig, stream
    from engine.model import build_model, model_config
    from transformers import LogitsProcessor

    target = tok.backend_tokenizer.encode(" telegraph. telegraph.", add_special_tokens=False).ids

    class Force(LogitsProcessor):
        def __init__(self):
            self.start = None

        def __call__(self, input_ids, scores):
            self.start = self.start if self.start is not None else input_ids.shape[1]
            k = (input_ids.shape[1] - self.start) % len(target)
            bias = torch.zeros_like(scores)
            bias[:, target[k]] = 100.0
            return scores + bias

    torch.manual_seed(0)
    model = build_model(model_config("tiny", len(tok), n_layer=1, n_ctx=64), 0, 0, 0).eval()
    cfg = GenerationConfig(max_new_tokens=24, temperature=0, top_k=0, top_p=1.0)
    free = [e for e in stream(model, tok, "He sent a", cfg, processors=[Force()])][-1].text
    assert "telegraph." in free
    locked = [e for e in stream(model, tok, "He sent a", cfg, processors=[Force(), TimeLock(tok, 1700)])][-1].text
    assert "telegraph" not in [normalize(w) for w in completed_words(locked + " ")]
    via_cfg = [e for e in stream(model, tok, "He sent a", replace(cfg, lock_year=1700), processors=[Force()])][-1]
    assert via_cfg.text == locked
    with pytest.raises(ValueError, match="lock_year=1400.5"):
        GenerationConfig(lock_year=1400.5)
