"""Name -> CAM method class, for argparse ``choices=`` and :func:`common.cam.explain.explain`.

The one-layer methods only; FullGrad (:mod:`common.cam.fullgrad`) explains the whole network at once and is called
on its own. Ablation-CAM and Score-CAM add forward passes (one per channel) to the shared one.
"""

from common.cam.ablationcam import AblationCAM
from common.cam.cam import CAM
from common.cam.eigencam import EigenCAM
from common.cam.eigengradcam import EigenGradCAM
from common.cam.gradcam import GradCAM
from common.cam.gradcampp import GradCAMPlusPlus
from common.cam.hirescam import GradCAMElementWise, HiResCAM
from common.cam.layercam import LayerCAM
from common.cam.scorecam import ScoreCAM
from common.cam.xgradcam import XGradCAM

METHODS = {
    "cam": CAM,
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "scorecam": ScoreCAM,
    "layercam": LayerCAM,
    "xgradcam": XGradCAM,
    "eigencam": EigenCAM,
    "hirescam": HiResCAM,
    "gradcam_elementwise": GradCAMElementWise,
    "eigengradcam": EigenGradCAM,
    "ablationcam": AblationCAM,
}

# methods that run extra forward passes beyond the shared one (one per scored channel)
EXTRA_PASSES = ("scorecam", "ablationcam")
