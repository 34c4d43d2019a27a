"""Run-time set-up shared by every script: seeding, device choice, DDP under torchrun, rank-0 output.

A script calls :func:`setup_run` first thing in ``main``; under ``torchrun`` the same call joins the
process group (gloo on CPU, nccl on CUDA) from the environment variables torchrun sets.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from common.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (all devices); ``deterministic`` also asks for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def choose_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; an explicit device that is absent is an input error."""
    if name not in DEVICE_CHOICES:
        raise InputError(f"unknown device {name!r}", hint=f"use one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA GPU is visible", hint="use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps asked for, but MPS is not available", hint="use --device cpu or auto")
    if name == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


# ---------------------------------------------------------------- distributed


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(device: torch.device) -> bool:
    """Join the process group when launched by torchrun; returns whether DDP is active."""
    if is_distributed():
        return True
    if not launched_by_torchrun():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup_distributed() -> None:
    """Leave the process group together: a rank that tears it down while another still uses it (rank 0
    writing the last checkpoint) made gloo abort that rank with "terminate called without an active exception"."""
    if is_distributed():
        gc.collect()  # DDP wrappers left in reference cycles still hold gloo work objects
        dist.barrier()
        dist.destroy_process_group()


def log(*parts, **kwargs) -> None:
    """print() on rank 0 only, flushed so progress shows up under pipes and torchrun."""
    if is_main_process():
        print(*parts, **kwargs, flush=True)


# ---------------------------------------------------------------- outputs


def make_out_dir(path: str | os.PathLike) -> Path:
    """Create the output directory (rank 0) and check it is writable; an unwritable path is an input error."""
    out = Path(path).expanduser()
    if is_main_process():
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(f"output directory is not writable ({exc.strerror})", path=out,
                             hint="choose another --out") from None
    barrier()
    return out


@dataclass
class RunContext:
    """What :func:`setup_run` resolved: device, output dir, DDP state."""

    device: torch.device
    out: Path
    distributed: bool
    rank: int
    world_size: int
    created: tuple[Path, ...] = ()  # the folders setup_run made for ``out``, deepest first

    @contextlib.contextmanager
    def removing_out_on_error(self):
        """Inside, an exception (bad input found after set-up, such as a wrong checkpoint) removes the folders
        setup_run created for ``out`` while they are still empty, then propagates: no empty --out tree is left."""
        try:
            yield self
        except BaseException:
            if is_main_process():
                for folder in self.created:
                    try:
                        folder.rmdir()  # only succeeds while empty
                    except FileNotFoundError:
                        continue
                    except OSError:
                        break  # holds files: keep it and the folders above it
            raise


def setup_run(args) -> RunContext:
    """Seed, pick the device, join DDP if launched by torchrun, create ``args.out``, print the resolved args.

    Validate the inputs before calling it where that is cheap; checks that need the device (loading a checkpoint)
    can run inside ``with ctx.removing_out_on_error():`` so a failure leaves no empty output folders behind.
    """
    device = choose_device(getattr(args, "device", "auto"))
    distributed = init_distributed(device)
    # Each rank gets its own stream of randomness for augmentation; model init is synced by DDP.
    seed_everything(int(getattr(args, "seed", 0)) + get_rank(), getattr(args, "deterministic", False))
    wanted = Path(os.path.abspath(Path(args.out).expanduser()))  # ".." resolved, as mkdir walks it
    created = tuple(p for p in (wanted, *wanted.parents) if not p.exists())  # deepest first
    out = make_out_dir(args.out)
    log("arguments: " + ", ".join(f"{k}={v}" for k, v in sorted(vars(args).items())))
    log(f"device: {device}" + (f" (DDP, world size {get_world_size()})" if distributed else ""))
    return RunContext(device, out, distributed, get_rank(), get_world_size(), created)
