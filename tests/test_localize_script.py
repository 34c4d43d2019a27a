"""01_WeaklySupervised/localize.py end to end on a tiny checkpoint, and its argument checks."""

import pytest

from common.errors import InputError
from tests.helpers.scripts import load_script, run_script


def test_localize_scores_every_method_block_threshold(tiny_checkpoint, tmp_path):
    localize = load_script("01_WeaklySupervised", "localize")
    args = localize.get_args(["--checkpoint", str(tiny_checkpoint), "--n", "5", "--thresholds", "0.2,otsu",
                              "--out", str(tmp_path), "--device", "cpu"])
    result = localize.main(args)
    keys = {(r["method"], r["block"], r["threshold"]) for r in result["rows"]}
    assert keys == {("cam", 4, "0.2"), ("cam", 4, "otsu"), ("gradcam", 4, "0.2"), ("gradcam", 4, "otsu"),
                    ("gradcam", 3, "0.2"), ("gradcam", 3, "otsu")}
    for r in result["rows"]:
        assert r["n"] == 5 and 0 <= r["box_iou"] <= 1 and 0 <= r["correct@0.5"] <= 1 and 0 <= r["pixel_iou"] <= 1
    assert (tmp_path / "localization.png").exists() and (tmp_path / "report.md").exists()


@pytest.mark.parametrize("text", ["0", "1.5", "abc", ""])
def test_bad_thresholds(text):
    localize = load_script("01_WeaklySupervised", "localize")
    with pytest.raises(InputError):
        localize.parse_thresholds(text)


@pytest.mark.parametrize("argv, expected", [(["--method", "cam", "--layers", "3"], "needs block 4"),
                                            (["--n", "0"], "--n 0"), (["--batch-size", "0"], "--batch-size 0"),
                                            (["--thresholds", "2"], "--thresholds")])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path, argv, expected):
    out = tmp_path / "out"
    r = run_script("01_WeaklySupervised", "localize", *argv, "--out", out, "--device", "cpu")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and expected in lines[0], r.stderr
    assert not out.exists()
