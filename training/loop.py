"""The training loop (accelerate): one function, `train`, for a fresh run, `resume` or `extend_to`.

CPU (fp32), one GPU (bf16 autocast + TF32) or many processes (DDP; `accelerate launch`) run the same code.
Batches are a pure function of (seed, step, micro-step, rank), and the optimizer, scheduler and RNG states
come back from the checkpoint, so a resumed run continues exactly where the saved one was.

Stopping is cooperative: a stop_event, a STOP file in the run folder, or the first SIGINT/SIGTERM (Ctrl-C,
`kill`, the job registry's Stop) lets the current step finish, checkpoints, marks run.json "stopped" and
returns; a second signal aborts at once (run.json "interrupted"; the last checkpoint still resumes).
"""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed

from engine.model import build_model, count_params, flops_per_token, model_config
from engine.tokenizer import EOT, load_tokenizer, tokenizer_hash
from training import checkpoints as C
from engine.scoring import era_windows, score_windows, summarize, token_byte_lengths, window_starts
from training.tokens import batch_generator, load_tokens, prepare_tokens, sample_batch
from training.train_config import TrainConfig

# bf16 dense peak FLOP/s by device name, for MFU (vendor datasheets).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


def _optimizer(model, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: biases, LayerNorms and the (tied) embeddings get none."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "wte" not in name and "wpe" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused: one kernel for all parameters, on CPU too (measured 101.6 vs 106.2 ms per tiny step on 2 cores)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1, then cosine down to min_lr_ratio at max_steps (step counts optimizer steps)."""
    if step < cfg.warmup_steps:
        return (step + 1) / (cfg.warmup_steps + 1)
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


CENTURIES = [f"{c}s" for c in range(1400, 1900, 100)]


def evaluate(model, data, ctx: int, max_tokens: int, token_bytes: torch.Tensor, accelerator) -> dict:
    """Validation loss, perplexity, bits per byte and loss per century over fixed windows (split by rank),
    each with its document's era token at position 0, as in training and generation."""
    starts = window_starts(len(data.validation), ctx, max_tokens)[accelerator.process_index::accelerator.num_processes]
    century = (np.asarray(data.validation_decade, dtype=np.int64) // 100 - 14).clip(0, len(CENTURIES) - 1)
    tokens, century, starts = era_windows(data.validation, century, data.validation_docs, starts, ctx)
    sums = score_windows(model, tokens, century, starts, ctx, token_bytes, len(CENTURIES),
                         accelerator.autocast, accelerator.device)
    r = summarize(accelerator.reduce(sums, reduction="sum").cpu(), CENTURIES, prefix="val_")
    r["val_loss_per_century"] = {k: v["loss"] for k, v in r.pop("groups").items()}
    return r


def _trackers(cfg: TrainConfig) -> list[str] | None:
    """accelerate trackers: none (accelerate's log is then a no-op, the null tracker), or trackio/tensorboard."""
    if cfg.tracker == "none":
        return None
    if cfg.tracker != "auto":
        return [cfg.tracker]
    from accelerate.utils import is_tensorboard_available, is_trackio_available
    return ["trackio"] if is_trackio_available() else (["tensorboard"] if is_tensorboard_available() else None)


def _mfu(model_cfg, tokens_per_s: float) -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    return None if peak is None else flops_per_token(model_cfg) * tokens_per_s / peak


def train(cfg: TrainConfig | None = None, resume: str | Path | None = None, max_steps_this_call: int | None = None,
          stop_event: threading.Event | None = None, log=print, extend_to: int | None = None,
          progress=lambda p: None) -> dict:
    """Train a fresh run (cfg) or continue one (resume=run folder). Returns the final run.json dict.

    extend_to (with resume): continue the run, finished or not, to this many steps in all; the cosine schedule
    is stretched to the new end from the checkpoint on (run.json records the change under "extensions").
    Stops early and checkpoints after max_steps_this_call steps, when stop_event is set, when a file
    named STOP appears in the run folder, or on SIGINT/SIGTERM (see the module docstring).
    progress(dict) is called on the main process after every step: step, total, tokens, tokens_per_s, eta_s."""
    if extend_to is not None and resume is None:
        raise ValueError("extend_to needs resume=RUN_FOLDER (it continues an existing run)")
    if resume is not None:
        run = Path(resume)
        if not (run / "run.json").exists():
            raise C.TrainingError(f"{run} is not a run folder (no run.json); start one with `cli.py train --preset`")
        info = json.loads((run / "run.json").read_text())
        cfg = TrainConfig.from_dict(info["config"]) if cfg is None else cfg
        ckpt = C.verified_checkpoint(run, log=log)  # complete.json present and every file's sha256 matching
        if ckpt is None:
            raise C.TrainingError(f"{run} has no complete checkpoint to resume from (no checkpoints/step_*/ whose "
                                  f"{C.MARKER} matches its files)")
        if extend_to is not None:
            cfg = _extended(cfg, extend_to, info)
    else:
        if cfg is None:
            raise ValueError("train() needs a TrainConfig or resume=RUN_FOLDER")
        run, ckpt, info = Path(cfg.out), None, None
        if C.latest_checkpoint(run) is not None:
            raise C.TrainingError(f"{run} already holds a run; resume it with --resume {run} or pick another --out")
    cfg = cfg.resolve()
    if max_steps_this_call is not None and max_steps_this_call < 1:
        raise ValueError(f"max_steps_this_call={max_steps_this_call} must be >= 1")

    cuda = torch.cuda.is_available()
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    accelerator = Accelerator(mixed_precision="bf16" if cuda else "no", log_with=_trackers(cfg), project_dir=str(run),
                              step_scheduler_with_optimizer=False)
    set_seed(cfg.seed)
    tok = load_tokenizer(cfg.tokenizer)
    if info is not None and info.get("tokenizer", {}).get("hash") not in (None, tokenizer_hash(cfg.tokenizer)):
        raise C.TrainingError(f"tokenizer {cfg.tokenizer} changed since the run started (its tokenizer.json hash "
                              f"differs from run.json): resume needs the tokenizer the model was built with")
    with accelerator.main_process_first():
        data = load_tokens(prepare_tokens(cfg.corpus, cfg.tokenizer, cfg.tokens_cache, log=log))
    if data.vocab_size != len(tok):
        raise C.TrainingError(f"token cache vocab {data.vocab_size} != tokenizer vocab {len(tok)}")
    eot = tok.convert_tokens_to_ids(EOT)
    mcfg = model_config(cfg.preset, len(tok), n_ctx=cfg.n_ctx, dropout=cfg.dropout)
    model = build_model(mcfg, bos_id=eot, eos_id=eot, pad_id=eot)
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    train_model = torch.compile(model) if cfg.compile else model
    train_model, optimizer, scheduler = accelerator.prepare(train_model, optimizer, scheduler)
    token_bytes = token_byte_lengths(tok)

    run.mkdir(parents=True, exist_ok=True)
    if ckpt is not None:
        if accelerator.is_main_process:
            C.clean_partial_checkpoints(run, resumed=ckpt, log=log)
        accelerator.wait_for_everyone()
        accelerator.load_state(str(ckpt))  # verified above: the RNG pickles in it are the ones Anno wrote
        state = json.loads((ckpt / "trainer_state.json").read_text())
        if accelerator.is_main_process:
            C.truncate_metrics(run, state["step"])
            # run.json says "running" while it runs (a resumed run kept its old "stopped"/"paused" before), and
            # an extension's new max_steps is saved before the first step so that a kill resumes to it
            info.update(status="running", config=cfg.to_dict())
            info.pop("error", None)
            C.write_json_atomic(run / "run.json", info)
        log(f"resumed {run} at step {state['step']} from {ckpt.name}"
            + (f", extending to {cfg.max_steps} steps" if extend_to is not None else ""))
    else:
        state = {"step": 0, "tokens": 0, "val_loss": None}
        info = {"config": cfg.to_dict(), "model": asdict(mcfg), "params": count_params(mcfg),
                "corpus": {"dir": cfg.corpus, "fingerprint": data.meta["corpus_fingerprint"]},
                "tokenizer": {"dir": cfg.tokenizer, "hash": tokenizer_hash(cfg.tokenizer)},
                "tokens": {k: v["tokens"] for k, v in data.meta["splits"].items()},
                "tokens_per_decade": data.meta["splits"]["train"]["tokens_per_decade"],
                "code_version": C.code_version(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "status": "running", "processes": accelerator.num_processes}
        if accelerator.is_main_process:
            (run / "metrics.jsonl").unlink(missing_ok=True)
            log(f"model {cfg.preset}: {info['params']['total']:,} parameters ({info['params']['non_embedding']:,} "
                f"non-embedding), vocab {len(tok)}, ctx {mcfg.n_ctx}")
            ev = evaluate(train_model, data, mcfg.n_ctx, cfg.eval_tokens, token_bytes, accelerator)
            info["initial_eval"] = ev
            C.append_metrics(run, {"step": 0, "kind": "eval", **ev})
        else:
            evaluate(train_model, data, mcfg.n_ctx, cfg.eval_tokens, token_bytes, accelerator)
        if accelerator.is_main_process:
            C.write_json_atomic(run / "run.json", info)
    accelerator.init_trackers(run.name, config=cfg.to_dict())

    start_step, step = state["step"], state["step"]
    status, t_last, tok_last = "completed", time.time(), state["tokens"]
    t_call, tok_call = t_last, tok_last
    tokens_per_step = cfg.batch_size * mcfg.n_ctx * cfg.grad_accum * accelerator.num_processes
    stop_event = stop_event or threading.Event()
    restore_signals = _stop_on_signals(stop_event, log)
    try:
        train_model.train()
        while step < cfg.max_steps:
            for micro in range(cfg.grad_accum):
                x, y = sample_batch(data, cfg.batch_size, mcfg.n_ctx,
                                    batch_generator(cfg.seed, step, micro, accelerator.process_index),
                                    decade_power=cfg.decade_power)
                x, y = x.to(accelerator.device), y.to(accelerator.device)
                sync = micro == cfg.grad_accum - 1
                with accelerator.no_sync(train_model) if not sync else _null(), accelerator.autocast():
                    logits = train_model(x, use_cache=False).logits  # no KV cache to build in training
                    loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
                accelerator.backward(loss / cfg.grad_accum)
            loss_value = accelerator.reduce(loss.detach(), reduction="mean").item()
            if not math.isfinite(loss_value):
                last = C.latest_checkpoint(run)
                raise C.TrainingError(f"loss is {loss_value} at step {step + 1}: stopped without saving; the last good "
                                      f"checkpoint is {last or 'none'} (resume it with a lower --lr)")
            grad_norm = accelerator.clip_grad_norm_(train_model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            state.update(step=step, tokens=state["tokens"] + tokens_per_step)
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                dt, dtok = time.time() - t_last, state["tokens"] - tok_last
                rec = {"step": step, "kind": "train", "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                       "grad_norm": float(grad_norm), "tokens": state["tokens"], "tokens_per_s": round(dtok / dt, 1)}
                if (mfu := _mfu(mcfg, dtok / dt)) is not None:
                    rec["mfu"] = round(mfu, 4)
                t_last, tok_last = time.time(), state["tokens"]
                if accelerator.is_main_process:
                    C.append_metrics(run, rec)
                    mfu_text = f" MFU {rec['mfu']:.1%}" if "mfu" in rec else ""
                    log(f"step {step}/{cfg.max_steps} loss {loss_value:.4f} lr {rec['lr']:.2e} "
                        f"{rec['tokens_per_s']:.0f} tok/s{mfu_text}")
                accelerator.log({k: v for k, v in rec.items() if isinstance(v, (int, float))}, step=step)
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                ev = evaluate(train_model, data, mcfg.n_ctx, cfg.eval_tokens, token_bytes, accelerator)
                state["val_loss"] = ev["val_loss"]
                if accelerator.is_main_process:
                    C.append_metrics(run, {"step": step, "kind": "eval", **ev})
                    log(f"step {step} val loss {ev['val_loss']:.4f} bpb {ev['val_bpb']:.4f}")
                accelerator.log({k: v for k, v in ev.items() if isinstance(v, (int, float))}, step=step)
            stop = _agreed(accelerator, stop_event.is_set() or (run / "STOP").exists())
            paused = max_steps_this_call is not None and step - start_step >= max_steps_this_call
            if accelerator.is_main_process:
                rate = (state["tokens"] - tok_call) / max(time.time() - t_call, 1e-9)
                progress({"step": step, "total": cfg.max_steps, "tokens": state["tokens"],
                          "tokens_per_s": round(rate, 1),
                          "eta_s": round((cfg.max_steps - step) * tokens_per_step / rate, 1) if rate else None})
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps or stop or paused:
                C.save_checkpoint(accelerator, run, dict(state), cfg.keep_last)
            if (stop or paused) and step < cfg.max_steps:
                status = "stopped" if stop else "paused"
                break
    except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint now; the last one resumes
        _finish(accelerator, run, info, status="interrupted", step=step)
        raise
    except Exception as e:
        info["error"] = f"{type(e).__name__}: {e}"
        _finish(accelerator, run, info, status="failed", step=step)
        raise
    finally:
        restore_signals()
    return _finish(accelerator, run, info, status=status, step=step, model=model, tokenizer_dir=cfg.tokenizer,
                   log=log)


def _extended(cfg: TrainConfig, extend_to, info: dict) -> TrainConfig:
    """The run's config with max_steps raised to extend_to, recorded in info["extensions"]."""
    if isinstance(extend_to, bool) or not isinstance(extend_to, int) or extend_to <= cfg.max_steps:
        raise ValueError(f"extend_to={extend_to!r} must be an integer greater than the run's max_steps="
                         f"{cfg.max_steps} (it continues the run to more steps)")
    info.setdefault("extensions", []).append({"from_max_steps": cfg.max_steps, "to_max_steps": extend_to,
                                              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return replace(cfg, max_steps=extend_to)


def _agreed(accelerator, flag: bool) -> bool:
    """One stop decision for all processes: a signal or the STOP file may reach the ranks at different steps,
    and a rank that breaks alone would leave the others waiting in the next collective."""
    if accelerator.num_processes == 1:
        return flag
    return bool(accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), reduction="sum").item())


def _stop_on_signals(event: threading.Event, log):
    """Install SIGINT/SIGTERM handlers that set `event` (the loop then checkpoints and stops after the current
    step); a second signal raises KeyboardInterrupt. Returns the function restoring the previous handlers.
    Signal handlers can only be set in the main thread: elsewhere (a UI worker thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    sigs = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.getsignal(s) for s in sigs}

    def handler(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        log(f"{signal.Signals(signum).name}: stopping after this step (checkpoint first); send it again to abort")

    for s in sigs:
        signal.signal(s, handler)
    return lambda: [signal.signal(s, h) for s, h in before.items()]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _finish(accelerator, run: Path, info: dict, status: str, step: int, model=None, tokenizer_dir=None,
            log=print) -> dict:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if model is not None:
            C.export_model(accelerator.unwrap_model(model), tokenizer_dir, run / "model")
        evals = [m for m in C.read_metrics(run) if m["kind"] == "eval"]
        info.update(status=status, step=step, updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if evals:
            info["final_eval"] = evals[-1]
            init = info.get("initial_eval", {}).get("val_bpb")
            if init:
                info["bpb_ratio_vs_untrained"] = round(evals[-1]["val_bpb"] / init, 4)
        (run / "STOP").unlink(missing_ok=True)
        C.write_json_atomic(run / "run.json", info)
        if model is not None:
            log(f"{status} at step {step}: model in {run / 'model'}")
    accelerator.end_training()
    return info
