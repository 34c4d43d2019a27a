"""common.io: every format and every bad-input case, on real files written in the test."""

import numpy as np
import pytest
from PIL import Image

from common.errors import InputError
from common.io import list_images, read_image, save_json
from common.io.reader import WINDOW_PRESETS


def _png(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def test_8bit_gray_png_roundtrip(tmp_path):
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    img, meta = read_image(_png(tmp_path / "a.png", arr))
    assert img.dtype == np.float32 and img.shape == (8, 8)
    np.testing.assert_allclose(img, arr / 255.0, atol=1e-7)
    assert meta["bit_depth"] == 8


def test_16bit_png_keeps_full_range(tmp_path):
    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    path = tmp_path / "b16.png"
    Image.fromarray(arr).save(path)
    img, meta = read_image(path)
    assert meta["bit_depth"] == 16
    np.testing.assert_allclose(img, arr / 65535.0, atol=1e-6)
    raw, _ = read_image(path, normalize=False)
    assert raw.max() == 63000


def test_rgba_drops_alpha_and_palette_gray_becomes_gray(tmp_path):
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    img, meta = read_image(_png(tmp_path / "rgba.png", rgba))
    assert img.shape == (6, 6, 3) and meta["alpha_dropped"] and np.allclose(img[..., 0], 200 / 255)
    gray = Image.fromarray(np.arange(36, dtype=np.uint8).reshape(6, 6) * 7).convert("P")
    gray.save(tmp_path / "pal.png")
    img, meta = read_image(tmp_path / "pal.png")
    assert meta["mode"] == "P" and img.shape == (6, 6)
    colour = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.Palette.ADAPTIVE)
    colour.save(tmp_path / "palc.png")
    assert read_image(tmp_path / "palc.png")[0].shape == (6, 6, 3)


def test_gray_flag_converts_rgb(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 255
    img, _ = read_image(_png(tmp_path / "g.png", rgb), gray=True)
    assert img.shape == (4, 4) and np.allclose(img, 0.587, atol=1e-6)


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".tif"])
def test_other_raster_formats(tmp_path, ext):
    arr = (np.random.default_rng(0).random((16, 16)) * 255).astype(np.uint8)
    path = tmp_path / f"x{ext}"
    Image.fromarray(arr).save(path)
    img, _ = read_image(path)
    assert img.shape == (16, 16) and 0 <= img.min() and img.max() <= 1


