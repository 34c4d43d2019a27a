"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, Score-CAM, Layer-CAM, XGrad-CAM, Eigen-CAM, HiResCAM,
Grad-CAM element-wise, Eigen-Grad-CAM, Ablation-CAM and FullGrad, for 2D images and 3D volumes.

One small module per method over :mod:`common.cam.base`; hooks only in :mod:`common.cam.hooks`;
:func:`explain` computes any set of methods on several layers from one forward and one backward pass
(:mod:`common.cam.onepass`). What a target class means: :mod:`common.cam.context`; targets as callables
(segmentation regions, SEG-Grad-CAM; one pixel): :mod:`common.cam.targets`; maps of volumes as NIfTI and slice
panels: :mod:`common.cam.volume`; map post-processing:
:mod:`common.cam.normalize`; full fp32 inside the pass: :mod:`common.cam.precision`. Around the methods: test-time
augmentation (:mod:`~common.cam.tta`), scoring against masks (:mod:`~common.cam.scoring`), where a CAM peak's
evidence lies (:mod:`~common.cam.evidence`), raw maps (:mod:`~common.cam.raw`), the scripts' shared flags
(:mod:`~common.cam.options`), per-image output names and stale outputs (:mod:`~common.cam.outputs`); the classifier
and input size the bone scripts explain: :mod:`common.tasks.bone_session`.
Papers: Zhou et al. 2016 (https://arxiv.org/abs/1512.04150), Selvaraju et al. 2017
(https://arxiv.org/abs/1610.02391) and those named in each module.
"""

from common.cam.ablationcam import AblationCAM
from common.cam.base import (
    BaseCAM,
    Context,
    WeightedCAM,
    class_probabilities,
    linear_head,
    normalize_maps,
    resolve_targets,
    score_coefficients,
)
from common.cam.cam import CAM
from common.cam.eigencam import EigenCAM
from common.cam.eigengradcam import EigenGradCAM
from common.cam.explain import explain
from common.cam.fullgrad import FullGrad
from common.cam.gradcam import GradCAM
from common.cam.gradcampp import GradCAMPlusPlus
from common.cam.hirescam import GradCAMElementWise, HiResCAM
from common.cam.hooks import LayerCapture, frozen
from common.cam.layercam import LayerCAM
from common.cam.registry import METHODS
from common.cam.scorecam import ScoreCAM
from common.cam.targets import PixelTarget, SegmentationTarget
from common.cam.xgradcam import XGradCAM

__all__ = [
    "METHODS", "explain", "BaseCAM", "WeightedCAM", "Context", "LayerCapture", "frozen",
    "normalize_maps", "resolve_targets", "class_probabilities", "score_coefficients", "linear_head",
    "CAM", "GradCAM", "GradCAMPlusPlus", "ScoreCAM", "LayerCAM", "XGradCAM", "EigenCAM",
    "HiResCAM", "GradCAMElementWise", "EigenGradCAM", "AblationCAM", "FullGrad", "SegmentationTarget", "PixelTarget",
]
