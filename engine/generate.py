"""Streaming text generation: the `GenerationConfig`, token-id generation with a KV cache, and the text stream.

Owns two layers. `generate_ids` yields token ids only (one forward pass per new token after the prompt, on
CPU through engine/fastpath.py's lean GPT-2 step and preallocated KV cache -- the same ids as the model's
own forward with its KV cache, which other devices and models use --, transformers' logits processors so
it picks what `model.generate` picks, a seeded `torch.Generator` for sampling, cancellation through a
`threading.Event`). `stream` is the layer above: it
builds the prompt (era token, left truncation), turns ids into text deltas (engine/detok.py), cuts at stop
strings and ends with a `Finished` event saying why and how much.
"""
from __future__ import annotations

import math
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from numbers import Real

import torch
from transformers import (
    LogitsProcessor, LogitsProcessorList, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor,
)

from engine.compiled_step import engine_for
# the text layer lives in engine/detok.py; its event types are importable from here, beside stream()
from engine.detok import Finished, StreamEvent, TextDelta, text_events  # noqa: F401
from engine.fastpath import LeanGPT2, unsupported
from engine.sampling import Warp, draw
from engine.tokenizer import EOT, encode_prompt, era_token

FINISH_REASONS = ("eot", "length", "stop_string", "cancelled")
SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes 64-bit seeds


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


# Below this, logits / temperature overflows float32 (logits of ~30 over 1e-50 is inf, and softmax of inf - inf is
# NaN: torch.multinomial then raised; found by tests/reliability/test_fuzz.py, 2026-11-30). 0.001 keeps a 1e4
# margin and is far below any temperature anyone samples with; 0 is greedy.
MIN_TEMPERATURE = 1e-3


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. temperature 0 is greedy (top_k/top_p then play no part); top_k 0 and top_p 1 and
    repetition_penalty 1 and no_repeat_ngram_size 0 are off. min_new_tokens: the end of text cannot come
    before that many new tokens (transformers' min_new_tokens; stop strings and cancellation still end it).
    The same seed gives the same ids (and text);
    seed None draws a fresh one. year puts the decade's era token in front of the prompt (a year outside
    1500-1859 gets <|unknown-era|>). Construction checks everything but the context bound; validate(context)
    adds it."""

    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.95
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    year: int | None = None
    lock_year: int | None = None  # time lock: no word first attested after this year (engine/timelock.py)
    lock_corpus: str | None = None  # built corpus whose train-split first-seen words the lock bans too (None: lexicon)
    min_new_tokens: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, context: int | None = None) -> None:
        """Raise ValueError naming the first bad field and its allowed range; context bounds max_new_tokens."""
        hi = "the model context" if context is None else str(context)
        n = self.max_new_tokens
        if not _is_int(n) or n < 1 or (context is not None and n > context):
            raise ValueError(f"GenerationConfig.max_new_tokens={n!r}: must be an integer in [1, {hi}]")
        if not _is_int(self.min_new_tokens) or not 0 <= self.min_new_tokens <= n:
            raise ValueError(f"GenerationConfig.min_new_tokens={self.min_new_tokens!r}: must be an integer in "
                             f"[0, max_new_tokens={n}]")
        if not _is_real(self.temperature) or self.temperature < 0 or 0 < self.temperature < MIN_TEMPERATURE:
            raise ValueError(
                f"GenerationConfig.temperature={self.temperature!r}: must be 0 (greedy) or a number >= "
                f"{MIN_TEMPERATURE}"
            )
        if not _is_int(self.top_k) or self.top_k < 0:
            raise ValueError(f"GenerationConfig.top_k={self.top_k!r}: must be an integer >= 0 (0 = off)")
        if not _is_real(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"GenerationConfig.top_p={self.top_p!r}: must be a number in (0, 1] (1 = off)")
        if not _is_real(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise ValueError(
                f"GenerationConfig.repetition_penalty={self.repetition_penalty!r}: must be a number > 0 (1 = off)"
            )
        if not _is_int(self.no_repeat_ngram_size) or self.no_repeat_ngram_size < 0:
            raise ValueError(
                f"GenerationConfig.no_repeat_ngram_size={self.no_repeat_ngram_size!r}: "
                "must be an integer >= 0 (0 = off)"
            )
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= SEED_MAX):
            raise ValueError(f"GenerationConfig.seed={self.seed!r}: must be None or an integer in [0, 2**64 - 1]")
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"GenerationConfig.stop={self.stop!r}: must be a tuple of non-empty strings")
        if self.year is not None and not _is_int(self.year):
            raise ValueError(f"GenerationConfig.year={self.year!r}: must be None or an integer year (e.g. 1665)")
        if self.lock_year is not None and (not _is_int(self.lock_year) or not 1000 <= self.lock_year <= 2100):
            raise ValueError(f"GenerationConfig.lock_year={self.lock_year!r}: must be None or an integer in "
                             f"[1000, 2100]")
        if self.lock_corpus is not None and not isinstance(self.lock_corpus, str):
            raise ValueError(f"GenerationConfig.lock_corpus={self.lock_corpus!r}: must be None or a corpus folder path")


# ---------------------------------------------------------------------------------------------- ids


def model_context(model) -> int:
    """The model's context length in tokens (GPT-2's n_positions)."""
    cfg = model.config
    ctx = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if not _is_int(ctx) or ctx < 1:
        raise ValueError(f"model.config has no usable n_positions/max_position_embeddings (got {ctx!r})")
    return ctx


class Processors(LogitsProcessorList):
    """transformers' LogitsProcessorList minus its per-call `inspect.signature` of every processor (to route
    extra kwargs, which no processor here takes): that was 8% of a demo-model decode step (cProfile, 600 sampled
    tokens, 2026-11-30). Same processors, same order, same arithmetic."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


