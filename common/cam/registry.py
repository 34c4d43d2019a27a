"""Name -> CAM method class, for argparse ``choices=`` and :func:`common.cam.explain.explain`."""

from common.cam.cam import CAM
from common.cam.eigencam import EigenCAM
from common.cam.gradcam import GradCAM
from common.cam.gradcampp import GradCAMPlusPlus
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
}
