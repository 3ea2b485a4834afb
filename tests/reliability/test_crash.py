"""Crash-consistent training (issue 17): the crash harness (5 seeded SIGKILLs of a tiny run with dropout on, one
while a checkpoint is being written, final weights bit-identical to an uninterrupted run; a resume without the
RNG state as the control that must differ), the same through the job system, and the completion marker of
training/checkpoints.py: a checkpoint cut short or damaged (no marker, unreadable marker, truncated, corrupted,
an extra file) is never taken as valid, and resume says which one it skipped."""
import json
import re

import pytest
import torch

from tests.reliability.crash_harness import plan_kills, run_crash_harness, tiny_config
from training import checkpoints as C


def test_kill_plan_is_seeded_and_has_a_checkpoint_kill():
    a, b = plan_kills(5, 40, 4, seed=0), plan_kills(5, 40, 4, seed=0)
    assert a == b and a != plan_kills(5, 40, 4, seed=1)
    assert len(a) == 5 and [k["kind"] for k in a].count("checkpoint") == 1
    assert [k["step"] for k in a] == sorted(k["step"] for k in a) and all(2 <= k["step"] < 40 for k in a)
    ckpt = next(k for k in a if k["kind"] == "checkpoint")
    assert ckpt["step"] % 4 == 0 and 1 <= ckpt["after_files"] <= 3
    with pytest.raises(ValueError, match="kills=0 must be in 1..38"):
        plan_kills(0, 40, 4, seed=0)


@pytest.mark.slow
@pytest.mark.long
def test_five_kills_resume_bit_identical(tiny_corpus, tiny_tokenizer, tmp_path):
    r = run_crash_harness(tmp_path, kills=5, seed=0, corpus=tiny_corpus, tokenizer=tiny_tokenizer, control=True)
    assert r["config"]["dropout"] > 0
    assert len(r["kills"]) == 5 and r["kills_during_checkpoint"] >= 1, r["kills"]
    assert r["identical"] and r["losses_identical"] and r["max_abs_diff"] == 0.0, r
    assert r["kills_survived"] == 5
    assert r["control_differs"], "resuming without the RNG state gave the same weights: dropout had no effect"


@pytest.mark.slow
@pytest.mark.long
def test_job_killed_mid_checkpoint_resumes_bit_identical(tiny_corpus, tiny_tokenizer, tmp_path):
    """What tests/test_jobs.py's detached-job lifecycle does not cover: dropout on, and the job's process
    SIGKILLed while it writes a checkpoint; J.resume then finishes it with the uninterrupted job's weights."""
    r = run_crash_harness(tmp_path, kills=1, seed=3, corpus=tiny_corpus, tokenizer=tiny_tokenizer, via="job",
                          max_steps=16)
    assert r["kills"][0]["kind"] == "checkpoint" and r["kills_during_checkpoint"] == 1, r["kills"]
    assert r["identical"] and r["losses_identical"] and r["kills_survived"] == 1, r


# ------------------------------------------------------------------------------------------- the marker


def _saved_run(tmp_path):
    """A run folder with real accelerate checkpoints at steps 4 and 8 (a 2-layer MLP: no training needed)."""
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, opt = acc.prepare(model, opt)
    run = tmp_path / "run"
    for step in (4, 8):
        model(torch.randn(3, 8)).sum().backward()
        opt.step()
        C.save_checkpoint(acc, run, {"step": step, "tokens": step * 10, "val_loss": None}, keep_last=3)
    return run


DAMAGE = {
    "no marker": (lambda d: (d / C.MARKER).unlink(), "no complete.json: its write did not finish", False),
    "unreadable marker": (lambda d: (d / C.MARKER).write_text('{"format": 1, "fi'), "complete.json is unreadable",
                          False),
    "truncated": (lambda d: _truncate(d / "model.safetensors"), "model.safetensors has .* bytes, complete.json says",
                  False),
    "a file missing": (lambda d: (d / "trainer_state.json").unlink(), "trainer_state.json is missing", False),
    "corrupted, same size": (lambda d: _flip(d / "optimizer.bin"), "optimizer.bin does not match its sha256", True),
    "an extra pickle": (lambda d: (d / "random_states_1.pkl").write_bytes(b"\x80\x04N."),
                        "random_states_1.pkl is not listed in complete.json", False),
}


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip(p):
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0xFF
    p.write_bytes(bytes(b))


