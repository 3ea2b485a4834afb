"""Tests for engine/generate.py and engine/detok.py: GenerationConfig validation, generate_ids against
transformers' model.generate (greedy and seeded sampling), KV-cache use, cancellation, incremental
detokenization, stop strings, prompt truncation and the empty prompt. A tiny random-init GPT-2 and a
byte-level BPE trained here on ~23 kB of generated text (600 asked, 528 reached) keep it to seconds on CPU."""
from __future__ import annotations

import random
import threading
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessor

from engine.detok import decode, detokenize, scan_stops
from engine.generate import (
    Finished, GenerationConfig, TextDelta, generate_ids, prompt_ids, stream,
)
from engine.model import build_model, model_config
from engine.normalize import apply_rules
from engine.tokenizer import TokenizerConfig, encode_prompt, train_tokenizer

CTX = 128
EOT_ID = 0
WORDS = (
    "the of and to in that is was he for it with as his on be at by this had not are but from or have they "
    "which one you were her all she there would their we him been has when who will more no if out so said "
    "what up its into than them can only other new some could time these two may then do first any my now "
    "such like our over man me even most made after also did many before must through back years where much"
).split() + ["été", "ſhall", "naïve", "Œuvre", "—", "“quoted”", "London", "Thames"]
# Characters the tokenizer never sees in training: they can only be spelled as several byte tokens.
UNSEEN = "𝔄 😀 🙂 倫敦 東京"
PROMPTS = ("The old man", "ſhall été", "of the", "倫敦 🙂 𝔄")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(60)) + "\n" for _ in range(80)]  # ~23 kB
    return train_tokenizer(texts, TokenizerConfig(vocab_size=600), tmp_path_factory.mktemp("tok") / "tok")


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return build_model(model_config("tiny", len(tok), n_ctx=CTX), EOT_ID, EOT_ID, EOT_ID).eval()


def _hf(model, ids, **kw):
    """model.generate's new ids, cut before the first eos (ours never yields it)."""
    x = torch.tensor([ids])
    out = model.generate(x, attention_mask=torch.ones_like(x), **kw)[0, len(ids):].tolist()
    eos = kw.get("eos_token_id", EOT_ID)
    return out[:out.index(eos)] if eos in out else out


class Script(LogitsProcessor):
    """Forces the given ids, then EOT: makes the random model write a known text."""

    def __init__(self, ids, prompt_len):
        self.ids, self.prompt_len = list(ids), prompt_len

    def __call__(self, input_ids, scores):
        n = input_ids.shape[1] - self.prompt_len
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.ids[n] if n < len(self.ids) else EOT_ID] = 0.0
        return forced


class SetAfter(LogitsProcessor):
    """Sets an event while the k-th token is being chosen (a cancel arriving mid-token)."""

    def __init__(self, event, k):
        self.event, self.k, self.calls = event, k, 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls == self.k:
            self.event.set()
        return scores


def _events(model, tok, prompt, cfg, **kw):
    events = list(stream(model, tok, prompt, cfg, **kw))
    assert all(isinstance(e, TextDelta) and e.text for e in events[:-1])
    final = events[-1]
    assert isinstance(final, Finished)
    assert "".join(e.text for e in events[:-1]) == final.text
    return events, final


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("field, value, message", [
    ("max_new_tokens", 0, r"max_new_tokens=0: must be an integer in \[1, the model context\]"),
    ("max_new_tokens", 129, r"max_new_tokens=129: must be an integer in \[1, 128\]"),
    ("max_new_tokens", 5.0, r"max_new_tokens=5.0: must be an integer in \[1, the model context\]"),
    ("temperature", -0.1, r"temperature=-0.1: must be 0 \(greedy\) or a number >= 0.001"),
    ("temperature", float("nan"), r"temperature=nan: must be 0 \(greedy\) or a number >= 0.001"),
    ("temperature", 1e-50, r"temperature=1e-50: must be 0 \(greedy\) or a number >= 0.001"),
    ("top_k", -1, r"top_k=-1: must be an integer >= 0"),
    ("top_k", True, r"top_k=True: must be an integer >= 0"),
    ("top_p", 0, r"top_p=0: must be a number in \(0, 1\]"),
    ("top_p", 1.5, r"top_p=1.5: must be a number in \(0, 1\]"),
    ("repetition_penalty", 0, r"repetition_penalty=0: must be a number > 0"),
    ("no_repeat_ngram_size", -1, r"no_repeat_ngram_size=-1: must be an integer >= 0"),
    ("seed", -1, r"seed=-1: must be None or an integer in \[0, 2\*\*64 - 1\]"),
    ("seed", 2**64, r"seed=18446744073709551616: must be None or an integer in \[0, 2\*\*64 - 1\]"),
    ("stop", ("",), r"stop=\(''\,\): must be a tuple of non-empty strings"),
    ("stop", ["x"], r"stop=\['x'\]: must be a tuple of non-empty strings"),
    ("year", "1650", r"year='1650': must be None or an integer year"),
    ("min_new_tokens", -1, r"min_new_tokens=-1: must be an integer in \[0, max_new_tokens=200\]"),
    ("min_new_tokens", 201, r"min_new_tokens=201: must be an integer in \[0, max_new_tokens=200\]"),
])
def test_bad_parameter_names_field_and_range(field, value, message):
    with pytest.raises(ValueError, match=rf"GenerationConfig\.{message}"):
        GenerationConfig(**{field: value}).validate(CTX)


