"""Training loop: export, exact resume after SIGKILL, pause/stop, NaN and failed-checkpoint handling,
bad input. Tiny shapes (4x128, ctx 32, vocab 512) so each run takes seconds on CPU."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training import checkpoints as C
from training.loop import lr_factor, train
from training.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def cfg(tiny_corpus, tiny_tokenizer, out, **kw):
    base = dict(preset="tiny", corpus=str(tiny_corpus), tokenizer=str(tiny_tokenizer), out=str(out),
                tokens_cache=str(Path(out).parent / "tokens"), n_ctx=32, batch_size=4, max_steps=12, eval_every=6,
                eval_tokens=512, log_every=1, checkpoint_every=6, keep_last=1, lr=3e-3)
    return TrainConfig(**(base | kw))


def quiet(_msg):
    pass


def test_train_exports_a_hub_model_that_generates(tiny_corpus, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = train(cfg(tiny_corpus, tiny_tokenizer, tmp_path / "run"), log=quiet)
    run = tmp_path / "run"
    saved = json.loads((run / "run.json").read_text())
    assert saved["status"] == "completed" and saved["step"] == 12 and info["step"] == 12
    assert saved["tokenizer"]["hash"] and saved["corpus"]["fingerprint"] and saved["code_version"]
    assert saved["final_eval"]["val_bpb"] < saved["initial_eval"]["val_bpb"]
    assert set(saved["final_eval"]["val_loss_per_century"]) <= {"1500s", "1600s", "1700s", "1800s"}
    model = AutoModelForCausalLM.from_pretrained(run / "model", trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(run / "model")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert model.config.eos_token_id == model.config.bos_token_id == model.config.pad_token_id == eot
    assert model.generation_config.eos_token_id == eot
    # make <|endoftext|> the argmax everywhere (ln_f outputs a constant one-hot, only eot's row matches it):
    # stock generate() must stop there, not run on to max_new_tokens
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 100.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[eot, 0] = 1.0
    ids = model.generate(torch.tensor([[tok.convert_tokens_to_ids("<|1600s|>")]]), max_new_tokens=20, do_sample=False)
    assert ids.shape[1] == 2 and ids[0, -1].item() == eot
    kept = [p.name for p in (run / "checkpoints").iterdir()]
    assert "step_0000012" in kept and len(kept) <= 2  # last 1 + best


def _weights(run: Path) -> dict:
    return load_file(run / "model" / "model.safetensors")


def _train_losses(run: Path) -> list:
    return [(m["step"], m["loss"]) for m in C.read_metrics(run) if m["kind"] == "train"]


KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from training.loop import train
from training.train_config import TrainConfig
cfg = TrainConfig(**{cfg!r})
def log(msg):
    if msg.startswith("step 35/"):  # well past the step-30 checkpoint: later work must be discarded
        os.kill(os.getpid(), signal.SIGKILL)
train(cfg, log=log)
"""


@pytest.mark.slow
def test_resume_after_sigkill_is_exact(tiny_corpus, tiny_tokenizer, tmp_path):
    kw = dict(max_steps=60, checkpoint_every=30, eval_every=20, keep_last=2)
    straight = cfg(tiny_corpus, tiny_tokenizer, tmp_path / "straight", **kw)
    train(straight, log=quiet)
    killed = cfg(tiny_corpus, tiny_tokenizer, tmp_path / "killed", **kw)
    # the same intra-op thread count as this process: float sums differ across thread counts (seen in CI,
    # where the subprocess inherited an OMP setting this process did not have: losses differed at step 3)
    threads = str(torch.get_num_threads())
    proc = subprocess.run([sys.executable, "-c", KILLER.format(root=str(ROOT), cfg=killed.to_dict())],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert C.latest_checkpoint(tmp_path / "killed").name == "step_0000030"
    assert max(s for s, _ in _train_losses(tmp_path / "killed")) >= 35
    info = train(resume=tmp_path / "killed", log=quiet)
    assert info["status"] == "completed" and info["step"] == 60
    assert _train_losses(tmp_path / "killed") == _train_losses(tmp_path / "straight")
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pause_and_stop(tiny_corpus, tiny_tokenizer, tmp_path):
    run = tmp_path / "run"
    info = train(cfg(tiny_corpus, tiny_tokenizer, run), max_steps_this_call=4, log=quiet)
    assert info["status"] == "paused" and info["step"] == 4
    assert C.latest_checkpoint(run).name == "step_0000004" and (run / "model" / "model.safetensors").exists()
    (run / "STOP").touch()
    info = train(resume=run, log=quiet)
    assert info["status"] == "stopped" and info["step"] == 5 and not (run / "STOP").exists()
    import threading
    ev = threading.Event()
    ev.set()
    assert train(resume=run, stop_event=ev, log=quiet)["step"] == 6
    assert train(resume=run, log=quiet)["status"] == "completed"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_corpus, tiny_tokenizer, tmp_path, monkeypatch):
    import training.loop as L

    real = L.F.cross_entropy
    calls = {"n": 0}

    def flaky(logits, target, reduction="mean"):
        out = real(logits, target, reduction=reduction)
        if reduction == "mean":
            calls["n"] += 1
            if calls["n"] >= 9:
                return out * float("nan")
        return out

    monkeypatch.setattr(L.F, "cross_entropy", flaky)
    run = tmp_path / "run"
    with pytest.raises(C.TrainingError, match=r"loss is nan at step 9.*step_0000006"):
        train(cfg(tiny_corpus, tiny_tokenizer, run), log=quiet)
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_0000006"]
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    monkeypatch.setattr(L.F, "cross_entropy", real)
    assert train(resume=run, log=quiet)["step"] == 12