def test_a_complete_checkpoint_lists_every_file_and_verifies(tmp_path):
    run = _saved_run(tmp_path)
    ckpt = C.latest_checkpoint(run)
    assert ckpt.name == "step_0000008" and C.checkpoint_problem(ckpt) is None
    marker = json.loads((ckpt / C.MARKER).read_text())
    assert marker["step"] == 8 and set(marker["files"]) == {p.name for p in ckpt.iterdir()} - {C.MARKER}
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl", "trainer_state.json"} <= set(marker["files"])
    assert C.verified_checkpoint(run, log=lambda m: pytest.fail(m)) == ckpt
    assert not list((run / "checkpoints").glob(".*"))  # no temp folder left behind


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_never_taken(tmp_path, damage):
    run = _saved_run(tmp_path)
    hurt, message, same_size = DAMAGE[damage]
    newest = run / "checkpoints" / "step_0000008"
    hurt(newest)
    assert C.checkpoint_problem(newest) is not None
    # the cheap check (sizes only) cannot see a same-size corruption; resume's full check does
    assert C.latest_checkpoint(run).name == ("step_0000008" if same_size else "step_0000004")
    logged = []
    assert C.verified_checkpoint(run, log=logged.append).name == "step_0000004"
    assert len(logged) == 1 and str(newest) in logged[0] and "skipped" in logged[0]
    assert re.search(message, logged[0]), logged[0]
    C.clean_partial_checkpoints(run, resumed=run / "checkpoints" / "step_0000004", log=logged.append)
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == [".invalid-step_0000008", "step_0000004"]
    assert "moved the invalid checkpoint step_0000008 aside" in logged[1]


def test_a_write_cut_short_leaves_no_checkpoint(tmp_path):
    """What a SIGKILL during save_state leaves: a .tmp-step_* folder with some files and no marker (the harness
    makes real ones). It is not a checkpoint, and resume deletes it."""
    run = _saved_run(tmp_path)
    root = run / "checkpoints"
    part = root / ".tmp-step_0000012"
    part.mkdir()
    (part / "model.safetensors").write_bytes((root / "step_0000008" / "model.safetensors").read_bytes()[:100])
    assert C.latest_checkpoint(run).name == "step_0000008"
    C.clean_partial_checkpoints(run, resumed=C.verified_checkpoint(run))
    assert sorted(p.name for p in root.iterdir()) == ["step_0000004", "step_0000008"]


def test_resume_skips_a_corrupted_checkpoint_and_says_so(tiny_corpus, tiny_tokenizer, tmp_path):
    from training.loop import train
    from training.train_config import TrainConfig

    cfg = TrainConfig(**tiny_config(tiny_corpus, tiny_tokenizer, tmp_path / "run", max_steps=10, eval_every=10))
    assert train(cfg, max_steps_this_call=8, log=lambda m: None)["status"] == "paused"
    _flip(tmp_path / "run" / "checkpoints" / "step_0000008" / "model.safetensors")
    logged = []
    info = train(resume=tmp_path / "run", log=logged.append)
    assert info["status"] == "completed" and info["step"] == 10
    text = "\n".join(logged)
    assert "step_0000008 is not valid (model.safetensors does not match its sha256" in text
    assert "resumed " in text and "at step 4 from step_0000004" in text
    assert [m["step"] for m in C.read_metrics(tmp_path / "run") if m["kind"] == "train"] == list(range(1, 11))
    assert (tmp_path / "run" / "checkpoints" / ".invalid-step_0000008").is_dir()
