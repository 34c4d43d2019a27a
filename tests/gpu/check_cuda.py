"""CUDA path check, run by hand on a GPU machine (not part of the CPU test run).

Trains through common.engine on CUDA with mixed precision (train.py, tiny settings), explains with the
resulting checkpoint on CUDA and on the CPU, and compares the maps; prints one line per check.
Usage: python tests/gpu/check_cuda.py --out /tmp/cuda_check
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tests.helpers.scripts import load_script  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=Path("/tmp/cuda_check"))
    args = p.parse_args()
    assert torch.cuda.is_available(), "no CUDA device"
    print("device:", torch.cuda.get_device_name(0), "bf16:", torch.cuda.is_bf16_supported(), flush=True)
    train = load_script("00_Interpretability", "train")
    t0 = time.time()
    result = train.main(train.get_args(["--quick", "--n-train", "256", "--n-val", "64", "--epochs", "2",
                                        "--out", str(args.out / "train"), "--device", "cuda"]))
    print(f"train on cuda: ok in {time.time() - t0:.1f} s, val AUROC {result['image']['auroc']:.3f}", flush=True)
    # resume on CUDA: one more epoch from last.pt
    r2 = train.main(train.get_args(["--quick", "--n-train", "256", "--n-val", "64", "--epochs", "3", "--resume",
                                    "--out", str(args.out / "train"), "--device", "cuda"]))
    print(f"resume on cuda: ok, {len(r2['history'])} epochs in history", flush=True)
    from common.cam import explain
    from common.data.phantoms import BoneXrayPhantom
    from common.models import to_model_input
    from common.tasks.bone_demo import load_classifier

    x = torch.stack([BoneXrayPhantom(n=4, size=128, seed=3, abnormal_fraction=1.0)[i]["image"] for i in range(4)])
    maps = {}
    for dev in ("cuda", "cpu"):
        model, _ = load_classifier(args.out / "train" / "best.pt", torch.device(dev))
        _, m = explain(model, to_model_input(x.to(dev)), ("cam", "gradcam", "gradcampp", "layercam"))
        maps[dev] = {k: {b: v.cpu() for b, v in d.items()} for k, d in m.items()}
    worst = max((maps["cuda"][k][b] - maps["cpu"][k][b]).abs().max().item()
                for k in maps["cpu"] for b in maps["cpu"][k])
    print(f"CAM maps cuda vs cpu: max abs diff {worst:.2e} ({'ok' if worst < 1e-3 else 'MISMATCH'})", flush=True)
    gradcam = load_script("00_Interpretability", "gradcam")
    res = gradcam.main(gradcam.get_args(["--checkpoint", str(args.out / "train" / "best.pt"), "--out",
                                         str(args.out / "gradcam"), "--device", "cuda",
                                         "--method", "cam,gradcam,scorecam"]))
    print(f"gradcam.py on cuda: ok, {len(res['images'])} images", flush=True)


if __name__ == "__main__":
    main()
