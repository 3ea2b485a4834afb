"""Tests for engine/batching.py: concurrent streams through one Batcher give the events `engine.generate.stream`
gives alone (greedy and seeded sampling, mixed lengths and settings, queueing past max_batch), a request joining
a busy batch gets its first token within one step, cancellation and errors stay with their own request, and
close() ends the thread. Scheduling is checked on the batcher's step counters, never on wall time; processors
that wait on an Event pin the moment a request arrives.

Model: runs/tiny/model (4x128, trained, vocab 8000) when present, otherwise a random-init tiny GPT-2 with a
byte-level BPE trained here; every test runs either way."""
from __future__ import annotations

import copy
import random
import threading
from pathlib import Path

import pytest
import torch
from transformers import LogitsProcessor

from engine.batching import Batcher
from engine.generate import Finished, GenerationConfig, TextDelta, stream
from engine.model import build_model, model_config
from engine.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer

TRAINED = Path(__file__).resolve().parents[1] / "runs" / "tiny" / "model"
WAIT = 30  # seconds an Event wait may take before the test fails instead of hanging
GREEDY = GenerationConfig(max_new_tokens=40, temperature=0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if (TRAINED / "config.json").exists():
        from engine.checkpoint import load_hf_model
        return load_hf_model(TRAINED).eval(), load_tokenizer(TRAINED)
    rng = random.Random(0)
    words = "the of and to in that was he for it with as his on London Thames plague yeare ſhall".split()
    texts = [" ".join(rng.choice(words) for _ in range(60)) + "\n" for _ in range(80)]
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=600), tmp_path_factory.mktemp("tok") / "tok")
    torch.manual_seed(0)
    return build_model(model_config("tiny", len(tok), n_ctx=256), 0, 0, 0).eval(), tok


@pytest.fixture
def batcher(served):
    b = Batcher(*served, max_batch=8)
    yield b
    b.close()


class NoEot(LogitsProcessor):
    """Bans <|endoftext|> (id 0) so a request runs to max_new_tokens; counts its calls (one per token)."""

    def __init__(self, on_call=None):
        self.calls, self.on_call = 0, on_call

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        scores = scores.clone()
        scores[:, 0] = float("-inf")
        return scores


class Gate:
    """on_call hook: at call `at`, signal `reached` and wait for `release` (holding the batcher thread)."""

    def __init__(self, at: int):
        self.at, self.reached, self.release = at, threading.Event(), threading.Event()

    def __call__(self, n: int) -> None:
        if n == self.at:
            self.reached.set()
            assert self.release.wait(WAIT), "test never released the gate"


class _Hook(LogitsProcessor):
    """Calls on_call(n) on its n-th call and changes nothing: lets a test pin a moment without altering output."""

    def __init__(self, on_call):
        self.calls, self.on_call = 0, on_call

    def __call__(self, input_ids, scores):
        self.calls += 1
        self.on_call(self.calls)
        return scores


def raise_at(at: int, message: str):
    """on_call hook: raise RuntimeError(message) at call `at` (a caller's processor failing mid-request)."""
    def hook(n: int) -> None:
        if n == at:
            raise RuntimeError(message)
    return hook


def alone(served, prompt, cfg, stop_event=None, processors=()):
    return list(stream(*served, prompt, cfg, stop_event, processors))


