"""01_WeaklySupervised/localize.py end to end on a tiny checkpoint, and its argument checks."""

import argparse

import pytest

from tests.helpers.scripts import load_script, run_main
from tests.test_interpretability_scripts import Recorder


def test_localize_scores_every_method_block_threshold(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    localize = load_script("01_WeaklySupervised", "localize")
    grid = Recorder(localize.image_grid)
    monkeypatch.setattr(localize, "image_grid", grid)
    args = localize.get_args(["--checkpoint", str(tiny_checkpoint), "--n", "5", "--thresholds", "0.2,otsu",
                              "--out", str(tmp_path), "--device", "cpu"])
    result = localize.main(args)
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path} (report.md, metrics.json, localization.png)"
    # the figure says what its colours are: a legend entry for each outline and box colour drawn, and a colour bar
    (fig,) = grid.calls
    legend = dict((colour, label) for label, colour in fig["legend"])
    assert len(legend) == 3 and fig["shared_colorbar"] and fig["suptitle"]
    drawn_masks = {localize.MASK_COLOURS[k] for masks in fig["masks"] for k, m in enumerate(masks) if m.any()}
    drawn_boxes = {localize.BOX_COLOURS[k] for boxes in fig["boxes"] for k, _ in enumerate(boxes)}
    assert drawn_masks | drawn_boxes <= set(legend)
    assert "box: lesion box (truth)" in legend[localize.BOX_COLOURS[0]]
    keys = {(r["method"], r["block"], r["threshold"]) for r in result["rows"]}
    assert keys == {("cam", 4, "0.2"), ("cam", 4, "otsu"), ("gradcam", 4, "0.2"), ("gradcam", 4, "otsu"),
                    ("gradcam", 3, "0.2"), ("gradcam", 3, "otsu")}
    for r in result["rows"]:
        assert r["n"] == 5 and 0 <= r["box_iou"] <= 1 and 0 <= r["correct@0.5"] <= 1 and 0 <= r["pixel_iou"] <= 1
    assert (tmp_path / "localization.png").exists() and (tmp_path / "report.md").exists()


@pytest.mark.parametrize("text", ["0", "1.5", "abc", "", "nan", "0.2,,0.5"])
def test_bad_thresholds(text):
    localize = load_script("01_WeaklySupervised", "localize")
    with pytest.raises(argparse.ArgumentTypeError):
        localize.parse_thresholds(text)


def test_repeated_thresholds_are_scored_once():
    localize = load_script("01_WeaklySupervised", "localize")
    assert localize.parse_thresholds("0.2, 0.20,otsu,0.5,otsu") == [0.2, "otsu", 0.5]
    assert localize.get_args([]).thresholds == [0.2, 0.35, 0.5, "otsu"]  # the default goes through it too


@pytest.mark.parametrize("argv, expected", [(["--method", "cam", "--layers", "3"], "needs block 4"),
                                            (["--n", "0"], "argument --n: must be >= 1, got 0"),
                                            (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
                                            (["--thresholds", "2"], "argument --thresholds: '2' is neither")])
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path, argv, expected):
    out = tmp_path / "out"
    r = run_main("01_WeaklySupervised", "localize", *argv, "--out", out, "--device", "cpu")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and expected in lines[0], r.stderr
    assert not out.exists()