def logits_processors(cfg: GenerationConfig, processors: Sequence[LogitsProcessor] = ()) -> LogitsProcessorList:
    """The processors `model.generate` builds for the same settings, in its order (transformers 5.23
    `_get_logits_processor`): repetition penalty, n-gram ban, then caller-supplied ones (generate merges
    custom processors there too, before the warpers: a mask applied after top-k could leave only -inf),
    then, when sampling, temperature, top-k, top-p (engine/sampling.Warp: the three in one call, same output)."""
    out = Processors()
    if cfg.repetition_penalty != 1:
        out.append(RepetitionPenaltyLogitsProcessor(float(cfg.repetition_penalty)))
    if cfg.no_repeat_ngram_size > 0:
        out.append(NoRepeatNGramLogitsProcessor(cfg.no_repeat_ngram_size))
    out.extend(processors)
    if cfg.temperature > 0 and (cfg.temperature != 1 or cfg.top_k != 0 or cfg.top_p < 1):
        out.append(Warp(cfg.temperature, cfg.top_k, cfg.top_p))
    return out


def _eos_ids(model, eos_id: int | None) -> set[int]:
    if eos_id is None:
        eos_id = model.generation_config.eos_token_id
        if eos_id is None:
            eos_id = model.config.eos_token_id
    if eos_id is None:
        return set()
    return {int(e) for e in eos_id} if isinstance(eos_id, (list, tuple)) else {int(eos_id)}


def generate_ids(
    model, prompt_ids: Sequence[int], cfg: GenerationConfig, stop_event=None,
    processors: Sequence[LogitsProcessor] = (), eos_id: int | None = None, fast: bool = True,
) -> Generator[int, None, str]:
    """Yield new token ids one at a time. Stops at the end-of-text id (not yielded; eos_id, default the
    model's generation_config.eos_token_id), after cfg.max_new_tokens ids, or when stop_event (anything with
    is_set(), e.g. threading.Event) is set -- checked before every token, so a set event costs at most the
    token already being computed. The generator's return value (StopIteration.value, or `r = yield from`)
    is the reason: "eot", "length" or "cancelled". The model must be in eval mode. Bad arguments raise
    ValueError here, at the call, not at the first next(). fast: run the forward through
    engine/fastpath.py's lean decode step where it supports the model (GPT-2 on CPU; same ids), else the
    model's own forward; for models engine/compiled_step.py compiles (fp32, up to 128M parameters), its
    compiled step once a package for the shape exists (`cli.py compile-step`; ~2-3x the lean step on the demo model)."""
    context = model_context(model)
    cfg.validate(context)
    if model.training:
        raise ValueError("model is in training mode (dropout on): call model.eval() before generating")
    prompt = [int(i) for i in prompt_ids]
    vocab = model.config.vocab_size
    if not prompt:
        raise ValueError("prompt_ids is empty: generation needs at least one token (e.g. the era token or EOT)")
    if not all(0 <= i < vocab for i in prompt):
        bad = [i for i in prompt if not 0 <= i < vocab][:5]
        raise ValueError(f"prompt_ids must be token ids in [0, {vocab - 1}]; got {bad}")
    # the last new token is never fed back, so n prompt ids + m new ids need n + m - 1 positions
    if len(prompt) + cfg.max_new_tokens - 1 > context:
        raise ValueError(
            f"prompt_ids has {len(prompt)} tokens: with max_new_tokens={cfg.max_new_tokens} at most "
            f"{context - cfg.max_new_tokens + 1} fit the model context of {context} (stream() truncates)"
        )
    # engine_for checks the model itself (fully once, then only dtype and device): the lean check is for the rest
    lean = (engine_for(model) or (LeanGPT2(model) if unsupported(model) is None else None)) if fast else None
    return _decode(model, prompt, cfg, stop_event, logits_processors(cfg, processors), _eos_ids(model, eos_id), lean)


