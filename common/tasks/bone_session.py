"""The classifier a CAM script explains, and the input side it sees: the one preamble of gradcam, evaluate, localize.

``--checkpoint`` (a train.py checkpoint or a torchvision-style DenseNet state_dict) or, without it, the demo model
of :mod:`common.tasks.bone_demo`; the input side from ``--size``, else the size the checkpoint records, else
``DEFAULT_SIZE``; and the class flags (``--target-class``, ``--abnormal-class``) checked against the head. Bad input
is one :class:`common.errors.InputError`. Call it inside ``ctx.removing_out_on_error()`` so a wrong checkpoint
leaves no empty --out behind. It sits with the demo's task modules because it falls back on the demo model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from common.errors import InputError
from common.models import MIN_INPUT_SIZE
from common.runtime import log
from common.tasks.bone_demo import load_classifier

DEFAULT_SIZE = 320  # MURA's published protocol resizes to 320 px


@dataclass
class Explained:
    """A loaded classifier in eval mode, what its file said (arch, source, ...) and the input side to use."""

    model: nn.Module
    info: dict
    size: int

    @property
    def num_outputs(self) -> int:
        return int(self.model.num_outputs)

    @property
    def n_classes(self) -> int:
        """A 1-output head explains two classes (1: the logit, 0: its negation); a K-output head K."""
        return 2 if self.num_outputs == 1 else self.num_outputs

    @property
    def is_demo(self) -> bool:
        return bool(self.info.get("demo"))

    def check_class(self, flag: str, value: int | None, one_output: Sequence[int] = (0, 1),
                    one_output_hint: str | None = None) -> None:
        """Refuse a class the head lacks: ``value`` of ``flag`` must be one of ``one_output`` for a 1-output head
        (``one_output_hint``: what to do instead), 0..K-1 for K outputs (None: nothing given)."""
        allowed = list(one_output) if self.num_outputs == 1 else list(range(self.num_outputs))
        if value is None or value in allowed:
            return
        names = ", ".join(map(str, allowed)) if len(allowed) <= 3 else f"{allowed[0]}..{allowed[-1]}"
        raise InputError(f"{flag} {value} is not a class of this {self.num_outputs}-output head (allowed: {names})",
                         path=self.info["source"],
                         hint=(self.num_outputs == 1 and one_output_hint) or f"choose {names}")


def load_explained(checkpoint, device: torch.device, arch: str | None = None, size: int | None = None) -> Explained:
    """Load ``checkpoint`` (None: the demo model, trained on first use) and settle the input side."""
    model, info = load_classifier(checkpoint, device, arch)
    recorded = info.get("size")
    if recorded is not None and (not isinstance(recorded, int) or recorded < MIN_INPUT_SIZE):
        if size is None:
            raise InputError(f"the checkpoint records an input size of {recorded!r}, below {MIN_INPUT_SIZE} px or not "
                             "a number", path=info["source"], hint=f"give --size (>= {MIN_INPUT_SIZE})")
        recorded = None
    if size is not None and recorded is not None and size != recorded:
        log(f"note: --size {size} differs from the {recorded} px the model was trained at; its maps and "
            "probabilities may shift")
    return Explained(model, info, int(size or recorded or DEFAULT_SIZE))
