"""The round state of an active-learning run, saved atomically after every step so a killed run resumes at its
round, and an annotator's run continues where it stopped.

``<out>/state.json``: the settings it was written with (``identity``), the labelled set and its labels in the
order they were revealed, one record per finished round (labels, metrics, the picks it queried) and ``pending``:
the picks whose labels are not yet known (the initial set is round 0's pending query).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import InputError
from common.io.atomic import save_json

STATE = "state.json"


@dataclass
class RoundState:
    identity: dict
    labelled: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    rounds: list[dict] = field(default_factory=list)
    pending: dict | None = None  # {"round": r, "indices": [...]}: queried, labels not yet revealed
    done: bool = False

    def save(self, out: Path) -> Path:
        return save_json(Path(out) / STATE, self.__dict__)

    @classmethod
    def load(cls, out: Path, identity: dict) -> "RoundState | None":
        """The state in ``out``, or None; InputError if it was written with other settings."""
        path = Path(out) / STATE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            state = cls(**data)
        except (ValueError, TypeError) as exc:
            raise InputError(f"not a readable active-learning state ({exc})", path=path,
                             hint="restore it, or start afresh in another --out") from None
        changed = [k for k in sorted(set(identity) | set(state.identity))
                   if json.dumps(identity.get(k)) != json.dumps(state.identity.get(k))]
        if changed:
            k = changed[0]
            raise InputError(f"written by a run with other settings: {k} = {state.identity.get(k)} there, "
                             f"{identity.get(k)} now", path=path,
                             hint="rerun with that run's settings, or start afresh in another --out")
        return state
