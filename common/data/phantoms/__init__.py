"""Built-in procedural phantoms with exact ground truth, one per modality the demos need.

- :class:`BoneXrayPhantom`: MURA-like radiographs, normal/abnormal, with lesion masks (interpretability).
- :class:`CardiacPhantomVolumes` / :class:`CardiacPhantomSlices`: ACDC-like short-axis cine MRI with
  labels 0 bg, 1 RV, 2 myocardium, 3 LV (weakly supervised segmentation).
- :class:`FundusPhantom`: REFUGE-like fundus photographs from two camera domains with disc/cup masks
  (domain adaptation).
Every item depends only on (seed, index), so datasets are reproducible in any order.
"""

from common.data.phantoms.bone import BODY_PARTS, LESION_TYPES, BoneXrayPhantom, render_bone
from common.data.phantoms.cardiac import CardiacPhantomSlices, CardiacPhantomVolumes, render_cardiac_volume
from common.data.phantoms.fundus import DOMAINS, FundusPhantom, render_fundus

PHANTOMS = {"bone": BoneXrayPhantom, "cardiac": CardiacPhantomSlices, "fundus": FundusPhantom}

__all__ = [
    "BODY_PARTS", "DOMAINS", "LESION_TYPES", "PHANTOMS", "BoneXrayPhantom", "CardiacPhantomSlices",
    "CardiacPhantomVolumes", "FundusPhantom", "render_bone", "render_cardiac_volume", "render_fundus",
]
