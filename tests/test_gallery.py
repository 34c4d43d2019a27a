"""MedicalImages/gallery.py: every offline package sample is read via common.io; a missing one is skipped."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gallery():
    spec = importlib.util.spec_from_file_location("gallery", ROOT / "MedicalImages" / "gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Shipped inside the packages themselves (no download): these must always be read.
ALWAYS = {"fundus", "microaneurysms", "histopathology", "microscopy", "ct", "mr", "ultrasound",
          "ultrasound_palette", "mr_nifti"}


def test_gallery_renders_samples_and_phantoms(gallery, tmp_path, monkeypatch, capsys):
    samples = dict(gallery.PACKAGE_SAMPLES)
    samples["absent"] = gallery.Sample("MR", "pydicom no_such_file.dcm",
                                       gallery.dicom_panels("no_such_file.dcm", "absent"))
    monkeypatch.setattr(gallery, "PACKAGE_SAMPLES", samples)
    args = gallery.get_args(["--out", str(tmp_path), "--quick", "--device", "cpu"])
    metrics = gallery.main(args)
    for name in ("package_data/gallery.png", "phantoms.png", "metrics.json", "report.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert ALWAYS <= set(metrics["package_samples"])
    assert "absent" in metrics["skipped"] and "absent" not in metrics["package_samples"]
    assert "notice: skipping absent: pydicom test file no_such_file.dcm is not installed" in capsys.readouterr().err
    ct = [r for r in metrics["samples"] if r["sample"] == "ct"]
    assert [r["window"].split()[0] for r in ct] == ["soft_tissue", "lung", "bone"]
    assert ct[0]["rescale"] == "slope 1, intercept -1024"  # CT_small.dcm stores HU = raw - 1024
    assert metrics["phantom_panels"] == 2 + 2 + 4 and not metrics["phantoms_skipped"]
    assert json.loads((tmp_path / "metrics.json").read_text())["package_samples"] == metrics["package_samples"]
    report = (tmp_path / "report.md").read_text()
    assert "![phantoms with ground-truth contours](phantoms.png)" in report and "| ct | CT |" in report


def test_ct_windows_match_hand_computed_hounsfield(gallery):
    """Oracle: window the HU values (raw * slope + intercept) by hand and compare with the panels."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    panels = gallery.PACKAGE_SAMPLES["ct"].load()
    for (_, image, _), (centre, width) in zip(panels, [(40, 400), (-600, 1500), (400, 1800)]):
        np.testing.assert_allclose(image, np.clip((hu - (centre - width / 2)) / width, 0, 1), atol=1e-5)
