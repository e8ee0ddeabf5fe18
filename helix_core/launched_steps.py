"""Decode steps enqueued on the device whose tokens the host has not read yet.

Engine.decode_launch enqueues a step and returns a ticket at once; Engine.decode_finish(ticket)
waits for that step's tokens. A sequence's next token may stay on the device, in the previous
step's output (DecodeRunner.feedback), so the host can enqueue step t + 1 before it reads step t's
tokens: the device never waits for the host's bookkeeping, command broadcast or token streaming,
as long as those take less time than a step. Each launched step's tokens and logprobs are copied
to pinned host memory by an asynchronous copy behind the step itself, and an event marks when
they are there.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LaunchedStep:
    seq_ids: list[int]
    picked: torch.Tensor | None = None  # [2, B] float64 on the host: tokens and logprobs, once `done`
    done: object = None  # torch.cuda.Event recorded after the copy (None: already on the host)
    logits: torch.Tensor | None = None  # a device copy of the step's logits, where they were asked for
    outs: list | None = None  # a step of the general path ran at once: its results

    @classmethod
    def enqueue_copy(cls, seq_ids: list[int], picked: torch.Tensor, logits: torch.Tensor | None) -> "LaunchedStep":
        """Queue the copy of a step's `picked` (device, [2, B] float64) to the host behind the step.
        logits: kept as a copy (the graph's own output is overwritten by the next replay)."""
        if picked.device.type != "cuda":
            return cls(seq_ids, picked.clone(), None, None if logits is None else logits.clone())
        host = torch.empty(picked.shape, dtype=picked.dtype, pin_memory=True)
        host.copy_(picked, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return cls(seq_ids, host, done, None if logits is None else logits.clone())

    def wait(self) -> tuple[list[int], list[float]]:
        """Block until the step's tokens are on the host: (token ids, logprobs)."""
        if self.done is not None:
            self.done.synchronize()
        tokens, logprobs = self.picked.tolist()
        return [int(t) for t in tokens], logprobs