# Per token on CPU, decoding adds only plain Python and numpy to the forward pass: after a step has streamed
# the weights each torch op cost 5-18 us (its code no longer in cache), against a 0.15 ms demo-model step (2
# threads, /tmp/s12/loop.py, 2026-12-01): argmax 15-18 us -> numpy's, the history's torch.cat 8 us -> a
# preallocated buffer written through numpy, a new inference_mode object a step -> one reused. `History`,
# `choose` and `seeded_generator` are shared with engine/batching.py's rows.


def seeded_generator(cfg: GenerationConfig, device) -> torch.Generator | None:
    """A request's own generator when it samples (cfg.seed, else seeded from the OS); None when greedy."""
    if cfg.temperature <= 0:
        return None
    gen = torch.Generator(device=device)
    if cfg.seed is None:
        gen.seed()
    else:
        gen.manual_seed(cfg.seed)
    return gen


class History:
    """Every id of one sequence so far, in a buffer of room for `room` more: `ids()` is the [1, n] view that
    processors read, `last()` the [1, 1] last id; `append` writes through numpy on CPU."""

    __slots__ = ("buf", "n", "_np")

    def __init__(self, ids: Sequence[int], room: int, device):
        self.n = len(ids)
        self.buf = torch.empty((1, self.n + room), dtype=torch.long, device=device)
        self._np = self.buf.numpy() if self.buf.device.type == "cpu" else None
        if self._np is not None:
            self._np[0, :self.n] = ids  # numpy from the list: a tenth of torch.tensor + a slice copy
        else:
            self.buf[0, :self.n] = torch.tensor(ids, dtype=torch.long)

    def ids(self) -> torch.Tensor:
        return self.buf[:, :self.n]

    def last(self) -> torch.Tensor:
        return self.buf[:, self.n - 1:self.n]

    def append(self, token: int) -> None:
        if self._np is not None:
            self._np[0, self.n] = token
        else:
            self.buf[0, self.n] = token
        self.n += 1


def ban_ends(logits: torch.Tensor, ends: list[int]) -> torch.Tensor:
    """logits [rows, vocab] with the end ids at -inf (min_new_tokens), in place: they are the step's own output,
    read once. On CPU fp32 through numpy, one store instead of a torch op (10-20 us each after a step). -inf
    first and the processors after is what transformers' order gives too: penalties, bans and warpers keep an
    -inf an -inf."""
    if logits.device.type == "cpu" and logits.dtype == torch.float32:
        logits.numpy()[..., ends] = float("-inf")
    else:
        logits[..., ends] = float("-inf")
    return logits


def choose(scores: torch.Tensor, gen: torch.Generator | None) -> int:
    """The next id from processed scores [1, vocab]: a draw from gen, else the first maximum (numpy's argmax
    for CPU fp32 scores: the same index as torch.argmax, a NaN's included)."""
    if gen is not None:
        return draw(torch.softmax(scores, dim=-1), gen)
    if scores.device.type == "cpu" and scores.dtype == torch.float32:
        return int(scores.numpy().argmax())
    return int(torch.argmax(scores, dim=-1))


