"""Sense cues of the anachronism detector: whether a cued lexicon entry ("engine" whose later sense is
selected by "locomotive", "train" by "railway") has one of its cue words near the matched form. Owns the
window and the cue matching; which entries carry cues is data (engine/lexicon.tsv, column "cues").

Why a window of words on both sides: the sense of "train" in "the train left the railway station" is set by
a word after it as often as before, and by the same sentence. Early-modern sentences are long (EEBO-TCP
sentences in the corpus average ~40 words), so the window is counted in words, not bounded by punctuation.
CUE_WINDOW was chosen on the development split (evals/challenge/tune.py, tune.jsonl + validation text): 6,
12 and 20 words found the same planted cued terms (they sit next to their cue there), and 12 or 20 added a
false finding (tune precision 0.991 vs 0.994 at 6): a wider window only adds chances for an old-sense use to
sit near an unrelated cue word. Real prose can put the cue further away, so recall on it may be lower.

The time lock cannot see the words a model has not yet written, so it bans nothing for cued entries
(engine/timelock.py); the detector, in turn, reports a cued entry only when a cue is present, so text
written under the lock never gets a finding the lock could have prevented without its context.
"""
from __future__ import annotations

import re

CUE_WINDOW = 6  # words on each side of the match
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_ENDINGS = ("'s", "s", "es", "ed", "d", "ing")  # a cue may be inflected: "railways", "steamed", "driving"


def _stems(word: str) -> list[str]:
    out = [word]
    for end in _ENDINGS:
        if word.endswith(end) and len(word) - len(end) >= 3:
            out.append(word[: -len(end)])
            if end == "ing":
                out.append(word[:-3] + "e")  # "driving" -> "drive"
    return out


def cue_near(low: str, start: int, end: int, cues: tuple[str, ...], window: int = CUE_WINDOW) -> str | None:
    """The first cue (normalised, single words or phrases) found among the `window` words before `start`
    and after `end` in `low`, a lowercased text; None when none is there. The matched form itself is not
    context."""
    span = 16 * window  # characters: words in the corpus average under 6 letters with their space
    before = _WORD.findall(low[max(0, start - span):start])[-window:]
    after = _WORD.findall(low[end:end + span])[:window]
    words = before + after
    single = {c for c in cues if " " not in c}
    for w in words:
        for s in _stems(w):
            if s in single:
                return s
    multi = [c for c in cues if " " in c]
    if multi:
        joined = " " + " ".join(before) + " | " + " ".join(after) + " "
        for c in multi:
            if f" {c} " in joined:
                return c
    return None