def test_failed_checkpoint_write_keeps_the_previous_one(tiny_corpus, tiny_tokenizer, tmp_path, monkeypatch):
    from accelerate import Accelerator

    real = Accelerator.save_state
    calls = {"n": 0}

    def failing(self, output_dir=None, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            real(self, output_dir, **kw)  # half of the files get written, then the disk "fills up"
            raise OSError(28, "No space left on device")
        return real(self, output_dir, **kw)

    monkeypatch.setattr(Accelerator, "save_state", failing)
    run = tmp_path / "run"
    with pytest.raises(C.TrainingError, match="step 12 failed.*step_0000006"):
        train(cfg(tiny_corpus, tiny_tokenizer, run), log=quiet)
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_0000006"]
    monkeypatch.setattr(Accelerator, "save_state", real)
    assert train(resume=run, log=quiet)["status"] == "completed"


def test_bad_input(tiny_corpus, tiny_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="preset='huge' is unknown; allowed: tiny, small, slm, regular"):
        TrainConfig(preset="huge")
    with pytest.raises(ValueError, match="batch_size=0 must be an integer >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(Exception, match="not a built corpus"):
        train(cfg(tmp_path / "nowhere", tiny_tokenizer, tmp_path / "a"), log=quiet)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        train(cfg(tiny_corpus, tmp_path / "notok", tmp_path / "b"), log=quiet)
    with pytest.raises(C.TrainingError, match="not a run folder"):
        train(resume=tmp_path / "nothing", log=quiet)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "run.json").write_text(json.dumps({"config": cfg(tiny_corpus, tiny_tokenizer, tmp_path / "empty").to_dict()}))
    with pytest.raises(C.TrainingError, match="no complete checkpoint"):
        train(resume=tmp_path / "empty", log=quiet)


def test_resume_refuses_a_changed_tokenizer(tiny_corpus, tiny_tokenizer, tmp_path):
    from training.tok_train import train_corpus_tokenizer

    run = tmp_path / "run"
    train(cfg(tiny_corpus, tiny_tokenizer, run), max_steps_this_call=2, log=quiet)
    info = json.loads((run / "run.json").read_text())
    other = tmp_path / "tok2"
    train_corpus_tokenizer(tiny_corpus, other, vocab_size=400, compare_seed=False, log=quiet)
    info["config"]["tokenizer"] = str(other)
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(C.TrainingError, match="tokenizer .* changed since the run started"):
        train(resume=run, log=quiet)


def test_lr_schedule():
    c = TrainConfig(max_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, c) == pytest.approx(1 / 11) and lr_factor(9, c) == pytest.approx(10 / 11)
    assert lr_factor(10, c) == pytest.approx(1.0) and lr_factor(100, c) == pytest.approx(0.1)
    assert lr_factor(55, c) == pytest.approx(0.55)
    assert TrainConfig(max_steps=300).resolve().warmup_steps == 15


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny_corpus, tiny_tokenizer, tmp_path):
    """Two CPU processes, DDP over gloo, launched by accelerate (torchrun under the hood), run, and the
    checkpoint and exported model load again. accelerate's own `--cpu --num_processes 2` starts ONE process
    unless an MPI hostfile is given (accelerate/commands/launch.py: simple_launcher), so the working
    spelling is ACCELERATE_USE_CPU=1 with --multi_gpu, which accelerate turns into MULTI_CPU + gloo."""
    from transformers import AutoModelForCausalLM

    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "cli.py"), "train",
           "--preset", "tiny", "--corpus", str(tiny_corpus), "--tokenizer", str(tiny_tokenizer), "--out", str(run),
           "--n-ctx", "32", "--batch-size", "4", "--max-steps", "6", "--max-steps-this-call", "4",
           "--eval-every", "2", "--eval-tokens", "256", "--log-every", "1", "--checkpoint-every", "2"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["processes"] == 2 and info["status"] == "paused" and info["step"] == 4
    ckpt = C.latest_checkpoint(run)
    assert ckpt.name == "step_0000004" and {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in ckpt.iterdir()}
    tokens_per_step = [m["tokens"] for m in C.read_metrics(run) if m["kind"] == "train"]
    assert tokens_per_step[:2] == [2 * 4 * 32, 2 * 2 * 4 * 32]  # both ranks' batches count
    AutoModelForCausalLM.from_pretrained(run / "model")
    assert train(resume=run, log=quiet)["step"] == 6  # a 2-process checkpoint resumes in one process