def consume(handles) -> list:
    """Each handle's full event list, every handle read by its own thread; an exception is returned as such."""
    out = [None] * len(handles)

    def eat(i):
        try:
            out[i] = list(handles[i])
        except Exception as e:  # noqa: BLE001 -- the test looks at it
            out[i] = e

    threads = [threading.Thread(target=eat, args=(i,)) for i in range(len(handles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    return out


@pytest.mark.parametrize("cfgs", [
    (GREEDY, GenerationConfig(max_new_tokens=50, temperature=0, year=1665)),
    (GenerationConfig(max_new_tokens=40, seed=1), GenerationConfig(max_new_tokens=50, seed=2, temperature=1.1)),
], ids=["greedy", "seeded"])
def test_two_concurrent_streams_equal_each_alone(served, batcher, cfgs):
    prompts = ("The plague was in the city", "My Lord,")
    expected = [alone(served, p, c, processors=[NoEot()]) for p, c in zip(prompts, cfgs)]
    gate = Gate(at=1)  # holds the first request's prefill until the second is queued: they must overlap
    first = batcher.submit(prompts[0], cfgs[0], processors=[NoEot(gate)])
    assert gate.reached.wait(WAIT)
    second = batcher.submit(prompts[1], cfgs[1], processors=[NoEot()])
    gate.release.set()
    got = consume([first, second])
    assert got == expected
    assert [e[-1].generated_tokens for e in got] == [40, 50]
    # they really shared the batch: the second started decoding while the first still had tokens to go
    assert second.first_token_step <= 1 < first.finished_step


def test_four_requests_of_different_shapes_queue_and_all_match(served):
    long_prompt = " ".join(["the river and the bridge"] * 80)  # longer than the context allows: truncated
    jobs = [
        ("In the yeare", GenerationConfig(max_new_tokens=5, temperature=0, year=1603)),
        ("London", GenerationConfig(max_new_tokens=64, seed=7, repetition_penalty=1.3, no_repeat_ngram_size=2)),
        (long_prompt, GenerationConfig(max_new_tokens=30, seed=3, top_k=5)),
        ("", GenerationConfig(max_new_tokens=17, seed=11, stop=(",", "."))),
    ]
    expected = [alone(served, p, c) for p, c in jobs]
    assert expected[2][-1].prompt_truncated
    with Batcher(*served, max_batch=2) as b:  # two wait for a free row
        gate = Gate(at=1)
        handles = [b.submit(jobs[0][0], jobs[0][1], processors=[_Hook(gate)])]
        assert gate.reached.wait(WAIT)
        handles += [b.submit(p, c) for p, c in jobs[1:]]
        gate.release.set()
        got = consume(handles)
    assert got == expected
    for events in got:
        assert isinstance(events[-1], Finished)
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == events[-1].text
    # max_batch=2: the third and fourth were prefilled only once an earlier request had left the batch
    assert handles[2].first_token_step >= handles[0].finished_step
    assert handles[3].first_token_step >= sorted(h.finished_step for h in handles[:3])[1]


def test_request_joining_busy_batch_gets_first_token_within_one_step(served, batcher):
    long_cfg = GenerationConfig(max_new_tokens=150, temperature=0)
    gate = Gate(at=10)  # the long request is mid-stream (its 10th token) when the short one arrives
    long = batcher.submit("The plague", long_cfg, processors=[NoEot(gate)])
    assert gate.reached.wait(WAIT)
    short = batcher.submit("My Lord,", GREEDY, processors=[NoEot()])
    gate.release.set()
    got_long, got_short = consume([long, short])
    assert short.submitted_step == 9  # the long one's 10th token is being picked in decode step 9
    assert short.first_token_step == 9  # prefilled as soon as that step ended, before step 10
    assert short.first_token_step < long.finished_step
    assert long.finished_step - long.first_token_step == 149  # one step per token: never stalled
    assert got_long == alone(served, "The plague", long_cfg, processors=[NoEot()])
    assert got_short == alone(served, "My Lord,", GREEDY, processors=[NoEot()])


def test_cancelling_one_stream_ends_it_within_one_step_others_unaffected(served, batcher):
    def cancel_at(n, event):  # set while the n-th token is being computed, as a caller's click would
        return NoEot(lambda calls: event.set() if calls == n else None)

    prompts = ("The plague", "My Lord,", "London bridge")
    stops = [threading.Event() for _ in prompts]
    cfg = GenerationConfig(max_new_tokens=30, seed=5)
    fresh = [threading.Event() for _ in prompts]
    expected = [alone(served, p, cfg, s, [cancel_at(5, s) if i == 1 else NoEot()])
                for i, (p, s) in enumerate(zip(prompts, fresh))]
    assert expected[1][-1].finish_reason == "cancelled" and expected[1][-1].generated_tokens == 5
    gate = Gate(at=1)
    handles = [batcher.submit(prompts[0], cfg, stops[0], [NoEot(gate)])]
    assert gate.reached.wait(WAIT)
    handles += [batcher.submit(p, cfg, s, [cancel_at(5, s) if i == 1 else NoEot()])
                for i, (p, s) in enumerate(zip(prompts, stops)) if i > 0]
    gate.release.set()
    got = consume(handles)
    assert got == expected  # the token in flight is kept, nothing after it; the others run on
    assert handles[1].finished_step - handles[1].first_token_step == 4  # dropped right after its 5th token
    assert [e[-1].generated_tokens for e in got] == [30, 5, 30]


def test_closing_an_unread_stream_frees_its_row(served):
    with Batcher(*served, max_batch=1) as b:
        gate = Gate(at=2)
        hog = b.submit("The plague", GenerationConfig(max_new_tokens=200, temperature=0), processors=[NoEot(gate)])
        assert gate.reached.wait(WAIT)  # decode step 1 running, the one row taken
        waiting = b.submit("My Lord,", GREEDY)
        hog.close()  # never iterated
        gate.release.set()
        got = list(waiting)
    assert got == alone(served, "My Lord,", GREEDY)
    assert hog.finished_step == 1 and waiting.first_token_step == 1  # dropped before step 2; row given over


def test_errors_reach_only_their_own_caller(served, batcher):
    gate = Gate(at=2)
    good = batcher.submit("The plague", GREEDY, processors=[NoEot(gate)])
    assert gate.reached.wait(WAIT)
    with pytest.raises(ValueError, match=r"max_new_tokens=10000: must be an integer in \[1, 256\]"):
        batcher.submit("x", GenerationConfig(max_new_tokens=10_000))
    with pytest.raises(TypeError, match="prompt must be a str"):
        batcher.submit(b"bytes", GREEDY)
    with pytest.raises(TypeError, match="cfg must be an engine.generate.GenerationConfig"):
        batcher.submit("x", {"max_new_tokens": 5})
    bad = batcher.submit("My Lord,", GREEDY, processors=[_Hook(raise_at(3, "boom in request 2"))])
    gate.release.set()
    got_good, got_bad = consume([good, bad])
    assert isinstance(got_bad, RuntimeError) and "boom in request 2" in str(got_bad)
    assert got_good == alone(served, "The plague", GREEDY, processors=[NoEot()])
    after = batcher.submit("London", GREEDY)  # the batcher itself is fine
    assert list(after) == alone(served, "London", GREEDY)


def test_close_ends_running_requests_and_refuses_new_ones(served):
    b = Batcher(*served)
    running = b.submit("The plague", GenerationConfig(max_new_tokens=100, temperature=0),
                       processors=[NoEot(lambda n: b.close() if n == 3 else None)])
    with pytest.raises(RuntimeError, match="Batcher was closed while this request ran"):
        list(running)
    assert running.finished_step == 2  # ended after the step in flight (its 3rd token)
    b.close()
    with pytest.raises(RuntimeError, match="Batcher is closed"):
        b.submit("x", GREEDY)


def test_constructor_checks(served):
    model, tok = served
    with pytest.raises(ValueError, match=r"max_batch=0: must be an integer in \[1, 256\]"):
        Batcher(model, tok, max_batch=0)
    model.train()
    try:
        with pytest.raises(ValueError, match="training mode"):
            Batcher(model, tok)
    finally:
        model.eval()


def test_seed_gives_same_text_alone_and_in_a_batch_of_four(served, batcher):
    assert batcher.fast  # the default CPU path is the lean one (engine/fastpath.py)
    prompts = ("The plague was in the city", "My Lord,", "In the yeare", "Upon the Thames the")
    cfgs = [GenerationConfig(max_new_tokens=30, seed=s, temperature=1.0, top_k=0, top_p=1.0) for s in (5, 6, 7, 5)]
    expected = [alone(served, p, c, processors=[NoEot()]) for p, c in zip(prompts, cfgs)]
    gate = Gate(at=1)  # hold the first prefill until all four are queued: they decode as one batch
    handles = [batcher.submit(prompts[0], cfgs[0], processors=[NoEot(gate)])]
    assert gate.reached.wait(WAIT)
    handles += [batcher.submit(p, c, processors=[NoEot()]) for p, c in zip(prompts[1:], cfgs[1:])]
    gate.release.set()
    got = consume(handles)
    assert got == expected
    assert max(h.first_token_step for h in handles) <= 1  # all four were in the batch together


class EndFirst(LogitsProcessor):
    """Makes <|endoftext|> (id 0) the greedy choice at every step it is not banned from."""

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, 0] += 1e4
        return scores


def test_min_new_tokens_in_a_batch_as_alone(served, batcher):
    """The ban on a row with processors (a torch store before them): in a batch as alone."""
    cfgs = [GenerationConfig(max_new_tokens=30, temperature=0, min_new_tokens=k) for k in (0, 6, 30)]
    ended = alone(served, "My Lord,", cfgs[0], processors=[EndFirst()])
    assert ended[-1].generated_tokens == 0 and ended[-1].finish_reason == "eot"
    expected = [alone(served, p, c, processors=[EndFirst()]) for p, c in zip(("My Lord,", "In the yeare"), cfgs[1:])]
    assert [(e[-1].generated_tokens, e[-1].finish_reason) for e in expected] == [(6, "eot"), (30, "length")]
    gate = Gate(at=1)  # hold the first prefill until both are queued: they decode as one batch
    handles = [batcher.submit("My Lord,", cfgs[1], processors=[EndFirst(), _Hook(gate)])]
    assert gate.reached.wait(WAIT)
    handles.append(batcher.submit("In the yeare", cfgs[2], processors=[EndFirst()]))
    gate.release.set()
    assert consume(handles) == expected
    assert max(h.first_token_step for h in handles) <= 1


def test_min_new_tokens_on_greedy_rows_without_processors(served):
    """The ban on greedy rows without processors (numpy's store and argmax over the step's logits): a copy of
    the model whose final layer norm outputs one fixed vector that the end of text's (tied) row points along,
    so the end wins every step it may."""
    model, tok = served
    ender = copy.deepcopy(model)
    with torch.no_grad():
        ln_f, wte = ender.transformer.ln_f, ender.transformer.wte.weight
        ln_f.weight.zero_()
        ln_f.bias.copy_(torch.linspace(-1, 1, ln_f.bias.numel()))
        wte[0] = 50 * ln_f.bias
    cfgs = [GenerationConfig(max_new_tokens=30, temperature=0, min_new_tokens=k) for k in (0, 5, 12)]
    expected = [alone((ender, tok), p, c) for p, c in zip(("My Lord,", "In the yeare", "Upon the Thames"), cfgs)]
    assert [(e[-1].generated_tokens, e[-1].finish_reason) for e in expected] == [(0, "eot"), (5, "eot"), (12, "eot")]
    with Batcher(ender, tok, max_batch=4) as b:
        handles = [b.submit(p, c) for p, c in zip(("My Lord,", "In the yeare", "Upon the Thames"), cfgs)]
        assert consume(handles) == expected


def test_ids_reach_the_reader_in_batches_first_and_last_at_once(served, batcher, monkeypatch):
    """With delivery held back (DELIVER_S 60 s) the first id still reaches the reader at once -- its text
    arrives while the batcher is held inside a later step --, the rest arrive with the end, and the events
    equal `stream` alone; with DELIVER_S 0 every id goes at once and the events are the same."""
    import engine.batching as B

    cfg = GenerationConfig(max_new_tokens=12, temperature=0)
    expected = alone(served, "The plague", cfg, processors=[NoEot()])
    for wait in (60.0, 0.0):
        monkeypatch.setattr(B, "DELIVER_S", wait)
        gate = Gate(at=3)  # the processor's 3rd call: the batcher is computing the 3rd token
        handle = batcher.submit("The plague", cfg, processors=[NoEot(gate)])
        assert gate.reached.wait(WAIT)
        first = next(handle)  # would wait for the end (never, with the gate shut) if the first id were held
        assert isinstance(first, TextDelta) and first == expected[0] and handle.finished_step is None
        gate.release.set()
        assert [first, *handle] == expected


def test_ids_picked_before_an_error_reach_the_reader_first(served, batcher, monkeypatch):
    """A request whose processor fails at its 6th token gets the text of its first 5 ids, then the error, as
    from `stream` alone, even when those ids are still held back for delivery (DELIVER_S 60 s)."""
    import engine.batching as B

    monkeypatch.setattr(B, "DELIVER_S", 60.0)
    cfg = GenerationConfig(max_new_tokens=20, temperature=0)

    def events(it):
        got = []
        with pytest.raises(RuntimeError, match="boom at 6"):
            for e in it:
                got.append(e)
        return got

    want = events(stream(*served, "London bridge", cfg, processors=[NoEot(raise_at(6, "boom at 6"))]))
    assert "".join(e.text for e in want) != ""
    assert events(batcher.submit("London bridge", cfg, processors=[NoEot(raise_at(6, "boom at 6"))])) == want