def test_context_bound_checked_by_generate_and_stream(model, tok):
    cfg = GenerationConfig(max_new_tokens=CTX + 1)  # fine without a context, too long for this model
    with pytest.raises(ValueError, match=r"max_new_tokens=129: must be an integer in \[1, 128\]"):
        generate_ids(model, [1], cfg)  # at the call, before any iteration
    with pytest.raises(ValueError, match=r"max_new_tokens=129"):
        stream(model, tok, "x", cfg)


def test_generate_ids_refuses_what_does_not_fit(model, tok):
    with pytest.raises(ValueError, match=r"prompt_ids has 100 tokens: with max_new_tokens=30 at most 99 fit"):
        list(generate_ids(model, [5] * 100, GenerationConfig(max_new_tokens=30)))
    cfg = GenerationConfig(max_new_tokens=8)
    with pytest.raises(ValueError, match=rf"prompt_ids must be token ids in \[0, {len(tok) - 1}\]"):
        list(generate_ids(model, [len(tok)], cfg))
    with pytest.raises(ValueError, match="prompt_ids is empty"):
        list(generate_ids(model, [], cfg))
    model.train()
    try:
        with pytest.raises(ValueError, match=r"training mode.*model.eval\(\)"):
            list(generate_ids(model, [5], cfg))
    finally:
        model.eval()


# ---------------------------------------------------------------------------------------------- ids


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_matches_model_generate(model, tok, prompt):
    ids = encode_prompt(tok, prompt, 1650)
    plain = GenerationConfig(max_new_tokens=40, temperature=0)
    ours = list(generate_ids(model, ids, plain))
    assert ours == _hf(model, ids, do_sample=False, max_new_tokens=40) and len(ours) == 40
    # stop at a token greedy decoding reaches (the random model never picks EOT): both end just before it
    eos = ours[len(ours) // 2]
    ours_eos = list(generate_ids(model, ids, plain, eos_id=eos))
    assert ours_eos == _hf(model, ids, do_sample=False, max_new_tokens=40, eos_token_id=eos)
    assert ours_eos == ours[:ours.index(eos)]
    penal = GenerationConfig(max_new_tokens=40, temperature=0, repetition_penalty=1.3, no_repeat_ngram_size=2)
    ours_penal = list(generate_ids(model, ids, penal))
    assert ours_penal == _hf(model, ids, do_sample=False, max_new_tokens=40, repetition_penalty=1.3,
                             no_repeat_ngram_size=2)
    assert ours_penal != ours  # the processors did something


class Boost(LogitsProcessor):
    """Adds `by` to one id's score: with a large `by` that id wins every greedy step it is allowed to."""

    def __init__(self, token: int, by: float):
        self.token, self.by = token, by

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, self.token] += self.by
        return scores


@pytest.mark.parametrize("fast", [True, False])
def test_min_new_tokens_bans_the_end_until_reached_as_model_generate(model, tok, fast):
    ids = encode_prompt(tok, "The old man", 1650)
    boost = [Boost(EOT_ID, 1e4)]  # end of text is the greedy choice at every step
    cfg = GenerationConfig(max_new_tokens=20, temperature=0)
    assert list(generate_ids(model, ids, cfg, processors=boost, fast=fast)) == []
    for k in (1, 7, 20):
        ours = list(generate_ids(model, ids, replace(cfg, min_new_tokens=k), processors=boost, fast=fast))
        assert EOT_ID not in ours and len(ours) == k  # the end comes at the first step it may
        assert ours == _hf(model, ids, do_sample=False, max_new_tokens=20, min_new_tokens=k,
                           logits_processor=boost)
    # without a processor this random model never picks the end: the ban (a store in place) changes no id
    plain = list(generate_ids(model, ids, cfg, fast=fast))
    assert list(generate_ids(model, ids, replace(cfg, min_new_tokens=20), fast=fast)) == plain
    events = list(stream(model, tok, "The old man", replace(cfg, min_new_tokens=5, year=1650), processors=boost))
    assert events[-1].generated_tokens == 5 and events[-1].finish_reason == "eot"


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_sampling_matches_model_generate_with_same_seed(model, tok, prompt):
    # generate() draws from torch's global generator; ours from its own, seeded the same way: same draws
    ids = encode_prompt(tok, prompt, 1700)
    cfg = GenerationConfig(max_new_tokens=30, temperature=0.9, top_k=50, top_p=0.9, repetition_penalty=1.1, seed=7)
    ours = list(generate_ids(model, ids, cfg))
    torch.manual_seed(7)
    assert ours == _hf(model, ids, do_sample=True, max_new_tokens=30, temperature=0.9, top_k=50, top_p=0.9,
                       repetition_penalty=1.1)