def _decode(
    model, prompt: list[int], cfg: GenerationConfig, stop_event, procs: LogitsProcessorList, eos: set[int], lean
) -> Generator[int, None, str]:
    gen = seeded_generator(cfg, model.device)
    hist = History(prompt, cfg.max_new_tokens, model.device)  # what penalties and processors read
    # the lean path's cache is sized once: the last new token is never fed back
    cache = lean.new_cache(1, len(prompt) + cfg.max_new_tokens - 1) if lean is not None else None
    past, no_grad = None, torch.inference_mode()
    token = prompt[-1]  # the last id so far: a step's input
    ends, min_new = sorted(eos), cfg.min_new_tokens
    for i in range(cfg.max_new_tokens):
        if stop_event is not None and stop_event.is_set():
            return "cancelled"
        # inference_mode per step, never across a yield: the mode is thread state and would leak to the caller
        with no_grad:
            if lean is not None:
                logits = lean.prefill(prompt, cache, 0) if i == 0 else lean.step((token,), cache)
            else:
                out = model(input_ids=hist.ids() if i == 0 else hist.last(), past_key_values=past,
                            use_cache=True, logits_to_keep=1)
                past, logits = out.past_key_values, out.logits[:, -1]
            if logits.dtype != torch.float32:
                logits = logits.float()
            if i < min_new and ends:
                logits = ban_ends(logits, ends)
            token = choose(procs(hist.ids(), logits) if procs else logits, gen)
        if token in eos:
            return "eot"
        hist.append(token)
        yield token
    return "length"


# ---------------------------------------------------------------------------------------------- text




def eot_id(tok) -> int:
    eot = tok.backend_tokenizer.token_to_id(EOT)
    eot = eot if eot is not None else tok.eos_token_id
    if eot is None:
        raise ValueError(f"tokenizer has neither {EOT} nor an eos token: generation could not stop at a text end")
    return eot


def prompt_ids(tok, prompt: str, cfg: GenerationConfig, context: int) -> tuple[list[int], int]:
    """(ids to feed, number dropped). The era token for cfg.year goes in front; an empty prompt is just the
    era token, or <|endoftext|> (what every training document follows) without a year. A prompt longer than
    max(1, context - max_new_tokens) loses tokens from the left; the era token stays in front."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    ids = encode_prompt(tok, prompt, cfg.year)
    era_id = tok.backend_tokenizer.token_to_id(era_token(cfg.year)) if cfg.year is not None else None
    era = [] if era_id is None else [era_id]  # encode_prompt put it in front exactly when it exists
    if not ids:
        ids = [eot_id(tok)]
    budget = max(1, context - cfg.max_new_tokens)
    if len(ids) <= budget:
        return ids, 0
    keep = budget - len(era)
    kept = era + (ids[len(ids) - keep:] if keep > 0 else [])
    return kept, len(ids) - len(kept)


def with_time_lock(tok, cfg: GenerationConfig, processors: Sequence[LogitsProcessor], prompt_len: int) -> tuple:
    """The caller's processors, plus the time lock when cfg.lock_year is set (it must know where the text
    will end, so that no banned word is left unfinished-but-final there)."""
    if cfg.lock_year is None:
        return tuple(processors)
    from engine.timelock import TimeLock
    return (*processors, TimeLock(tok, cfg.lock_year, final_length=prompt_len + cfg.max_new_tokens,
                                  corpus_dir=cfg.lock_corpus))


def stream(
    model, tok, prompt: str, cfg: GenerationConfig, stop_event=None,
    processors: Sequence[LogitsProcessor] = (), skip_special_tokens: bool = False,
) -> Iterator[StreamEvent]:
    """Generate from a text prompt: TextDelta events as text becomes final, then one Finished event.

    Deltas never split a UTF-8 character and add up to tok.decode(generated ids) exactly, except that a
    stop string from cfg.stop ends generation and it and everything after it are left out; text that could
    be the start of a stop string is held back until the next token settles it. Bad arguments raise
    ValueError at the call."""
    context = model_context(model)
    cfg.validate(context)
    ids, dropped = prompt_ids(tok, prompt, cfg, context)
    processors = with_time_lock(tok, cfg, processors, len(ids))
    it = generate_ids(model, ids, cfg, stop_event, processors, eos_id=eot_id(tok))
    return text_events(tok, it, cfg.stop, skip_special_tokens, len(ids), dropped)
