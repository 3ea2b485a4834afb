"""Training configuration: one frozen dataclass, validated on creation, with derived values resolved once
(`resolve()`) and saved in every run's run.json so that a run folder describes itself."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from engine.model import PRESETS

# Peak learning rates per preset: nanoGPT/GPT-2 practice scaled with width (6e-4 at 768 wide, 3e-4 at
# 1024); tiny/small go higher because they are small and trained for few steps.
PRESET_LR = {"tiny": 2e-3, "small": 1e-3, "slm": 6e-4, "regular": 3e-4}
TRACKERS = ("none", "auto", "trackio", "tensorboard")


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "tiny"
    corpus: str = "data/corpus"
    tokenizer: str = "runs/tok"
    out: str = "runs/tiny"
    tokens_cache: str = "data/tokens"
    n_ctx: int = 0  # 0: the preset's context
    dropout: float = 0.0
    max_steps: int = 300
    batch_size: int = 16  # sequences per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 0.0  # 0: PRESET_LR[preset]
    min_lr_ratio: float = 0.1  # cosine decays to lr * this
    warmup_steps: int = -1  # -1: 5% of max_steps (at most 1000)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_tokens: int = 32_768  # validation target tokens per evaluation
    log_every: int = 10
    checkpoint_every: int = 100
    keep_last: int = 2  # newest checkpoints kept, besides the best one
    seed: int = 1337
    decade_power: float = 1.0  # window sampling: an era's share of windows ~ (its tokens)^p (training/tokens.py)
    compile: bool = False
    tracker: str = "none"

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset={self.preset!r} is unknown; allowed: {', '.join(PRESETS)}")
        positive = ("max_steps", "batch_size", "grad_accum", "eval_every", "eval_tokens", "log_every",
                    "checkpoint_every", "keep_last")
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}={v!r} must be an integer >= 1")
        if not (self.n_ctx == 0 or 8 <= self.n_ctx <= 1 << 17):
            raise ValueError(f"n_ctx={self.n_ctx} must be 0 (preset) or in 8..131072")
        if not 0 <= self.lr <= 1.0:
            raise ValueError(f"lr={self.lr} must be in [0, 1] (0: the preset's default)")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if self.warmup_steps < -1:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be >= 0 (or -1: derived)")
        for name in ("dropout", "beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.weight_decay < 0 or self.grad_clip <= 0:
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0 and grad_clip={self.grad_clip} > 0")
        if isinstance(self.decade_power, bool) or not isinstance(self.decade_power, (int, float)) \
                or not 0 <= self.decade_power <= 1:
            raise ValueError(f"decade_power={self.decade_power!r} must be in [0, 1] (1: uniform over tokens)")
        if self.tracker not in TRACKERS:
            raise ValueError(f"tracker={self.tracker!r}; allowed: {', '.join(TRACKERS)}")

    def resolve(self) -> "TrainConfig":
        """The same config with every derived value filled in (what run.json records)."""
        return replace(
            self,
            n_ctx=self.n_ctx or PRESETS[self.preset]["n_ctx"],
            lr=self.lr or PRESET_LR[self.preset],
            warmup_steps=self.warmup_steps if self.warmup_steps >= 0 else min(1000, self.max_steps // 20),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training config field(s): {', '.join(sorted(unknown))}")
        return cls(**d)