def test_same_seed_same_ids_other_seed_differs(model, tok):
    ids = encode_prompt(tok, "The old man", 1650)
    cfg = GenerationConfig(max_new_tokens=30, temperature=1.0, top_k=0, top_p=1.0, seed=123)
    torch.manual_seed(0)
    a = list(generate_ids(model, ids, cfg))
    torch.manual_seed(1)  # the global generator plays no part
    assert list(generate_ids(model, ids, cfg)) == a
    assert list(generate_ids(model, ids, replace(cfg, seed=124))) != a
    _, fa = _events(model, tok, "The old man", cfg)
    _, fb = _events(model, tok, "The old man", cfg)
    assert fa.text == fb.text and fa.generated_ids == fb.generated_ids


@pytest.mark.parametrize("fast", [True, False])
def test_one_forward_per_new_token_with_cache(model, tok, fast):
    seen = []
    # the lean path never calls model.forward, but every path calls the first block's activation module
    # once per forward, on [batch, new positions, 4 * n_embd]
    hook = model.transformer.h[0].mlp.act.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    cfg = GenerationConfig(max_new_tokens=10, temperature=0)
    try:
        out = list(generate_ids(model, [3, 4, 5, 6, 7], cfg, fast=fast))
    finally:
        hook.remove()
    assert len(out) == 10
    assert seen == [5] + [1] * 9  # prompt once, then one new token per step; the 10th is never fed back


def test_cancel_from_consumer_after_k_tokens(model):
    event, got = threading.Event(), []
    for token in generate_ids(model, [3, 4], GenerationConfig(max_new_tokens=50, temperature=0), event):
        got.append(token)
        if len(got) == 4:
            event.set()
    assert len(got) == 4


def test_cancel_mid_token_keeps_partial_text(model, tok):
    event = threading.Event()
    cfg = GenerationConfig(max_new_tokens=60, temperature=0, year=1650)
    _, final = _events(model, tok, "The old man", cfg, stop_event=event, processors=[SetAfter(event, 6)])
    # the token being chosen when the event was set still arrives; the next check stops generation
    assert (final.finish_reason, final.generated_tokens) == ("cancelled", 6)
    greedy = list(generate_ids(model, encode_prompt(tok, "The old man", 1650), cfg))
    assert final.generated_ids == tuple(greedy[:6])
    assert final.text == tok.decode(greedy[:6])


# ---------------------------------------------------------------------------------------------- text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=40), st.booleans())
def test_detokenize_adds_up_to_full_decode(tok, ids, skip):
    ids = [i % len(tok) for i in ids]  # the trained vocabulary's size is only known here
    deltas = list(detokenize(tok, ids, skip_special_tokens=skip))
    assert all(deltas)
    assert "".join(deltas) == tok.decode(ids, skip_special_tokens=skip) == decode(tok, ids, skip)


@pytest.mark.parametrize("text", [
    "The 𝔄nno of ſhall été 😀🙂 — 倫敦 and 東京, naïve Œuvre.",
    "  two  spaces,\nnew line\n\n\ttab  ",
    UNSEEN,
])
def test_multibyte_text_streams_without_broken_characters(tok, text):
    ids = tok.encode(text, add_special_tokens=False)
    deltas = list(detokenize(tok, iter(ids)))  # one token at a time, as generation delivers them
    joined = "".join(deltas)
    assert joined == apply_rules(text)  # what the tokenizer's normalizer (engine/normalize.py) leaves: ſ -> s, spaces
    assert not any("\ufffd" in d for d in deltas)
    if any(ord(c) > 0xFFFF for c in text):
        assert len(deltas) < len(ids)  # 4-byte characters came as several tokens and were held back until whole