def test_signals_stop_after_the_step_and_a_second_one_aborts(tiny_corpus, tiny_tokenizer, tmp_path):
    """SIGTERM/SIGINT (kill, Ctrl-C, the job registry's Stop) finish the step, checkpoint and stop; a second
    signal aborts at once (run.json "interrupted"), and the last checkpoint still resumes."""
    run = tmp_path / "run"

    def term_at_3(msg):
        if msg.startswith("step 3/"):
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    info = train(cfg(tiny_corpus, tiny_tokenizer, run), log=term_at_3)
    assert info["status"] == "stopped" and info["step"] == 3 and C.latest_checkpoint(run).name == "step_0000003"
    assert json.loads((run / "run.json").read_text())["status"] == "stopped"
    assert signal.getsignal(signal.SIGTERM) is before  # handlers are restored

    def int_twice_at_5(msg):
        if msg.startswith("step 5/"):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(resume=run, log=int_twice_at_5)
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert C.latest_checkpoint(run).name == "step_0000003"
    assert train(resume=run, log=quiet)["status"] == "completed"


def test_extend_a_finished_run(tiny_corpus, tiny_tokenizer, tmp_path):
    run = tmp_path / "run"
    train(cfg(tiny_corpus, tiny_tokenizer, run, max_steps=6), log=quiet)
    with pytest.raises(ValueError, match="extend_to=6 must be an integer greater than the run's max_steps=6"):
        train(resume=run, extend_to=6, log=quiet)
    with pytest.raises(ValueError, match="extend_to needs resume"):
        train(cfg(tiny_corpus, tiny_tokenizer, tmp_path / "x"), extend_to=9, log=quiet)
    info = train(resume=run, extend_to=9, max_steps_this_call=1, log=quiet)
    assert info["status"] == "paused" and info["step"] == 7
    saved = json.loads((run / "run.json").read_text())
    assert saved["config"]["max_steps"] == 9 and [(e["from_max_steps"], e["to_max_steps"])
                                                   for e in saved["extensions"]] == [(6, 9)]
    info = train(resume=run, log=quiet)  # a plain resume goes on to the extended end
    assert info["status"] == "completed" and info["step"] == 9
    assert [s for s, _ in _train_losses(run)] == list(range(1, 10))


def test_cli_resume_refuses_other_flags_and_extends(tiny_corpus, tiny_tokenizer, tmp_path, capsys):
    import cli

    run = tmp_path / "run"
    train(cfg(tiny_corpus, tiny_tokenizer, run, max_steps=4, checkpoint_every=2), log=quiet)
    assert cli.main(["train", "--resume", str(run), "--lr", "0.1", "--max-steps", "8"]) == 2
    err = capsys.readouterr().err
    assert "--max-steps, --lr cannot be given with it" in err and "--extend-to N" in err
    assert cli.main(["train", "--preset", "tiny", "--extend-to", "8"]) == 2
    assert "--extend-to N needs --resume RUN" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(run), "--extend-to", "6"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["step"] == 6


def test_cli_progress_bar(tmp_path):
    import io

    import cli

    f = io.StringIO()
    log, progress, close = cli.train_bar(file=f, disable=False)
    log("before the bar")
    for step in (4, 5, 6):
        progress({"step": step, "total": 10, "tokens": step * 128, "tokens_per_s": 1234.5, "eta_s": 3.0})
    log("above the bar")
    close()
    text = f.getvalue()
    assert text.startswith("before the bar\n") and "above the bar" in text
    assert "6/10" in text and "1,234 tok/s" in text and "train:  60%" in text


@pytest.mark.slow
def test_ctrl_c_on_cli_train_checkpoints_marks_stopped_and_exits_0(tiny_corpus, tiny_tokenizer, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "cli.py"), "train", "--preset", "tiny", "--corpus", str(tiny_corpus),
           "--tokenizer", str(tiny_tokenizer), "--out", str(run), "--n-ctx", "32", "--batch-size", "4",
           "--max-steps", "50", "--eval-every", "25", "--eval-tokens", "512", "--log-every", "1",
           "--checkpoint-every", "25"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    err = []
    for line in proc.stderr:
        err.append(line)
        if line.startswith("step 2/50"):
            proc.send_signal(signal.SIGINT)
            break
    out, rest = proc.communicate(timeout=300)
    assert proc.returncode == 0, "".join(err) + rest
    assert "SIGINT: stopping after this step" in rest and "Traceback" not in rest
    info = json.loads(out)
    step = info["step"]
    assert info["status"] == "stopped" and 2 <= step <= 3
    assert json.loads((run / "run.json").read_text())["status"] == "stopped"
    assert C.latest_checkpoint(run).name == f"step_{step:07d}"
