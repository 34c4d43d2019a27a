"""The one training loop: ``fit`` trains, validates, logs, checkpoints and resumes; ``evaluate`` runs a model.

Scripts pass a model, datasets, an optimizer and a *step function* ``step(model, batch, device) ->
(loss, outputs, targets)``; ``metric_fn(outputs, targets) -> dict`` is computed once over the whole
validation set (gathered across DDP ranks, never padded). AMP is used on CUDA; under ``torchrun`` the
model is wrapped in DistributedDataParallel and only rank 0 writes. Every epoch writes ``metrics.csv``
and ``last.pt`` (and ``best.pt`` when the monitored value improves), atomically; ``resume=True``
continues exactly where ``last.pt`` left off because each epoch reseeds all RNGs from (seed, epoch).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from common.engine import checkpoint
from common.errors import InputError
from common.io.atomic import save_csv, save_json
from common.runtime import get_rank, get_world_size, is_distributed, is_main_process, log, seed_everything

StepFn = Callable[[torch.nn.Module, Any, torch.device], tuple]


class TrainingDiverged(InputError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


def to_device(batch: Any, device: torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def supervised_step(loss_fn: Callable, input_key: str = "image", target_key: str = "label") -> StepFn:
    """The usual step: outputs = model(batch[input_key]); loss = loss_fn(outputs, batch[target_key])."""

    def step(model, batch, device):
        inputs, targets = batch[input_key].to(device), batch[target_key].to(device)
        outputs = model(inputs)
        return loss_fn(outputs, targets), outputs, targets

    return step


@dataclass
class FitConfig:
    epochs: int
    batch_size: int
    out: Path
    seed: int = 0
    resume: bool = False
    workers: int = 0
    monitor: str = "val_loss"
    mode: str = "min"  # "min" or "max" for the monitored value
    amp: bool = True  # only takes effect on CUDA
    grad_clip: float | None = None
    collate_fn: Callable | None = None
    args: dict = field(default_factory=dict)  # stored in the checkpoints


# Settings that say how a run is carried out, not what it trains: they may change between a run and its resumption.
RESUME_FREE_KEYS = frozenset({"resume", "out", "device", "workers", "epochs", "threads", "jobs", "table", "rows",
                              "seeds", "quick", "data_root", "command"})


def check_resumable(saved_args: dict, args: dict, path: Path, epochs_done: int, epochs: int) -> None:
    """Refuse to continue a checkpoint written with other settings (a copied folder, an --out reused for another
    variant) or past the epochs asked for: its history would be reported under this run's name. Settings only one
    side records (older checkpoints) are not compared."""
    changed = [k for k in sorted(set(saved_args) & set(args))
               if k not in RESUME_FREE_KEYS and str(saved_args[k]) != str(args[k])]
    if changed:
        key = changed[0]
        more = f" (and {len(changed) - 1} more setting(s): {', '.join(changed[1:])})" if len(changed) > 1 else ""
        raise InputError(f"written by a run with other settings: {key} = {saved_args[key]} there, {args[key]} now"
                         f"{more}", path=path,
                         hint="resume with that run's settings, or train afresh (another --out, or no --resume)")
    if epochs_done > epochs:
        raise InputError(f"holds {epochs_done} epochs, more than the {epochs} asked for", path=path,
                         hint=f"pass --epochs {epochs_done} or more to continue it, or train afresh elsewhere")


def _quiet() -> bool:
    """No progress bars on ranks other than 0, nor when TQDM_DISABLE is set (parallel workers log to files)."""
    return not is_main_process() or os.environ.get("TQDM_DISABLE", "") not in ("", "0")


def _amp_dtype(device: torch.device):
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _loader(ds: Dataset, cfg: FitConfig, shuffle: bool, epoch: int) -> DataLoader:
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    if shuffle and is_distributed():
        sampler = DistributedSampler(ds, shuffle=True, seed=cfg.seed, drop_last=False)
        sampler.set_epoch(epoch)
    elif shuffle:
        sampler = RandomSampler(ds, generator=g)
    else:  # validation: each rank takes every world-th item, no padding, so metrics cover the set exactly
        sampler = list(range(get_rank(), len(ds), get_world_size()))
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                      collate_fn=cfg.collate_fn, generator=g, pin_memory=torch.cuda.is_available())


def _gather(t: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return t
    parts = [None] * get_world_size()
    dist.all_gather_object(parts, t.cpu())
    return torch.cat(parts)


@torch.no_grad()
def evaluate(model, dataset, step: StepFn, device, metric_fn=None, batch_size: int = 16, workers: int = 0,
             collate_fn=None, desc: str = "eval") -> dict:
    """Loss and metrics of ``model`` over the whole ``dataset`` (sharded over DDP ranks and gathered)."""
    from tqdm import tqdm

    cfg = FitConfig(epochs=1, batch_size=batch_size, out=Path("."), workers=workers, collate_fn=collate_fn)
    was_training = model.training
    model.eval()
    losses, outs, tgts = [], [], []
    amp = _amp_dtype(device)
    for batch in tqdm(_loader(dataset, cfg, False, 0), desc=desc, leave=False, disable=_quiet()):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss, outputs, targets = step(model, batch, device)
        n = len(targets)
        losses.append(torch.tensor([float(loss) * n, n], dtype=torch.float64))
        outs.append(outputs.detach().float().cpu())
        tgts.append(targets.detach().cpu())
    model.train(was_training)
    total = torch.stack(losses).sum(0) if losses else torch.zeros(2, dtype=torch.float64)
    if is_distributed():
        total = total.to(device)
        dist.all_reduce(total)
        total = total.cpu()
    result = {"loss": float(total[0] / total[1]) if total[1] else float("nan")}
    if metric_fn is not None:
        outputs = _gather(torch.cat(outs)) if outs else torch.empty(0)
        targets = _gather(torch.cat(tgts)) if tgts else torch.empty(0)
        result.update({k: float(v) for k, v in metric_fn(outputs, targets).items()})
    return result


@torch.no_grad()
def predict(model, dataset, fn: Callable, device, batch_size: int = 16, workers: int = 0, collate_fn=None,
            desc: str = "predict") -> torch.Tensor:
    """``fn(model, batch, device) -> tensor (B, ...)`` over the dataset in order, concatenated on the CPU."""
    from tqdm import tqdm

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_fn)
    was_training = model.training
    model.eval()
    amp = _amp_dtype(device)
    outs = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=_quiet()):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            outs.append(fn(model, batch, device).detach().float().cpu())
    model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def _improved(value: float, best: float | None, mode: str) -> bool:
    if value is None or math.isnan(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


def fit(model: torch.nn.Module, train_set: Dataset, val_set: Dataset | None, step: StepFn,
        optimizer: torch.optim.Optimizer, cfg: FitConfig, device: torch.device,
        scheduler=None, metric_fn: Callable | None = None) -> dict:
    """Train ``model`` for ``cfg.epochs``; returns {"history", "best", "last", "out"}."""
    from tqdm import tqdm

    if len(train_set) == 0:
        raise InputError("the training set is empty", hint="check --data-root and the dataset layout")
    out = Path(cfg.out)
    model.to(device)
    amp = _amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    history: list[dict] = []
    best, start = None, 0
    last_path, best_path = out / "last.pt", out / "best.pt"
    if cfg.resume and last_path.exists():
        ck = checkpoint.load(last_path, map_location=device)
        check_resumable(ck.get("args") or {}, cfg.args, last_path, int(ck["epoch"]) + 1, cfg.epochs)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scheduler is not None and ck.get("scheduler") is not None:
            scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        history, best, start = list(ck.get("metrics", [])), ck.get("best"), int(ck["epoch"]) + 1
        log(f"resumed from {last_path} after epoch {start} of {cfg.epochs}")
    elif cfg.resume:
        log(f"no {last_path} to resume from; starting from scratch")
    net = model
    if is_distributed():
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    for epoch in range(start, cfg.epochs):
        # Reseeding from (seed, epoch, rank) makes an epoch's shuffling, augmentation and dropout the same
        # whether or not the run was interrupted before it: this is what makes --resume exact.
        seed_everything(cfg.seed * 1_000 + epoch * 16 + get_rank())
        net.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros(2, dtype=torch.float64)
        bar = tqdm(_loader(train_set, cfg, True, epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=_quiet())
        for i, batch in enumerate(bar):
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss, _, targets = step(net, batch, device)
            if not torch.isfinite(loss.detach()).all():
                bar.close()
                where = f"epoch {epoch + 1}, step {i + 1}"
                kept = f"; last good checkpoint kept at {last_path}" if last_path.exists() else ""
                raise TrainingDiverged(f"the loss became {float(loss.detach())} at {where}{kept}",
                                       hint="lower --lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if hasattr(scheduler, "step_batch"):  # a per-batch lr schedule (common.engine.schedules.BatchStepped)
                scheduler.step_batch()
            n = len(targets)
            loss_sum += torch.tensor([loss.detach().float().item() * n, n], dtype=torch.float64)
            if i % 10 == 0:
                bar.set_postfix(loss=f"{loss_sum[0] / loss_sum[1]:.4f}")
        if is_distributed():
            loss_sum = loss_sum.to(device)
            dist.all_reduce(loss_sum)
            loss_sum = loss_sum.cpu()
        row = {"epoch": epoch + 1, "train_loss": float(loss_sum[0] / loss_sum[1]),
               "lr": optimizer.param_groups[0]["lr"]}
        if val_set is not None:
            val = evaluate(model, val_set, step, device, metric_fn, cfg.batch_size, cfg.workers, cfg.collate_fn,
                           desc="validate")
            row.update({f"val_{k}": v for k, v in val.items()})
        row["seconds"] = round(time.perf_counter() - t0, 3)
        if scheduler is not None:
            plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
            if getattr(scheduler, "wants_metric", plateau):  # a wrapper (schedules.SharpnessRamp) may want it
                scheduler.step(row.get(cfg.monitor, row["train_loss"]))
            else:
                scheduler.step()
        history.append(row)
        value = row.get(cfg.monitor)
        is_best = _improved(value, best, cfg.mode)
        if is_best:
            best = value
        if is_main_process():
            state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                         scheduler=scheduler.state_dict() if scheduler is not None else None,
                         scaler=scaler.state_dict() if scaler.is_enabled() else None, epoch=epoch,
                         rng=checkpoint.rng_state(), args=cfg.args, metrics=history, best=best)
            checkpoint.save(last_path, **state)
            if is_best:
                checkpoint.save(best_path, **state)
            save_csv(out / "metrics.csv", history)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
        log(shown + (" *" if is_best else ""))
    result = {"history": history, "best": best, "monitor": cfg.monitor,
              "last": history[-1] if history else None, "out": str(out)}
    if is_main_process():
        save_json(out / "metrics.json", result)
    return result
