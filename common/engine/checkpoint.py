"""Checkpoint dicts: saved atomically, loaded with clear errors, with the RNG states for exact resumption.

Layout of a project checkpoint: {"model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ...,
"epoch": int, "rng": {...}, "args": {...}, "metrics": [...], "best": float|None, "format": "miadeepssl/1"}.
Only tensors and plain python values are stored, so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import io
import pickletools
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import InputError
from common.io.atomic import save_checkpoint

FORMAT = "miadeepssl/1"


def plain(value: Any) -> Any:
    """Make argparse values (Paths, tuples) safe for weights_only loading."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | Path, **state: Any) -> Path:
    """Write a project checkpoint dict atomically (temp file + rename)."""
    state.setdefault("format", FORMAT)
    if "args" in state:
        state["args"] = plain(state["args"])
    return save_checkpoint(path, state)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint (project dict or plain state_dict); a missing/truncated/foreign file is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path=path, hint="check the path, or train one first")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zip errors, EOF, unpickling errors: told apart only where the fix differs
        if pickled_module(path):  # weights_only loading refuses the module's classes
            raise InputError("checkpoint is a pickled whole model, not a state_dict", path=path,
                             hint="save model.state_dict() instead (or, if you trust the file, load it in Python "
                             "and re-save its state_dict)") from None
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if refused:  # a readable file that pickles a Python object safe loading will not rebuild
            raise InputError(f"checkpoint pickles the Python object {refused.group(1)}, not only tensors and plain "
                             "values", path=path, hint="store only tensors and plain values (vars(args), not args), "
                             "or, if you trust the file, load it in Python and re-save it so") from None
        raise InputError(f"checkpoint is truncated or corrupt, or not a PyTorch file ({type(exc).__name__})",
                         path=path, hint="re-save or re-download it") from None
    if not isinstance(obj, dict):
        raise InputError(f"checkpoint holds a {type(obj).__name__}, not a dict of tensors", path=path,
                         hint="save model.state_dict(), not the whole module")
    return obj


def pickled_module(path: str | Path) -> bool:
    """Whether ``torch.save`` wrote a whole ``nn.Module`` (``torch.save(model)``) to ``path``, read without unpickling.

    Every Module pickles its ``__dict__``, whose keys include "_modules" and "_parameters"; a state_dict's keys are
    parameter names ("features.conv0.weight"). pickletools only lists the opcodes, so no code in the file runs.
    """
    strings: set[str] = set()
    try:
        if zipfile.is_zipfile(path):  # torch >= 1.6: a zip archive holding <name>/data.pkl and the tensor storages
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                streams = [io.BytesIO(archive.read(name))] if name else []
        else:  # the legacy format: a few pickles in a row (magic number, version, system info, the object)
            with open(path, "rb") as f:
                streams = [io.BytesIO(f.read(64 << 20))]
        for stream in streams:
            for _ in range(4):
                strings.update(arg for _, arg, _ in pickletools.genops(stream) if isinstance(arg, str))
    except Exception:  # a truncated or foreign file: whatever was listed before the damage is all there is
        pass
    return {"_modules", "_parameters"} <= strings


def model_state(ckpt: dict) -> dict:
    """The model state_dict inside a project checkpoint, or the checkpoint itself if it is a plain state_dict."""
    state = ckpt.get("model", ckpt) if isinstance(ckpt.get("model"), dict) else ckpt
    state = ckpt.get("state_dict", state) if isinstance(ckpt.get("state_dict"), dict) else state
    # DDP checkpoints saved from the wrapper carry a "module." prefix
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state
