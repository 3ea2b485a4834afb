"""Time-locked decoding: a logits processor that keeps a model from writing any word whose earliest evidence
(engine/lexicon.tsv) is after a chosen year.

Words, not tokens, are dated, and BPE writes a word in pieces (" tele" + "graph" + ","), so the processor
works on the word being written:
  * every token is classified once per (tokenizer, year): its leading letters (which extend the word in
    progress), whether it ends that word inside itself, and whether a complete word inside it is banned;
  * at each step the word in progress P (letters since the last boundary, from the decoded tail) and the
    words before it are read; the banned forms that start with P are found by bisection in a sorted list
    (the trie over forms), and any token that would *finish* one of them is forbidden: a token whose
    leading letters complete it and then end the word, or, when P already is a banned form, every token
    that ends a word there (space, punctuation, <|endoftext|>). Multiword terms ("steam engine") are
    forbidden at their last word when the words before match.
Banned forms: every listed form of an entry dated after the lock year with every written form the detector
matches for it (engine/wordforms.surfaces: endings, solid compounds, early-modern spellings), read as runs of
letters as the lock reads text ("o.k." is "o" then "k"), except category "polysemous" (old generic senses)
and cued entries (old words in another sense), and the words the detector dates on corpus evidence alone
(engine/firstseen.strong_words) for the same years. The lock uses no margin on lexicon dates: it is stricter
than the detector, which allows a few years of slack.
Cost per step: the part of the mask that depends on the word in progress alone is kept per prefix on the shared
table, the tail's words' normal forms are memoised, the mask is built with numpy stores, and the last step's
ban of every word a token opens is gathered once per table: the lock adds 0.19 ms a token to the demo model's
greedy decoding (0.375 -> 0.569 ms), against 0.41 (0.40 -> 0.81) before; the same masks on 69,972 prefixes of
lexicon-word texts at four years, last step included (/tmp/s13/tleq.py, 2026-12-01).
"""
from __future__ import annotations

import bisect
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from transformers import LogitsProcessor

from engine.firstseen import StrongRule, corpus_fingerprint, load_table, strong_words
from engine.lexicon import Lexicon, load_lexicon, normalize
from engine.wordforms import surfaces, words as form_words

# Words are runs of letters; an apostrophe separates them as it does for the detector (whose matches end at
# any non-word character), so "didn't" is the two-part term ("didn", "t") and "mamma'sams" ends "mamma".
_WORD = re.compile(r"[^\W\d_]+")
_LEAD = re.compile(r"^[^\W\d_]*")
TAIL_TOKENS = 24  # decoded tail per step: enough for the word in progress and a 7-word multiword prefix
_MEMO_MAX = 50_000  # entries of a table's per-prefix memo before it starts over
_word_norm = lru_cache(maxsize=1 << 16)(normalize)  # the decoded tail's words recur at every step


def _add(words: tuple[str, ...], singles: set, multi: dict) -> None:
    if len(words) == 1:
        singles.add(words[0])
    elif words:
        multi.setdefault(words[:-1], set()).add(words[-1])


def banned_forms(year: int, lexicon: Lexicon | None = None, corpus_dir: str | Path | None = None
                 ) -> tuple[frozenset[str], dict[tuple[str, ...], set[str]]]:
    """(single-word forms, {preceding words: last words}) of every non-polysemous lexicon entry dated after
    year, plus the corpus words the detector dates on corpus evidence alone (engine.firstseen.strong_words,
    e.g. "didn't", first in 1741) of corpus_dir's train split when a corpus is given (never a default folder;
    engine.corpus_io.CorpusError when corpus_dir is not a built corpus)."""
    if isinstance(year, bool) or not isinstance(year, int) or not 1000 <= year <= 2100:
        raise ValueError(f"lock_year={year!r} must be an integer in 1000..2100")
    lexicon = lexicon or load_lexicon()
    singles, multi = set(), {}
    if corpus_dir is not None:
        rule = StrongRule()
        for key, first, _, _, forms in strong_words(load_table(corpus_dir), rule):
            if year < first - rule.margin:
                for f in {key, *forms}:
                    _add(form_words(normalize(f)), singles, multi)
    for form, entry in lexicon.forms().items():
        # Cued entries ("train" near "railway") are old words in another sense; the lock cannot see the words
        # that will follow, so it bans nothing for them, and the detector flags them only with a cue present.
        if entry.year <= year or entry.category == "polysemous" or entry.cues:
            continue
        for f in (form, *surfaces(form)):  # the forms the detector matches (engine/wordforms.py)
            _add(form_words(f), singles, multi)
    return frozenset(singles), multi


