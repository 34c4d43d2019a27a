"""Bad-input messages: one line, the right diagnosis, and notices where an input is read in a way not chosen.

Cut files are made in the test from pydicom's and nibabel's own test data; checkpoints from the tiny DenseNet.
"""

import argparse
import os

import numpy as np
import pytest
import torch
from PIL import Image

from common.errors import LIBRARY_MESSAGE_LIMIT, InputError, cli_main, describe, one_line
from common.io import read_image
from tests.helpers.scripts import run_main

PYDICOM_ERROR = ("Unable to decompress 'JPEG-LS Lossless Image Compression' pixel data because all plugins are "
                 "missing dependencies:\n\tgdcm - requires gdcm>=3.0.10\n\tpylibjpeg - requires pylibjpeg>=2.0")
NIBABEL_ERROR = "Expected 67650 bytes, got 9648 bytes from cut.nii\n - could the file be damaged?"


def _pydicom_file(name):
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed")
    return path


def _nibabel_file(name):
    import nibabel

    path = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", name)
    if not os.path.isfile(path):
        pytest.skip(f"{path} is not installed (a slim nibabel build drops its test data)")
    return path


def _cli_error(capsys, fn):
    """Run ``fn`` under cli_main; return the stderr it printed, after checking exit code 2 and no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        cli_main(lambda _args: fn(), None)
    assert stop.value.code == 2
    return capsys.readouterr().err


def _one_error_line(err):
    lines = [line for line in err.splitlines() if not line.startswith("notice:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --- 1. one line, whatever the library said ---------------------------------------------------------------------


def test_one_line_joins_library_lines_readably():
    assert one_line(PYDICOM_ERROR) == (
        "Unable to decompress 'JPEG-LS Lossless Image Compression' pixel data because all plugins are missing "
        "dependencies: gdcm - requires gdcm>=3.0.10; pylibjpeg - requires pylibjpeg>=2.0")
    assert one_line(NIBABEL_ERROR) == "Expected 67650 bytes, got 9648 bytes from cut.nii; could the file be damaged?"
    assert one_line("  a \t b  \n\n") == "a b"
    long = describe(RuntimeError("word " * 1000))
    assert long.startswith("RuntimeError: word") and long.endswith("...")
    assert len(long) <= len("RuntimeError: ") + LIBRARY_MESSAGE_LIMIT


def test_input_error_and_cli_main_print_one_line(capsys):
    err = InputError(f"cannot decode ({PYDICOM_ERROR})", path="x.dcm", hint="install a decoder:\n  pip install x")
    assert "\n" not in str(err) and "\t" not in str(err)
    assert str(err).startswith("x.dcm: cannot decode (Unable")
    assert str(err).endswith("-- install a decoder: pip install x")

    class Raw(InputError):  # a subclass that builds its text itself still prints on one line
        def __str__(self):
            return "first\nsecond"

    def fail():
        raise Raw("m")

    assert _one_error_line(_cli_error(capsys, fail)) == "error: first; second"


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm", "MR_small_jpeg_ls_lossless.dcm"])
def test_compressed_dicom_without_decoder_is_one_line_with_install_hint(capsys, name):
    path = _pydicom_file(name)
    try:
        read_image(path)
    except InputError:
        pass
    else:
        pytest.skip(f"a decoder for {name} is installed here")
    line = _one_error_line(_cli_error(capsys, lambda: read_image(path)))
    assert name in line and "no installed decoder" in line and "pip install pylibjpeg pylibjpeg-libjpeg" in line
    assert "truncated" not in line


def test_truncated_nifti_is_one_line_and_says_truncated(tmp_path, capsys):
    data = open(_nibabel_file("anatomical.nii"), "rb").read()
    cut = tmp_path / "cut.nii"
    cut.write_bytes(data[:10_000])
    line = _one_error_line(_cli_error(capsys, lambda: read_image(cut)))
    assert str(cut) in line and "truncated NIfTI" in line
    # the header gives the image data's size: 33 x 41 x 25 voxels of 2 bytes (int16), from byte 352 on
    assert "expected 67650 bytes of image data, found 9648" in line


# --- 2. a cut DICOM is called cut, not compressed or a report ----------------------------------------------------


def test_dicom_cut_in_pixel_data(tmp_path, capsys):
    import pydicom

    src = _pydicom_file("CT_small.dcm")
    data = open(src, "rb").read()
    start = pydicom.dcmread(src).get_item(0x7FE00010).value_tell  # where the pixel values begin in the file
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: start + 10_000])
    line = _one_error_line(_cli_error(capsys, lambda: read_image(cut)))
    # 128 x 128 pixels x 16 bits allocated = 32768 bytes expected
    assert "truncated or incomplete pixel data (expected 32768 bytes, found 10000)" in line and str(cut) in line
    assert "pylibjpeg" not in line and "compressed" not in line


def test_dicom_cut_in_header(tmp_path, capsys):
    data = open(_pydicom_file("CT_small.dcm"), "rb").read()
    cut = tmp_path / "head.dcm"
    cut.write_bytes(data[:300])
    line = _one_error_line(_cli_error(capsys, lambda: read_image(cut)))
    assert "truncated or corrupt DICOM" in line and str(cut) in line
    assert "no pixel data" not in line and "report" not in line and "pylibjpeg" not in line


@pytest.mark.parametrize("keep", [700, 2_000, 5_000])
def test_dicom_cut_anywhere_before_the_pixels_says_truncated(tmp_path, keep):
    data = open(_pydicom_file("CT_small.dcm"), "rb").read()
    (tmp_path / "cut.dcm").write_bytes(data[:keep])
    with pytest.raises(InputError, match="truncated") as err:
        read_image(tmp_path / "cut.dcm")
    assert "pylibjpeg" not in str(err.value) and "report" not in str(err.value)


def test_dicom_without_pixels_still_named_so_and_good_files_read_as_before(tmp_path):
    import pydicom

    with pytest.raises(InputError, match=r"no pixel data \(a report") as err:
        read_image(_pydicom_file("rtplan.dcm"))  # a genuine non-image instance: not called truncated
    assert "truncated" not in str(err.value)
    for name in ("CT_small.dcm", "MR_small.dcm"):
        path = _pydicom_file(name)
        ds = pydicom.dcmread(path)
        expected = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        raw, meta = read_image(path, normalize=False)
        np.testing.assert_array_equal(raw, expected.astype(np.float32))
        assert meta["frames"] == 1


# --- 3. notices: 12-bit data in 16-bit rasters, multipage TIFF, 4D NIfTI ----------------------------------------


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_12bit_data_in_16bit_raster_is_scaled_by_4095_with_notice(tmp_path, capsys, ext):
    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 60 + 200)  # 200 .. 3980: a 12-bit detector's range
    path = tmp_path / f"xr12{ext}"
    Image.fromarray(arr).save(path)
    img, meta = read_image(path)
    np.testing.assert_allclose(img, arr / 4095.0, atol=1e-6)
    assert meta["bit_depth"] == 12
    err = capsys.readouterr().err
    assert f"notice: {path}: 16-bit image with maximum 3980 (< 4096): read as 12-bit data" in err
    assert len(err.splitlines()) == 1
    raw, _ = read_image(path, normalize=False)
    np.testing.assert_array_equal(raw, arr)


@pytest.mark.parametrize("peak, divisor", [(4095, 4095.0), (4096, 65535.0), (65535, 65535.0)])
def test_16bit_rule_boundary(tmp_path, capsys, peak, divisor):
    arr = np.array([[0, 1], [2, peak]], np.uint16)
    Image.fromarray(arr).save(tmp_path / "b.png")
    img, _ = read_image(tmp_path / "b.png")
    np.testing.assert_allclose(img, arr / divisor, atol=1e-7)
    assert ("12-bit" in capsys.readouterr().err) == (divisor == 4095.0)


def test_multipage_tiff_notice_and_page_choice(tmp_path, capsys):
    pages = [Image.fromarray(np.full((4, 5), v, np.uint8)) for v in (10, 20, 30)]
    path = tmp_path / "stack.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    img, meta = read_image(path)
    assert np.allclose(img, 10 / 255) and meta["pages"] == 3 and meta["page"] == 0
    assert "multipage TIFF with 3 pages; using page 0" in capsys.readouterr().err
    img, meta = read_image(path, frame=2)
    assert np.allclose(img, 30 / 255) and meta["page"] == 2
    assert capsys.readouterr().err == ""  # chosen, so nothing to say
    with pytest.raises(InputError, match="page 3 out of range") as err:
        read_image(path, frame=3)
    assert "\n" not in str(err.value)
    pages[1].save(tmp_path / "one.tif")
    assert np.allclose(read_image(tmp_path / "one.tif")[0], 20 / 255) and capsys.readouterr().err == ""


def test_4d_nifti_notice_names_4d_volume_and_slice(capsys):
    import nibabel as nib

    path = _nibabel_file("example4d.nii.gz")
    img, meta = read_image(path)
    err = capsys.readouterr().err
    assert "4D volume (128, 96, 24, 2)" in err and "using volume 0 and the middle slice 12 along axis 2" in err
    assert "3D volume" not in err and len(err.splitlines()) == 1
    volume = np.asanyarray(nib.load(path).dataobj).astype(np.float32)[..., 0]  # scaled over volume 0
    expected = (volume[:, :, 12] - volume.min()) / (volume.max() - volume.min())
    np.testing.assert_allclose(img, expected.T[::-1], atol=1e-6)
    assert meta["volume_index"] == 0 and meta["slice_index"] == 12
    read_image(path, volume_index=1, slice_index=3)
    assert capsys.readouterr().err == ""
    read_image(path, slice_index=3)
    assert "using volume 0 (choose with volume_index=)" in capsys.readouterr().err
    read_image(_nibabel_file("anatomical.nii"))
    assert "3D volume (33, 41, 25); using the middle slice 12" in capsys.readouterr().err


# --- 4. checkpoints: the file, the flag, and a pickled whole model ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_state():
    from common.models import build_densenet

    torch.manual_seed(0)
    return build_densenet("tiny").state_dict()


def test_wrong_arch_names_the_file_and_the_flag(tmp_path, tiny_state):
    from common.models import build_densenet, load_weights, read_checkpoint
    from common.tasks.bone_demo import load_classifier

    path = tmp_path / "tiny.pt"
    torch.save({"model": tiny_state}, path)
    attempts = {
        "path": lambda: load_weights(build_densenet("mini"), path),
        "read_checkpoint": lambda: load_weights(build_densenet("mini"), read_checkpoint(path)),
        "--arch mini": lambda: load_classifier(path, torch.device("cpu"), arch="mini"),  # what the scripts do
    }
    for how, attempt in attempts.items():
        with pytest.raises(InputError) as err:
            attempt()
        text = str(err.value)
        assert text.startswith(f"{path}: checkpoint does not match mini"), how
        assert text.endswith("the checkpoint looks like tiny: pass --arch tiny") and "\n" not in text, how
    with pytest.raises(InputError, match="^state dict: .*pass --arch tiny"):  # in memory: no file to name
        load_weights(build_densenet("mini"), tiny_state)


@pytest.mark.parametrize("zipped", [True, False])
def test_pickled_whole_model_is_named_so(tmp_path, tiny_state, zipped):
    from common.engine.checkpoint import pickled_module
    from common.models import build_densenet, load_weights

    model = build_densenet("tiny")
    model.load_state_dict(tiny_state)
    torch.save(model, tmp_path / "whole.pt", _use_new_zipfile_serialization=zipped)
    with pytest.raises(InputError) as err:
        load_weights(build_densenet("tiny"), tmp_path / "whole.pt")
    text = str(err.value)
    assert text.startswith(str(tmp_path / "whole.pt")) and "\n" not in text
    assert "a pickled whole model, not a state_dict" in text and "save model.state_dict() instead" in text
    assert "truncated" not in text
    # the fix the message gives works, and a plain state_dict is not mistaken for a model
    torch.save(model.state_dict(), tmp_path / "sd.pt", _use_new_zipfile_serialization=zipped)
    assert not pickled_module(tmp_path / "sd.pt")
    loaded = load_weights(build_densenet("tiny"), tmp_path / "sd.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), tiny_state.values()))


def test_other_refused_objects_and_cut_files_keep_their_diagnosis(tmp_path, tiny_state):
    from common.engine.checkpoint import pickled_module
    from common.models import build_densenet, load_weights

    torch.save({"model": tiny_state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "ns.pt")
    with pytest.raises(InputError, match="pickles the Python object argparse.Namespace"):
        load_weights(build_densenet("tiny"), tmp_path / "ns.pt")
    torch.save(build_densenet("tiny"), tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    assert not pickled_module(tmp_path / "cut.pt")  # never raises, whatever the bytes
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_weights(build_densenet("tiny"), tmp_path / "cut.pt")


@pytest.mark.parametrize("script", ["00_Interpretability/train.py", "00_Interpretability/shortcut.py",
                                    "01_WeaklySupervised/train_sizeloss.py"])
@pytest.mark.parametrize("argv, expected", [(["--epochs", "0"], "--epochs: must be >= 1, got 0"),
                                            (["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
                                            (["--workers", "-1"], "--workers: must be >= 0, got -1")])
def test_training_flags_below_their_minimum_are_one_line(tmp_path, script, argv, expected):
    # before: train.py turned --epochs 0 into 30, --batch-size 0 ended in a ZeroDivisionError traceback
    out = tmp_path / "out"
    folder, name = script.removesuffix(".py").split("/")
    r = run_main(folder, name, "--quick", *argv, "--out", out)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and expected in lines[0], r.stderr
    assert not out.exists()


@pytest.mark.parametrize("has_resume, checkpoint, expected", [
    (True, True, "rerun with --resume to continue from the last checkpoint"),
    (True, False, "no checkpoint was written yet; rerun to start again"),
    (False, False, "rerun the same command"),
])
def test_ctrl_c_says_what_to_do_next(tmp_path, capsys, has_resume, checkpoint, expected):
    import argparse

    from common.errors import cli_main

    if checkpoint:
        (tmp_path / "row" / "seed0").mkdir(parents=True)
        (tmp_path / "row" / "seed0" / "last.pt").write_bytes(b"x")
    args = argparse.Namespace(out=tmp_path, **({"resume": False} if has_resume else {}))

    def main(_):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        cli_main(main, args)
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 130 and err == f"interrupted: {err.split(': ', 1)[1]}" and expected in err