def test_missing_file_and_folder_and_extension(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(InputError, match="unsupported file extension '.gif'"):
        read_image(tmp_path / "x.gif")


def test_corrupt_png_and_truncated_jpeg(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(InputError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    arr = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_image(tmp_path / "cut.jpg")


def _dicom(path, pixels, photometric="MONOCHROME2", slope=1.0, intercept=0.0, with_pixels=True, window=None):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
    if with_pixels:
        frames = pixels.shape[0] if pixels.ndim == 3 else 1
        ds.Rows, ds.Columns = pixels.shape[-2:]
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_dicom_rescale_and_windows(tmp_path):
    raw = np.array([[0, 1000], [2000, 3000]], np.uint16)
    path = _dicom(tmp_path / "ct.dcm", raw, slope=1.0, intercept=-1024.0)
    hu, meta = read_image(path, normalize=False)
    np.testing.assert_allclose(hu, raw - 1024.0)
    assert meta["modality"] == "CT"
    img, meta = read_image(path, window="soft_tissue")  # centre 40, width 400 -> [-160, 240]
    c, w = WINDOW_PRESETS["soft_tissue"]
    np.testing.assert_allclose(img, np.clip((hu - (c - w / 2)) / w, 0, 1), atol=1e-6)
    img, _ = read_image(path, window=(0.0, 2000.0))
    np.testing.assert_allclose(img, np.clip((hu + 1000) / 2000, 0, 1), atol=1e-6)
    with pytest.raises(InputError, match="unknown window preset"):
        read_image(path, window="liverish")


def test_dicom_file_window_used_by_default(tmp_path):
    raw = np.array([[0, 150], [200, 300]], np.uint16)
    img, meta = read_image(_dicom(tmp_path / "w.dcm", raw, window=(150, 100)))  # [100, 200] -> [0, 1]
    assert meta["window"] == (150.0, 100.0)
    np.testing.assert_allclose(img, [[0, 0.5], [1, 1]], atol=1e-6)


def test_dicom_monochrome1_is_inverted(tmp_path):
    raw = np.array([[0, 100], [200, 300]], np.uint16)
    m2, _ = read_image(_dicom(tmp_path / "m2.dcm", raw))
    m1, meta = read_image(_dicom(tmp_path / "m1.dcm", raw, photometric="MONOCHROME1"))
    assert meta["inverted"]
    np.testing.assert_allclose(m1, 1 - m2, atol=1e-6)
    assert m1[0, 0] == 1.0  # lowest stored value is displayed white in MONOCHROME1


def test_dicom_multiframe_and_frame_index(tmp_path, capsys):
    raw = np.stack([np.full((3, 3), v, np.uint16) for v in (10, 20, 30)])
    path = _dicom(tmp_path / "mf.dcm", raw)
    img, meta = read_image(path, frame=2, normalize=False)
    assert meta["frames"] == 3 and np.all(img == 30)
    read_image(path, normalize=False)
    assert "using frame 0" in capsys.readouterr().err
    with pytest.raises(InputError, match="frame 5 out of range"):
        read_image(path, frame=5)


def test_dicom_without_pixel_data_and_not_dicom(tmp_path):
    path = _dicom(tmp_path / "nopix.dcm", np.zeros((2, 2)), with_pixels=False)
    with pytest.raises(InputError, match="no pixel data"):
        read_image(path)
    (tmp_path / "junk.dcm").write_bytes(b"hello world" * 10)
    with pytest.raises(InputError, match="junk.dcm"):
        read_image(tmp_path / "junk.dcm")


def test_nifti_2d_3d_4d(tmp_path, capsys):
    import nibabel as nib

    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    img, meta = read_image(tmp_path / "v.nii.gz")
    assert "middle slice 3" in capsys.readouterr().err
    assert img.shape == (5, 4) and meta["slice_index"] == 3  # (x, y) shown as rows=y
    raw, _ = read_image(tmp_path / "v.nii.gz", slice_index=1, normalize=False)
    np.testing.assert_array_equal(raw, vol[:, :, 1].T[::-1])
    img, meta = read_image(tmp_path / "v.nii.gz", slice_index=1)
    np.testing.assert_allclose(img, vol[:, :, 1].T[::-1] / vol.max(), atol=1e-6)  # scaled by the whole volume
    assert meta["raw_range"] == (float(vol[:, :, 1].min()), float(vol[:, :, 1].max()))  # the stored values
    with pytest.raises(InputError, match="slice 9 out of range"):
        read_image(tmp_path / "v.nii.gz", slice_index=9)
    nib.save(nib.Nifti1Image(np.stack([vol, vol * 2], -1), np.eye(4)), tmp_path / "t.nii")
    raw, meta = read_image(tmp_path / "t.nii", slice_index=0, volume_index=1, normalize=False)
    np.testing.assert_array_equal(raw, (2 * vol[:, :, 0]).T[::-1])
    # one slice over time (x, y, 1, t): frame 0 of the series, not the middle "slice" of the time axis
    series = np.stack([vol[:, :, :1] * (t + 1) for t in range(6)], -1)  # (4, 5, 1, 6)
    nib.save(nib.Nifti1Image(series, np.eye(4)), tmp_path / "cine.nii")
    raw, meta = read_image(tmp_path / "cine.nii", normalize=False)
    assert "one slice over time); using volume 0" in capsys.readouterr().err
    np.testing.assert_array_equal(raw, vol[:, :, 0].T[::-1])
    assert meta["volume_index"] == 0 and "slice_index" not in meta
    raw, _ = read_image(tmp_path / "cine.nii", volume_index=3, normalize=False)
    np.testing.assert_array_equal(raw, (4 * vol[:, :, 0]).T[::-1])
    nib.save(nib.Nifti1Image(vol[..., None], np.eye(4)), tmp_path / "one_frame.nii")  # (x, y, z, 1): a 3D volume
    raw, meta = read_image(tmp_path / "one_frame.nii", slice_index=2, normalize=False)
    np.testing.assert_array_equal(raw, vol[:, :, 2].T[::-1])
    assert "volume_index" not in meta
    nib.save(nib.Nifti1Image(vol[:, :, 0], np.eye(4)), tmp_path / "flat.nii")
    assert read_image(tmp_path / "flat.nii")[0].shape == (5, 4)
    (tmp_path / "cut.nii.gz").write_bytes((tmp_path / "v.nii.gz").read_bytes()[:40])
    with pytest.raises(InputError, match="cut.nii.gz"):
        read_image(tmp_path / "cut.nii.gz")


def test_list_images_files_folders_globs(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    for p in (tmp_path / "a.png", sub / "b.jpg"):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(p)
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.jpg"]
    assert [p.name for p in list_images(str(tmp_path / "*.png"))] == ["a.png"]
    assert len(list_images([tmp_path / "a.png", tmp_path / "a.png"])) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="folder holds no image files"):
        list_images(empty)
    with pytest.raises(InputError, match="pattern matches no image files"):
        list_images(str(tmp_path / "*.dcm"))
    with pytest.raises(InputError, match="unsupported file extension '.txt'"):
        list_images(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="no such file or folder"):
        list_images(tmp_path / "missing")


def test_unwritable_output_dir(tmp_path):
    from common.runtime import make_out_dir

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not writable"):
        make_out_dir(blocker / "sub")
    with pytest.raises(InputError, match="cannot write here"):
        save_json(blocker / "sub" / "m.json", {"a": 1})


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
    from common.io import atomic_path

    target = tmp_path / "x.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