class _TokenTable:
    """Per-(tokenizer, year) classification of the vocabulary."""

    def __init__(self, tok, singles: frozenset[str], multi: dict, vocab_size: int):
        self.vocab_size = vocab_size
        self.ends_word = torch.zeros(vocab_size, dtype=torch.bool)  # starts with a non-letter: ends the word in progress
        self.static = torch.zeros(vocab_size, dtype=torch.bool)  # holds a complete banned word of its own
        self.finishing: dict[str, list[int]] = {}  # leading letters -> tokens that end the word right after them
        self.starts_banned = torch.zeros(vocab_size, dtype=torch.bool)  # at a word boundary: writes a whole banned word
        self.continuing: dict[str, list[int]] = {}  # leading letters -> tokens that are all letters (word goes on)
        self.first_inner: dict[str, list[int]] = {}  # its first new word is finished inside the token
        self.opening: dict[str, list[int]] = {}
        self.ends_multi = torch.zeros(vocab_size, dtype=torch.bool)  # its last words are a whole multiword term  # tokens that end the word in progress and start another at their end
        # memos of TimeLock (filled as locks use this table, shared by every request for it)
        self.by_prefix: dict[tuple[str, bool], tuple[bool, np.ndarray]] = {}  # TimeLock._singles
        self.last_tokens: tuple[np.ndarray, np.ndarray] | None = None  # TimeLock._ending_tokens
        special = set(tok.all_special_ids)
        for tid in range(min(vocab_size, len(tok))):
            if tid in special:
                self.ends_word[tid] = True
                continue
            s = tok.decode([tid], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            lead = _LEAD.match(s).group(0)
            if not lead:
                self.ends_word[tid] = True
            elif len(lead) < len(s):
                self.finishing.setdefault(normalize(lead), []).append(tid)
                self.starts_banned[tid] = normalize(lead) in singles
            else:
                self.continuing.setdefault(normalize(lead), []).append(tid)
            rest = s[len(lead):]
            inner = list(_WORD.finditer(rest))
            if inner and inner[-1].end() == len(rest):
                self.opening.setdefault(normalize(inner[-1].group(0)), []).append(tid)
            if inner and inner[0].end() < len(rest):  # first new word, finished inside the token
                self.first_inner.setdefault(normalize(inner[0].group(0)), []).append(tid)
            # words wholly inside the token (followed by a non-letter in it) are known now, and so are
            # multiword terms ("ma'am" = ma + am) made of words inside it
            words = [normalize(m.group(0)) for m in inner]
            for j, m in enumerate(inner):
                finished = m.end() < len(rest)
                if finished and words[j] in singles:
                    self.static[tid] = True
                for i in range(max(0, j - 7), j):
                    if words[j] in multi.get(tuple(words[i:j]), ()):
                        if finished:
                            self.static[tid] = True
                        else:
                            self.ends_multi[tid] = True


@lru_cache(maxsize=16)
def _table(tok, year: int, corpus_dir: str | None = None, fingerprint: str | None = None
           ) -> tuple[_TokenTable, tuple[str, ...], dict]:
    """Cached per (tokenizer, year, corpus folder, corpus fingerprint): a rebuilt corpus is a new key."""
    singles, multi = banned_forms(year, corpus_dir=corpus_dir)
    vocab = len(tok)
    return _TokenTable(tok, singles, multi, vocab), tuple(sorted(singles)), multi


class TimeLock(LogitsProcessor):
    """Forbid tokens that would finish a word first attested after `year` (see the module docstring)."""

    def __init__(self, tok, year: int, final_length: int | None = None, corpus_dir: str | Path | None = None):
        """final_length: the sequence length after the last token generation may add (prompt + max new
        tokens). At that last step the text ends after the token, so a banned word may not be left there."""
        self.tok, self.year, self.final_length = tok, year, final_length
        # corpus_dir: whose train-split first-seen words are banned too (None: the dated lexicon alone)
        where = None if corpus_dir is None else str(Path(corpus_dir).resolve())
        self.table, self.sorted_singles, self.multi = _table(tok, year, where,
                                                             where and corpus_fingerprint(where))
        self._decode = getattr(tok, "backend_tokenizer", tok).decode
        t = self.table  # numpy views of its masks (shared memory): a step's mask is built with numpy stores
        self._static, self._starts, self._ends = t.static.numpy(), t.starts_banned.numpy(), t.ends_word.numpy()

    def _ending_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """(tokens that open a banned single word at their end, tokens that are a banned single word's letters
        and go on): what the last step bans whatever the text, gathered once per table."""
        t = self.table
        if t.last_tokens is None:
            opening = [tid for w in self.sorted_singles for tid in t.opening.get(w, ())]
            continuing = [tid for w in self.sorted_singles for tid in t.continuing.get(w, ())]
            t.last_tokens = (np.array(opening, dtype=np.int64), np.array(continuing, dtype=np.int64))
        return t.last_tokens

    def _singles(self, prefix: str, last: bool) -> tuple[bool, np.ndarray]:
        """(prefix is itself a banned single word, the tokens that would finish a banned single word starting
        with prefix -- and, when last, those that continue one), for a word in progress: the part of a step's
        mask that depends on the prefix alone, kept per prefix (a few hundred forms share a short one)."""
        key, memo = (prefix, last), self.table.by_prefix
        got = memo.get(key)
        if got is None:
            t, banned_itself, tids = self.table, False, []
            i = bisect.bisect_left(self.sorted_singles, prefix)
            while i < len(self.sorted_singles) and self.sorted_singles[i].startswith(prefix):
                rest = self.sorted_singles[i][len(prefix):]
                if not rest:
                    banned_itself = True
                else:
                    tids += t.finishing.get(rest, ())
                    tids += t.continuing.get(rest, ()) if last else ()
                i += 1
            if len(memo) > _MEMO_MAX:
                memo.clear()
            got = memo[key] = (banned_itself, np.array(tids, dtype=np.int64))
        return got

    def row_mask(self, ids: list[int], last: bool = False) -> torch.Tensor:
        t = self.table
        mask = self._static.copy()
        # the backend's own decode: what tok.decode (no space clean-up) returns, without its Python layers
        tail = self._decode(ids[-TAIL_TOKENS:], skip_special_tokens=True)
        words = [_word_norm(w) for w in _WORD.findall(tail)]
        in_word = bool(tail) and bool(_WORD.search(tail[-1:]) or tail[-1] in "'\u2019")
        prefix = words[-1] if (words and in_word) else ""
        history = tuple(words[:-1] if prefix else words)
        if not prefix:
            mask |= self._starts
        else:  # banned single words that start with the word in progress (at a boundary starts_banned has them)
            banned_itself, tids = self._singles(prefix, last)
            if banned_itself:  # the word in progress is itself banned: it may not end here
                mask |= self._ends
            mask[tids] = True
        for k in range(1, min(len(history), 7) + 1):  # last words of multiword terms whose first words match
            for form in self.multi.get(history[-k:], ()):
                if not form.startswith(prefix):
                    continue
                rest = form[len(prefix):]
                if not rest:
                    if prefix:
                        mask |= self._ends
                else:
                    mask[t.finishing.get(rest, [])] = True
                    if last:
                        mask[t.continuing.get(rest, [])] = True
        words_so_far = history + ((prefix,) if prefix else ())
        for k in range(1, min(len(words_so_far), 7) + 1):  # a multiword term finished inside one token
            for w in self.multi.get(words_so_far[-k:], ()):
                mask[t.first_inner.get(w, [])] = True
        if last:  # the text ends after this token: a word it opens at its end is finished there too
            opening, continuing = self._ending_tokens()
            mask |= t.ends_multi.numpy()  # (used at a request's last step only: no view kept)
            mask[opening] = True
            if not prefix:
                mask[continuing] = True
            for k in range(1, min(len(words_so_far), 7) + 1):
                for w in self.multi.get(words_so_far[-k:], ()):
                    mask[t.opening.get(w, [])] = True
        return torch.from_numpy(mask)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        last = self.final_length is not None and input_ids.shape[1] + 1 >= self.final_length
        masks = torch.stack([self.row_mask(row, last) for row in input_ids.tolist()])
        if masks.shape[1] < scores.shape[1]:  # model vocab padded beyond the tokenizer's
            masks = torch.nn.functional.pad(masks, (0, scores.shape[1] - masks.shape[1]))
        return scores.masked_fill(masks[:, : scores.shape[1]].to(scores.device), float("-inf"))
