"""The training engine: the one loop (:mod:`common.engine.loop`), checkpoints (:mod:`common.engine.checkpoint`) and
learning-rate schedules (:mod:`common.engine.schedules`)."""

from common.engine import checkpoint
from common.engine.loop import (
    RESUME_FREE_KEYS,
    FitConfig,
    StepFn,
    TrainingDiverged,
    check_resumable,
    evaluate,
    fit,
    predict,
    supervised_step,
    to_device,
)

__all__ = ["RESUME_FREE_KEYS", "FitConfig", "StepFn", "TrainingDiverged", "check_resumable", "checkpoint", "evaluate",
           "fit", "predict", "supervised_step", "to_device"]
