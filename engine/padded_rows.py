"""The batcher's batch state over a model's own forward and DynamicCache (engine/batching.py's fallback for any
model or device engine/fastpath.py's lean path does not run): each row left-padded to the widest, a [rows,
width] attention mask and explicit per-row position ids (GPT-2's positions are absolute, so padding must not
shift them). Same interface as engine/fastpath.LeanRows: add / add_many a row from its prompt, set_next a row's
next token, step all rows, keep some rows, reset."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class PaddedRows:
    """The batch state over the model's own forward and DynamicCache (any device; the fallback when the
    lean path does not support the model): rows left-padded to the widest, a [rows, width] attention mask,
    explicit per-row position ids."""

    def __init__(self, model):
        self.model = model
        self.reset()

    @property
    def rows(self) -> int:
        return 0 if self._next is None else int(self._next.shape[0])

    def add(self, ids: list[int], room: int) -> torch.Tensor:
        """Prefill a new last row alone (the call generate_ids makes) and pad its cache into the batch."""
        seq = torch.tensor([ids], dtype=torch.long, device=self.model.device)
        out = self.model(input_ids=seq, past_key_values=None, use_cache=True, logits_to_keep=1)
        self._join(out.past_key_values, len(ids))
        return out.logits[:, -1]

    def add_many(self, prompts: list[list[int]], rooms: list[int]) -> list[torch.Tensor]:
        """`add` for each prompt in turn (LeanRows' interface; this forward has no joint prefill)."""
        return [self.add(ids, room) for ids, room in zip(prompts, rooms)]

    def _join(self, past, n: int) -> None:
        device = self.model.device
        ones = torch.ones(1, n, dtype=torch.long, device=device)
        pos, nxt = torch.tensor([n], device=device), torch.zeros(1, 1, dtype=torch.long, device=device)
        if self._cache is None:
            self._cache, self._mask, self._pos, self._next = past, ones, pos, nxt
            return
        width = self._mask.shape[1]
        w = max(width, n)
        for mine, theirs in zip(self._cache.layers, past.layers):
            mine.keys = torch.cat([F.pad(mine.keys, (0, 0, w - width, 0)), F.pad(theirs.keys, (0, 0, w - n, 0))])
            mine.values = torch.cat([F.pad(mine.values, (0, 0, w - width, 0)), F.pad(theirs.values, (0, 0, w - n, 0))])
        self._mask = torch.cat([F.pad(self._mask, (w - width, 0)), F.pad(ones, (w - n, 0))])
        self._pos, self._next = torch.cat([self._pos, pos]), torch.cat([self._next, nxt])

    def set_next(self, row: int, token: int) -> None:
        self._next[row, 0] = token

    def step(self) -> torch.Tensor:
        mask = F.pad(self._mask, (0, 1), value=1)
        out = self.model(input_ids=self._next, past_key_values=self._cache, attention_mask=mask,
                         position_ids=self._pos[:, None], use_cache=True, logits_to_keep=1)
        self._mask, self._pos = mask, self._pos + 1
        return out.logits[:, -1]

    def keep(self, keep: list[int]) -> list[int]:
        """Keep rows `keep` (in order) and trim columns that are padding in every row."""
        idx = torch.tensor(keep, device=self._mask.device)
        mask = self._mask.index_select(0, idx)
        first = int(mask.any(dim=0).long().argmax())  # first column some row still uses
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, idx)[:, :, first:]
            layer.values = layer.values.index_select(0, idx)[:, :, first:]
        self._mask = mask[:, first:]
        self._pos, self._next = self._pos.index_select(0, idx), self._next.index_select(0, idx)
        return keep

    def reset(self) -> None:
        self._cache = self._mask = self._pos = self._next = None
