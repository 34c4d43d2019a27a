"""common.data.datasets: tiny trees in the exact published layouts, written here, loaded back and checked by hand."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from common.data.datasets import ACDC, DATASETS, MURA, REFUGE, CSVImages, ImageFolder, ImageMaskPairs, build_dataset
from common.data.datasets.files import group_split, resize_mask
from common.data.datasets.refuge import decode_refuge_mask
from common.errors import InputError
from common.io import read_image


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


# ------------------------------------------------------------------ MURA

MURA_IMAGES = [  # (body part, patient, study, n images)
    ("XR_SHOULDER", "patient00001", "study1_positive", 2),
    ("XR_SHOULDER", "patient00002", "study1_negative", 1),
    ("XR_WRIST", "patient00002", "study1_positive", 1),
    ("XR_WRIST", "patient00003", "study2_negative", 3),
]


def _mura(tmp_path: Path, labeled_override: dict | None = None) -> Path:
    base = tmp_path / "mura"
    for split in ("train", "valid"):
        paths, studies = [], []
        for part, patient, study, n in MURA_IMAGES:
            study_dir = f"MURA-v1.1/{split}/{part}/{patient}/{study}/"
            label = int(study.endswith("positive"))
            studies.append(f"{study_dir},{(labeled_override or {}).get(study_dir, label)}")
            for k in range(1, n + 1):
                arr = np.zeros((10, 20), np.uint8)  # non-square: wider than tall, like many radiographs
                arr[:, :] = 255
                _png(base / study_dir / f"image{k}.png", arr)
                paths.append(study_dir + f"image{k}.png")
        (base / "MURA-v1.1" / f"{split}_image_paths.csv").write_text("\n".join(paths) + "\n")
        (base / "MURA-v1.1" / f"{split}_labeled_studies.csv").write_text("\n".join(studies) + "\n")
    return base


def test_mura_labels_studies_and_padding(tmp_path):
    base = _mura(tmp_path)
    ds = MURA(base, split="train", size=None)
    assert len(ds) == 7 and ds.labels.tolist() == [1, 1, 0, 1, 0, 0, 0]
    assert [(s.label, s.indices) for s in ds.studies] == [(1, (0, 1)), (0, (2,)), (1, (3,)), (0, (4, 5, 6))]
    item = ds[0]
    assert item["image"].shape == (1, 20, 20) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["mask"].dtype == torch.uint8 and not item["mask"].any()
    # 10 x 20 white image centred on a 20 x 20 black canvas: rows 5..14 white.
    expected = np.zeros((20, 20), np.float32)
    expected[5:15] = 1.0
    np.testing.assert_array_equal(item["image"][0].numpy(), expected)
    study = "MURA-v1.1/train/XR_SHOULDER/patient00001/study1_positive"
    assert item["meta"] == {"body_part": "XR_SHOULDER", "patient": "patient00001", "study": study,
                            "study_id": 0, "path": study + "/image1.png", "split": "train"}
    assert ds.records[3]["study"] == "MURA-v1.1/train/XR_WRIST/patient00002/study1_positive"
    # The root may also be MURA-v1.1/ itself, and "val" means MURA's "valid".
    assert len(MURA(base / "MURA-v1.1", split="val", size=8)) == 7


def test_mura_body_part_filter_study_level_and_study_scores(tmp_path):
    base = _mura(tmp_path)
    wrist = MURA(base, split="valid", size=16, body_parts=["XR_WRIST"])
    assert len(wrist) == 4 and {wrist.items[i]["body_part"] for i in range(4)} == {"XR_WRIST"}
    studies = MURA(base, split="valid", size=16, body_parts=["XR_WRIST"], level="study")
    assert len(studies) == 2
    s = studies[1]
    assert s["image"].shape == (3, 1, 16, 16) and s["mask"].shape == (3, 16, 16) and s["meta"]["n_images"] == 3
    assert int(s["label"]) == 0
    probs, labels = wrist.study_predictions([0.9, 0.2, 0.4, 0.6])
    np.testing.assert_allclose(probs, [0.9, 0.4])
    assert labels.tolist() == [1, 0]
    batch = next(iter(DataLoader(wrist, batch_size=4)))
    assert batch["image"].shape == (4, 1, 16, 16) and batch["meta"]["body_part"] == ["XR_WRIST"] * 4


def test_mura_errors(tmp_path):
    with pytest.raises(InputError, match=r"MURA-v1.1/train_image_paths.csv not found under .* -- pass the folder"):
        MURA(tmp_path, split="train")
    base = _mura(tmp_path / "a")
    with pytest.raises(InputError, match="unknown MURA body part 'XR_KNEE'"):
        MURA(base, body_parts=["XR_KNEE"])
    bad = _mura(tmp_path / "b", {"MURA-v1.1/train/XR_WRIST/patient00002/study1_positive/": 0})
    with pytest.raises(InputError, match="study1_positive/ is labelled 0 but its folder name says 1"):
        MURA(bad)
    (base / "MURA-v1.1" / "train" / "XR_SHOULDER" / "patient00001" / "study1_positive" / "image1.png").unlink()
    with pytest.raises(InputError, match="image1.png .first row of train_image_paths.csv. not found"):
        MURA(base)


# ------------------------------------------------------------------ ACDC

def _acdc(tmp_path: Path, n_patients: int = 5, sub: str = "training") -> Path:
    root = tmp_path / "ACDC"
    rng = np.random.default_rng(0)
    for p in range(1, n_patients + 1):
        folder = root / sub / f"patient{p:03d}"
        folder.mkdir(parents=True)
        ed, es = 1, 4 + p
        (folder / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: {'DCM' if p % 2 else 'NOR'}\n"
                                         f"Height: 170.0\nNbFrame: 20\nWeight: 70.0\n")
        for frame, depth in ((ed, 3), (es, 2 + p % 2)):
            vol = rng.uniform(0, 500, (12, 10, depth)).astype(np.float32)  # (x, y, slices), non-square in-plane
            gt = np.zeros((12, 10, depth), np.uint8)
            gt[2:6, 3:7, :] = 3
            gt[6:9, 3:7, :] = 2
            gt[9:11, 1:4, 0] = 1
            affine = np.diag([1.5, 1.25, 8.0, 1.0])
            nib.save(nib.Nifti1Image(vol, affine), folder / f"patient{p:03d}_frame{frame:02d}.nii.gz")
            nib.save(nib.Nifti1Image(gt, affine), folder / f"patient{p:03d}_frame{frame:02d}_gt.nii.gz")
    return root


def test_acdc_slices_match_common_io_and_normalise(tmp_path):
    root = _acdc(tmp_path)
    ds = ACDC(root, split="all", size=None)
    n_expected = sum(3 + (2 + p % 2) for p in range(1, 6))
    assert len(ds) == n_expected and len(ds.volumes) == 10
    item = ds[1]
    meta = item["meta"]
    assert meta["patient"] == "patient001" and meta["phase"] == "ED" and meta["slice"] == 1 and meta["n_slices"] == 3
    assert meta["frame"] == 1 and meta["group"] == "DCM" and meta["spacing_slice"] == 8.0
    # Oracle: common.io.read_image's slice of the same file, padded to square by hand (rows = y = 10 -> 12).
    gt_path = root / "training/patient001/patient001_frame01_gt.nii.gz"
    ref, _ = read_image(gt_path, normalize=False, slice_index=1)
    assert ref.shape == (10, 12)
    expected = np.zeros((12, 12), np.int64)
    expected[1:11] = ref.astype(np.int64)
    assert item["mask"].dtype == torch.int64 and item["image"].shape == (1, 12, 12)
    np.testing.assert_array_equal(item["mask"].numpy(), expected)
    # Intensity: clip the whole volume at its 1st/99th percentiles, rescale to [0, 1].
    vol = np.asarray(nib.load(str(root / "training/patient001/patient001_frame01.nii.gz")).dataobj)
    lo, hi = np.percentile(vol, [1, 99])
    raw, _ = read_image(root / "training/patient001/patient001_frame01.nii.gz", normalize=False, slice_index=1)
    np.testing.assert_allclose(item["image"][0, 1:11].numpy(), np.clip((raw - lo) / (hi - lo), 0, 1), atol=1e-6)


def test_acdc_patient_split_volumes_and_phases(tmp_path):
    root = _acdc(tmp_path)
    train = ACDC(root, split="train", size=16, val_fraction=0.4, seed=3)
    val = ACDC(root, split="val", size=16, val_fraction=0.4, seed=3)
    assert set(train.patients).isdisjoint(val.patients)
    assert sorted(train.patients + val.patients) == [f"patient{p:03d}" for p in range(1, 6)]
    assert len(val.patients) == 2
    assert ACDC(root, split="val", val_fraction=0.4, seed=3).patients == val.patients  # same seed, same split
    splits = {tuple(sorted(group_split(range(20), 0.3, seed)[1])) for seed in range(5)}
    assert len(splits) > 1  # the seed matters
    slice_patients = {train[i]["meta"]["patient"] for i in range(len(train))}
    assert slice_patients == set(train.patients)
    es = ACDC(root, split="all", mode="volume", size=16, phases="ES")
    assert len(es) == 5 and all(v["phase"] == "ES" for v in es.volumes)
    item = es[0]
    assert item["image"].shape == (1, 3, 16, 16) and item["mask"].shape == (3, 16, 16)
    assert set(torch.unique(item["mask"]).tolist()) <= {0, 1, 2, 3} and float(item["image"].max()) <= 1.0
    batch = next(iter(DataLoader(train, batch_size=3)))
    assert batch["image"].shape == (3, 1, 16, 16) and batch["mask"].shape == (3, 16, 16)
    test = ACDC(_acdc(tmp_path / "t", 2, "testing"), split="test", size=16)
    assert test.patients == ["patient001", "patient002"]


def test_acdc_errors(tmp_path):
    with pytest.raises(InputError, match="training/patientNNN/Info.cfg not found under"):
        ACDC(tmp_path)
    root = _acdc(tmp_path / "a", 2)
    (root / "training/patient002/patient002_frame06_gt.nii.gz").unlink()
    with pytest.raises(InputError, match="patient002_frame06_gt.nii.gz not found in"):
        ACDC(root, split="all")
    (root / "training/patient001/Info.cfg").unlink()
    with pytest.raises(InputError, match="patient001/Info.cfg not found under"):
        ACDC(root, split="all")
    with pytest.raises(InputError, match="unknown cardiac phase 'MID'"):
        ACDC(root, phases="MID")


# ------------------------------------------------------------------ REFUGE

def _refuge_mask(h=24, w=20, disc=(4, 16), cup=(8, 12)) -> np.ndarray:
    """Hand-made REFUGE mask: disc rows disc[0]..disc[1]-1 (12 px tall), cup rows 8..11 (4 px)."""
    m = np.full((h, w), 255, np.uint8)
    m[disc[0]:disc[1], 6:14] = 128
    m[cup[0]:cup[1], 8:12] = 0
    return m


def _fundus(path: Path, h=24, w=20):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = 200
    _png(path, rgb)


def _refuge(tmp_path: Path) -> Path:
    root = tmp_path / "REFUGE"
    for cls, name in (("Glaucoma", "g0001"), ("Non-Glaucoma", "n0001"), ("Non-Glaucoma", "n0002")):
        _fundus(root / "Training400" / cls / f"{name}.jpg")
        _png(root / "Annotation-Training400/Disc_Cup_Masks" / cls / f"{name}.bmp", _refuge_mask())
    _fundus(root / "REFUGE-Validation400/V0001.jpg")
    _png(root / "REFUGE-Validation400-GT/Disc_Cup_Masks/V0001.bmp", _refuge_mask(cup=(6, 12)))
    for g, name in (("G", "T0001"), ("N", "T0002")):
        _fundus(root / "Test400" / f"{name}.jpg")
        _png(root / "REFUGE-Test-GT/Disc_Cup_Masks" / g / f"{name}.bmp", _refuge_mask())
    return tmp_path


def test_refuge_published_layout_domains_labels_and_cdr(tmp_path):
    top = _refuge(tmp_path)
    train = REFUGE(top, split="train", size=None)  # root may be the parent of REFUGE/
    assert len(train) == 3 and train.layout == "published"
    item = train[0]
    assert item["image"].shape == (3, 24, 24) and item["mask"].dtype == torch.uint8
    assert item["meta"]["domain"] == "A" and item["meta"]["glaucoma"] == 1 and item["meta"]["name"] == "g0001"
    assert [train[i]["meta"]["glaucoma"] for i in range(3)] == [1, 0, 0]
    assert float(item["cdr"]) == pytest.approx(4 / 12)  # cup 4 rows tall, disc 12 rows tall
    seg = item["seg"].numpy()
    assert seg.dtype == np.int64 and (seg == 2).sum() == 4 * 4 and (seg >= 1).sum() == 12 * 8
    # Padding to square adds background (255) columns on both sides: 24 x 20 -> 24 x 24.
    assert (item["mask"][:, :2] == 255).all() and (item["mask"][:, 22:] == 255).all()
    val = REFUGE(top / "REFUGE", split="val", size=12)
    assert val[0]["meta"]["domain"] == "B" and val[0]["meta"]["glaucoma"] == -1
    assert float(val[0]["cdr"]) == pytest.approx(6 / 12)
    assert set(torch.unique(val[0]["mask"]).tolist()) <= {0, 128, 255} and val[0]["image"].shape == (3, 12, 12)
    test = REFUGE(top, split="test", size=12)
    assert [test[i]["meta"]["glaucoma"] for i in range(2)] == [1, 0] and test[0]["meta"]["camera"] == "Canon CR-2"
    batch = next(iter(DataLoader(train, batch_size=3)))
    assert batch["cdr"].shape == (3,) and batch["meta"]["domain"] == ["A"] * 3


def test_refuge_mask_decoding_and_simplified_layout(tmp_path):
    noisy = _refuge_mask().astype(np.int16) + np.random.default_rng(0).integers(-20, 21, (24, 20))
    np.testing.assert_array_equal(decode_refuge_mask(np.clip(noisy, 0, 255)), _refuge_mask())
    for split in ("train", "val"):
        _fundus(tmp_path / split / "images" / "eye1.png")
        _png(tmp_path / split / "masks" / "eye1.png", _refuge_mask())
    ds = REFUGE(tmp_path, split="val", size=24)
    assert ds.layout == "simplified" and ds[0]["meta"]["domain"] == "B" and ds[0]["meta"]["glaucoma"] == -1
    assert REFUGE(tmp_path, split="train", size=24)[0]["meta"]["domain"] == "A"


def test_refuge_errors(tmp_path):
    with pytest.raises(InputError, match=r"Training400/ \(published layout\) or train/images/ \(simplified\) not"):
        REFUGE(tmp_path)
    top = _refuge(tmp_path / "x")
    (top / "REFUGE/Annotation-Training400/Disc_Cup_Masks/Glaucoma/g0001.bmp").unlink()
    with pytest.raises(InputError, match="no mask named g0001.bmp under Annotation-Training400/Disc_Cup_Masks/"):
        REFUGE(top)
    import shutil

    shutil.rmtree(top / "REFUGE/REFUGE-Validation400-GT")
    with pytest.raises(InputError, match="REFUGE-Validation400-GT/Disc_Cup_Masks/ not found under"):
        REFUGE(top, split="val")
    _png(top / "REFUGE/REFUGE-Test-GT/Disc_Cup_Masks/G/T0001.bmp", _refuge_mask(h=10))
    with pytest.raises(InputError, match="mask size .10, 20. differs from its image's .24, 20."):
        REFUGE(top, split="test")[0]


# ------------------------------------------------------------------ generic layouts and the registry

def test_image_folder_and_csv(tmp_path):
    for cls, value in (("normal", 10), ("abnormal", 240)):
        for k in range(2):
            _png(tmp_path / "train" / cls / f"{k}.png", np.full((8, 6), value, np.uint8))
    ds = ImageFolder(tmp_path, split="train", size=8)
    assert ds.classes == ["abnormal", "normal"] and ds.labels.tolist() == [0, 0, 1, 1]
    item = ds[0]
    assert item["image"].shape == (1, 8, 8) and item["meta"]["class_name"] == "abnormal"
    assert float(item["image"][0, 4, 4]) == pytest.approx(240 / 255)
    assert ImageFolder(tmp_path / "train", size=8, channels=3)[2]["image"].shape == (3, 8, 8)
    csv_file = tmp_path / "lists" / "train.csv"
    csv_file.parent.mkdir()
    csv_file.write_text("path,label\n../train/normal/0.png,1\n../train/abnormal/1.png,0\n")
    listed = CSVImages(tmp_path / "lists", split="train", size=8)
    assert listed.labels.tolist() == [1, 0] and float(listed[0]["image"][0, 4, 4]) == pytest.approx(10 / 255)
    csv_file.write_text("../train/normal/0.png,1\nmissing.png,0\n")
    with pytest.raises(InputError, match="line 2: missing.png not found next to the CSV"):
        CSVImages(csv_file)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no class subfolders in"):
        ImageFolder(tmp_path / "empty")


def test_image_mask_pairs(tmp_path):
    mask = np.zeros((6, 6), np.uint8)
    mask[1:3, 2:5] = 255
    _png(tmp_path / "images" / "a.png", np.full((6, 6), 100, np.uint8))
    _png(tmp_path / "masks" / "a.png", mask)
    item = ImageMaskPairs(tmp_path, size=12)[0]
    assert item["mask"].dtype == torch.int64 and item["image"].shape == (1, 12, 12)
    np.testing.assert_array_equal(item["mask"].numpy(), np.kron(mask // 255, np.ones((2, 2), np.uint8)))
    _png(tmp_path / "images" / "b.png", np.zeros((6, 6), np.uint8))
    with pytest.raises(InputError, match="no mask named b.. in masks/ for b.png"):
        ImageMaskPairs(tmp_path)


def test_registry_and_nearest_resize():
    assert set(DATASETS) == {"mura", "acdc", "refuge", "folder", "csv", "pairs"}
    with pytest.raises(InputError, match="unknown dataset 'imagenet'"):
        build_dataset("imagenet", "/x")
    with pytest.raises(InputError, match="pass --data-root"):
        build_dataset("mura", None)
    labels = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(resize_mask(labels, 2), labels[[0, 2]][:, [0, 2]] + 5)  # centres of 2x2 blocks
    np.testing.assert_array_equal(resize_mask(labels, 8), np.kron(labels, np.ones((2, 2), int)))