def test_cut_inside_a_character_is_flushed_like_decode(tok):
    ids = tok.encode("ab 𝔄", add_special_tokens=False)
    cut = ids[:-1]  # the last byte of 𝔄 never arrives (e.g. max_new_tokens ran out)
    assert "".join(detokenize(tok, cut)) == tok.decode(cut) == "ab \ufffd"


def test_scan_stops_known_answers():
    assert scan_stops("abc wo", ("world",)) == (None, 4)
    assert scan_stops("abc world x", ("world",)) == (4, 4)
    assert scan_stops("a\n\nb", ("\n\n", "b")) == (1, 1)
    assert scan_stops("abc", ()) == (None, 3)
    assert scan_stops("xx world", ("world",), start=5) == (None, 8)  # a stop before start is not looked at
    assert scan_stops("the w", ("wx", "he wy")) == (None, 1)  # longest possible start is held


@pytest.mark.parametrize("script, stops, text, reason", [
    ("Hello world. And then more", ("ld. An",), "Hello wor", "stop_string"),
    ("a world away", ("word",), "a world away", "eot"),  # "wor" held back, then released as no stop
    ("one été two", ("été",), "one ", "stop_string"),
    ("see 𝔄nno here", ("𝔄n", "zz"), "see ", "stop_string"),
    ("end with wo", ("world",), "end with wo", "eot"),  # held-back start released at the end
])
def test_stop_strings_cut_cleanly_across_tokens(model, tok, script, stops, text, reason):
    ids = tok.encode(script, add_special_tokens=False)
    cfg = GenerationConfig(max_new_tokens=60, temperature=0, stop=stops)
    prompt_len = len(prompt_ids(tok, "Once", cfg, CTX)[0])
    events, final = _events(model, tok, "Once", cfg, processors=[Script(ids, prompt_len)])
    assert (final.text, final.finish_reason) == (text, reason)
    assert not any(s in e.text for e in events[:-1] for s in stops)
    if reason == "stop_string":
        assert final.generated_tokens < len(ids)  # generation ended as soon as the stop string was complete
        assert script.startswith(tok.decode(list(final.generated_ids)))
    else:
        assert final.generated_ids == tuple(ids)


def test_stream_text_is_full_decode_of_generated_ids(model, tok):
    cfg = GenerationConfig(max_new_tokens=50, seed=3, year=1700)
    _, final = _events(model, tok, "The Thames", cfg)
    assert final.finish_reason == "length" and final.generated_tokens == 50
    assert final.text == tok.decode(list(final.generated_ids))
    assert (final.prompt_tokens, final.prompt_truncated, final.dropped_tokens) == \
        (len(encode_prompt(tok, "The Thames", 1700)), False, 0)


def test_long_prompt_cut_from_the_left_keeps_era_token(model, tok):
    rng = random.Random(1)
    text = " ".join(rng.choice(WORDS) for _ in range(20_000))[:100_000]
    full = encode_prompt(tok, text, 1650)
    cfg = GenerationConfig(max_new_tokens=8, temperature=0, year=1650)
    ids, dropped = prompt_ids(tok, text, cfg, CTX)
    assert len(ids) == CTX - 8 and dropped == len(full) - (CTX - 8)
    assert ids[0] == full[0] == tok.convert_tokens_to_ids("<|1650s|>") and ids[1:] == full[-(CTX - 9):]
    _, final = _events(model, tok, text, cfg)
    assert (final.prompt_truncated, final.dropped_tokens, final.prompt_tokens) == (True, dropped, CTX - 8)
    assert list(final.generated_ids) == list(generate_ids(model, ids, cfg))


def test_empty_prompt_starts_from_era_token_or_eot(model, tok):
    era = tok.convert_tokens_to_ids("<|1650s|>")
    assert prompt_ids(tok, "", GenerationConfig(max_new_tokens=8, year=1650), CTX) == ([era], 0)
    assert prompt_ids(tok, "", GenerationConfig(max_new_tokens=8), CTX) == ([EOT_ID], 0)
    cfg = GenerationConfig(max_new_tokens=12, temperature=0, year=1650)
    _, final = _events(model, tok, "", cfg)
    assert final.prompt_tokens == 1
    assert list(final.generated_ids) == list(generate_ids(model, [era], cfg))


def test_max_new_tokens_equal_to_context_keeps_one_prompt_token(model, tok):
    cfg = GenerationConfig(max_new_tokens=CTX, temperature=0, year=1650)
    full = encode_prompt(tok, "The old man", 1650)
    assert prompt_ids(tok, "The old man", cfg, CTX) == (full[:1], len(full) - 1)
    _, final = _events(model, tok, "The old man", cfg)  # 1 + 127 fed positions: exactly the context
    assert (final.finish_reason, final.generated_tokens, final.prompt_truncated) == ("length", CTX, True)
