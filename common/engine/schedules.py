"""Learning-rate schedules the engine steps once per epoch, or after every batch (``step_batch``).

``make_scheduler(name, optimizer, epochs, steps_per_epoch)`` builds one by name (``SCHEDULES``); ``SharpnessRamp``
wraps one and also ramps the log-sum-exp sharpness of a model's pooled head over the epochs.
"""

from __future__ import annotations

import torch

from common.errors import InputError

SCHEDULES = ("plateau", "onecycle", "onecycle-batch")


class BatchStepped:
    """An lr scheduler the engine steps after every optimizer step (``step_batch``) instead of once per epoch."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def step_batch(self) -> None:
        self.scheduler.step()

    def step(self, *metric) -> None:  # the engine's per-epoch call: nothing to do
        pass

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int | None = None):
    """Learning-rate schedule, stepped once per epoch by the engine ("onecycle-batch": once per batch).

    "plateau": MURA's protocol (Rajpurkar et al. 2017), lr / 10 when the validation loss stops falling.
    "onecycle": Smith & Topin, "Super-Convergence", 2017 (https://arxiv.org/abs/1708.07120) -- warm-up
    to ``lr`` then annealing to ~0; a short from-scratch run (the demo model) needs far fewer epochs with it.
    "onecycle-batch": the same cycle stepped after every batch (``steps_per_epoch`` needed), as Smith & Topin
    and torch's OneCycleLR intend; per epoch, the whole first epoch runs at lr / 25.
    """
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=1)
    if name in ("onecycle", "onecycle-batch"):
        lr = optimizer.param_groups[0]["lr"]
        per_batch = name == "onecycle-batch"
        if per_batch and not steps_per_epoch:
            raise InputError("the onecycle-batch schedule needs the number of steps per epoch")
        # the engine steps `epochs` (x steps_per_epoch) times, so the last step must still lie in the cycle
        steps = epochs * (steps_per_epoch if per_batch else 1) + 1
        # OneCycleLR divides by (pct_start * total_steps - 1), zero at 4 steps; a run this short (a smoke test) gets
        # a cycle of 5 steps and ends before its last
        steps = max(steps, 5)
        cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.25)
        return BatchStepped(cycle) if per_batch else cycle
    raise InputError(f"unknown lr schedule {name!r}", hint=f"choose one of {SCHEDULES}")


class SharpnessRamp:
    """Per-epoch schedule of a log-sum-exp head's sharpness r, geometric from ``r0`` (first epoch) to ``r1`` (last),
    wrapped around the learning-rate scheduler (stepped with it, saved and resumed with it).

    Small r pools nearly like the mean, whose gradient reaches every position, so a from-scratch model finds the
    fractures and lytic lesions as often as with the average pool; by the last epochs the head pools like the
    LSE r1 the model keeps, whose CAM peaks on the lesion (measured: docs/demo_model_history.md, v6).
    The model is saved and used at r1; should the best validation loss come from an earlier epoch, validated at a
    smaller r, its probabilities at r1 differ a little from the ones validated (its CAMs, W x features, do not).
    """

    def __init__(self, model, lr_scheduler, r0: float, r1: float, epochs: int):
        if not (r0 > 0 and r1 > 0):
            raise InputError(f"log-sum-exp sharpness must be > 0, got {r0} -> {r1}")
        self.model, self.lr_scheduler, self.r0, self.r1, self.epochs = model, lr_scheduler, r0, r1, epochs
        # the engine hands a validation metric to schedulers that want one (ReduceLROnPlateau)
        self.wants_metric = isinstance(lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        self.epoch = 0
        self._apply()

    def r_at(self, epoch: int) -> float:
        t = min(1.0, epoch / max(self.epochs - 1, 1))
        return float(self.r0 * (self.r1 / self.r0) ** t)

    def _apply(self) -> None:
        self.model.lse_r = self.r_at(self.epoch)

    def step(self, *metric) -> None:
        if self.lr_scheduler is not None:
            self.lr_scheduler.step(*metric)
        self.epoch += 1
        self._apply()

    def step_batch(self) -> None:  # the lr of a per-batch schedule; r stays per epoch
        if hasattr(self.lr_scheduler, "step_batch"):
            self.lr_scheduler.step_batch()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "lr": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if self.lr_scheduler is not None and state.get("lr") is not None:
            self.lr_scheduler.load_state_dict(state["lr"])
        self.epoch = int(state["epoch"])
        self._apply()

