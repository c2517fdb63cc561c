"""Synthetic lesions in real slices: where they land, what they leave alone, their contrast and noise."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from kidneyct.synthetic.phantom import render_slice, sample_patient
from kidneyct.preprocess.window import apply_window
from kidneyct.synthetic.lesions import LesionModel, insert_lesions, render_lesions

SIZE = 128
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
KAGGLE = SHARED / "ct-kidney"
REAL_CT = SHARED / "real-ct-examples" / "abdomen-ct-30slices.nii.gz"


def phantom_hu(n: int, seed: int = 0, cortex: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HU slices [n, S, S] of normal phantoms and their true kidney masks; `cortex` fixes an enhanced
    phase with that cortical density (so that a narrow window does not clip the kidney)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    slices, masks = [], []
    for _ in range(n):
        patient = sample_patient(rng, SIZE)
        if cortex is not None:
            patient.enhanced = True
            patient.phase_hu.update(cortex=cortex, medulla_drop=10.0)
        slices.append(render_slice(patient, 0.0)[0])
        masks.append(np.any([kidney.r2(xx, yy) <= 1 for kidney in patient.kidneys], axis=0))
    return np.stack(slices), np.stack(masks)


def windowed(hu: np.ndarray, level: float = 40, width: float = 400) -> torch.Tensor:
    return torch.from_numpy(apply_window(hu, level, width))[:, None]


@pytest.fixture(scope="module")
def phantoms() -> tuple[torch.Tensor, torch.Tensor]:
    hu, masks = phantom_hu(8)
    return windowed(hu), torch.from_numpy(masks)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def all_of(images: torch.Tensor) -> torch.Tensor:
    return torch.ones(images.shape[0], dtype=torch.bool)


def reach(inserted, index: int) -> np.ndarray:
    """The lesion mask dilated by its soft edge: where the image may have changed."""
    mask = inserted.masks[index].numpy()
    edge = int(np.ceil(LesionModel().tumor_edge * float(inserted.radii[index]))) + 2
    return ndimage.binary_dilation(mask, iterations=edge)


def check_inside_kidney(inserted, images: torch.Tensor, masks: torch.Tensor) -> None:
    """Each lesion grows from a kidney pixel, holds it, overlaps the kidney and changes nothing beyond
    its soft edge."""
    for i in range(images.shape[0]):
        row, col = inserted.centres[i].long().tolist()
        assert masks[i, row, col], f"image {i}: centre ({row}, {col}) outside the kidney mask"
        assert inserted.masks[i, row, col], f"image {i}: the lesion does not hold its centre"
        assert (inserted.masks[i] & masks[i]).sum() > 0
        changed = (inserted.images[i, 0] != images[i, 0]).numpy()
        assert not (changed & ~reach(inserted, i)).any(), f"image {i} changed outside its lesion"


@pytest.mark.parametrize("kind", ["tumor", "cyst"])
def test_lesions_grow_from_the_kidney_and_overlap_it(phantoms, kind):
    images, masks = phantoms
    inserted = render_lesions(images, masks, all_of(images), kind, generator())
    assert inserted.applied.all() and inserted.masks.flatten(1).any(1).all()
    check_inside_kidney(inserted, images, masks)
    model = LesionModel()
    share = inserted.radii / inserted.kidney_radius  # sizes relative to the kidney, at most the model's
    high = model.cyst_radius[1] if kind == "cyst" else model.tumor_radius[1]  # (less near the body wall)
    assert (share <= high + 1e-4).all() and share.mean() > (0.4 if kind == "cyst" else 0.9)
    for i in range(images.shape[0]):  # lesions stay inside the body
        body = ndimage.binary_fill_holes(images[i, 0].numpy() > 0.05)
        assert not (inserted.masks[i].numpy() & ~body).any()


def test_unapplied_and_kidneyless_images_are_left_bit_identical(phantoms):
    images, masks = phantoms
    masks = masks.clone()
    masks[1] = False  # the locator found nothing here
    apply = torch.tensor([True, True, False, True, False, True, True, True])
    out, lesions = insert_lesions(images, masks, apply, "tumor", generator())
    for i in (1, 2, 4):
        assert torch.equal(out[i], images[i]) and not lesions[i].any()
    for i in (0, 3, 5, 6, 7):
        assert lesions[i].any() and not torch.equal(out[i], images[i])


def test_same_generator_gives_the_same_lesions_and_other_seeds_others(phantoms):
    images, masks = phantoms
    first = insert_lesions(images, masks, all_of(images), "tumor", generator(7))
    again = insert_lesions(images, masks, all_of(images), "tumor", generator(7))
    other = insert_lesions(images, masks, all_of(images), "tumor", generator(8))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0]) and not torch.equal(first[1], other[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_keeps_shape_dtype_device_and_range(phantoms, dtype):
    images, masks = phantoms
    images = images.to(dtype)
    out, lesions = insert_lesions(images, masks, all_of(images), "tumor", generator())
    assert out.shape == images.shape and out.dtype == dtype and out.device == images.device
    assert lesions.shape == masks.shape and lesions.dtype == torch.bool
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_the_gpu_like_on_the_cpu(phantoms):
    images, masks = phantoms
    device = torch.device("cuda")
    out, lesions = insert_lesions(images.to(device), masks.to(device), all_of(images).to(device), "tumor",
                                  torch.Generator(device=device).manual_seed(0))
    assert out.device.type == "cuda" and lesions.device.type == "cuda"
    assert out.min() >= 0 and out.max() <= 1 and lesions.flatten(1).any(1).all()


def test_per_sample_kinds_and_bad_arguments(phantoms):
    images, masks = phantoms
    kinds = torch.tensor([0, 1] * 4)  # indices into KINDS: tumor, cyst
    inserted = render_lesions(images, masks, all_of(images), kinds, generator())
    assert inserted.tumor.tolist() == [True, False] * 4
    with pytest.raises(ValueError, match="kind"):
        insert_lesions(images, masks, all_of(images), "stone", generator())
    with pytest.raises(ValueError, match="kidney_masks"):
        insert_lesions(images, masks[:, :-1], all_of(images), "tumor", generator())


def test_lesion_model_round_trips_through_json_and_checks_ranges():
    model = LesionModel(tumor_radius=(1.0, 1.5), necrosis_probability=0.2)
    assert LesionModel.from_dict(json.loads(json.dumps(model.to_dict()))) == model
    with pytest.raises(ValueError, match="tumor_radius"):
        LesionModel(tumor_radius=(2.0, 1.0))


def lesion_core(inserted, masks: torch.Tensor, index: int) -> np.ndarray:
    """Pixels well inside both the lesion and the kidney: where a lesion's contrast is read."""
    core = ndimage.binary_erosion(inserted.masks[index].numpy(), iterations=2)
    return core & masks[index].numpy()


WINDOWS = {"wide": (40, 400), "narrow": (60, 250)}  # the narrow one clips fat to black


def test_tumor_contrast_follows_each_images_display_scale():
    """The same enhanced phantoms exported through a wide and a narrow window: the tumor is darker than
    the kidney by the same estimated HU in both, so by 400/250 times more display units in the narrow one.
    (Drawn in fixed display units, it would differ by 37% in estimated HU and not at all on screen.)
    Texture and necrosis are off: the lesion's extent differs a little between the two exports (the body
    wall is read from each), and a patchy texture averaged over different pixels would blur the test."""
    hu, masks = phantom_hu(6, seed=1, cortex=170.0)  # 0.94 in the narrow window: not clipped
    masks = torch.from_numpy(masks)
    model = LesionModel(tumor_texture_hu=(0.0, 0.0), necrosis_probability=0.0)
    drops = {}
    for name, (level, width) in WINDOWS.items():
        images = windowed(hu, level, width)
        inserted = render_lesions(images, masks, all_of(images), "tumor", generator(3), model)
        for i in range(len(hu)):
            core = lesion_core(inserted, masks, i)
            kidney = float(np.median(images[i, 0].numpy()[masks[i].numpy()]))
            change = float(inserted.images[i, 0].numpy()[core].mean()) - kidney
            drops.setdefault(name, []).append((change, change / float(inserted.scale.per_hu[i])))
    (display_wide, hu_wide), (display_narrow, hu_narrow) = (np.array(drops[name]).T for name in WINDOWS)
    assert (hu_wide < -40).all() and (hu_narrow < -40).all()  # hypo-enhancing: darker than the kidney
    # Per lesion loosely (small lesions average few pixels), over the batch tightly.
    assert np.allclose(hu_narrow / hu_wide, 1.0, atol=0.4)
    assert np.median(hu_narrow / hu_wide) == pytest.approx(1.0, abs=0.2)
    assert np.median(display_narrow / display_wide) == pytest.approx(400 / 250, rel=0.2)


def high_pass_spread(image: np.ndarray, where: np.ndarray) -> float:
    """Robust std of what a one-pixel blur removes: the noise."""
    residual = image - ndimage.gaussian_filter(image, 1.0)
    return float(1.4826 * np.median(np.abs(residual[where])))


@pytest.mark.parametrize("kind", ["cyst", "tumor"])
def test_the_slices_noise_stays_on_the_lesion(phantoms, kind):
    """High-frequency spread inside a lesion (kept 3 pixels clear of its margin, where the high-pass
    would see the edge) matches the slice's own; cysts are made large here to leave pixels to measure,
    and tumors plain (no texture, no necrosis), so that what is measured is noise."""
    images, masks = phantoms
    model = LesionModel(cyst_radius=(1.3, 1.6), tumor_texture_hu=(0.0, 0.0), necrosis_probability=0.0)
    inserted = render_lesions(images, masks, all_of(images), kind, generator(2), model)
    for i in range(images.shape[0]):
        original, out = images[i, 0].numpy(), inserted.images[i, 0].numpy()
        inside = ndimage.binary_erosion(inserted.masks[i].numpy(), iterations=3)
        body = (original > 0.02) & (original < 0.98)
        ratio = high_pass_spread(out, inside) / high_pass_spread(original, body)
        assert 0.65 < ratio < 1.4, f"image {i}: noise ratio {ratio:.2f}"


@pytest.mark.parametrize("grain", [0.0, 0.8])
def test_lesions_carry_noise_as_strong_and_as_grainy_as_the_slices(grain):
    """On flat slices of white and of grainy (blurred) noise, a large cyst's interior has the same
    full-band and high-frequency spread as the slice around it: no smoother, no rougher."""
    rng = np.random.default_rng(5)
    noise = np.stack([ndimage.gaussian_filter(rng.standard_normal((SIZE, SIZE)), grain) for _ in range(4)])
    noise /= noise.std(axis=(1, 2), keepdims=True)
    base = np.full((SIZE, SIZE), 0.45)
    base[:, :16] = 0.15  # a strip of fat, for the display scale
    images = torch.from_numpy(np.clip(base + 0.03 * noise, 0, 1).astype(np.float32))[:, None]
    masks = torch.zeros(4, SIZE, SIZE, dtype=torch.bool)
    masks[:, 40:56, 40:56] = True
    model = LesionModel(cyst_radius=(1.5, 1.6))
    inserted = render_lesions(images, masks, all_of(images), "cyst", generator(), model)
    outside = np.zeros((SIZE, SIZE), bool)
    outside[:, 24:] = True
    for i in range(4):
        original, out = images[i, 0].numpy(), inserted.images[i, 0].numpy()
        inside = ndimage.binary_erosion(inserted.masks[i].numpy(), iterations=3)
        reference = outside & ~ndimage.binary_dilation(inserted.masks[i].numpy(), iterations=4)
        assert out[inside].std() / original[reference].std() == pytest.approx(1.0, abs=0.25)
        high = high_pass_spread(out, inside) / high_pass_spread(original, reference)
        assert high == pytest.approx(1.0, abs=0.25)


def kaggle_slices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from kidneyct.preprocess.kidney import locate_kidneys

    folder = KAGGLE / "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone" / "Normal"
    if not folder.is_dir():
        pytest.skip(f"real CT data not present at {folder}")
    images, masks = [], []
    for path in sorted(folder.glob("*.jpg"))[::37]:
        unit = np.asarray(Image.open(path).convert("L"), np.float32) / 255
        location = locate_kidneys(unit)
        if location.found:
            images.append(unit)
            masks.append(location.mask)
        if len(images) == n:
            break
    return torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(masks))


def test_real_kaggle_slices_get_lesions_inside_the_located_kidneys():
    images, masks = kaggle_slices(6)
    for kind in ("tumor", "cyst"):
        inserted = render_lesions(images, masks, all_of(images), kind, generator(1))
        assert inserted.applied.all() and inserted.images.min() >= 0 and inserted.images.max() <= 1
        check_inside_kidney(inserted, images, masks)


def test_write_lesion_examples_on_phantom_slices(tmp_path):
    from kidneyct.synthetic.phantom import generate_dataset
    from kidneyct.synthetic.lesion_examples import write_lesion_examples

    generate_dataset(tmp_path / "data", n=8, size=128, classes=["normal"], progress=False)
    manifest = write_lesion_examples(tmp_path / "data", tmp_path / "out", n=4, kind="tumor", seed=0)
    rows = list(csv.DictReader(open(manifest)))
    assert 1 <= len(rows) <= 4 and {row["class"] for row in rows} == {"Normal"}
    for row in rows:
        original = np.asarray(Image.open(tmp_path / "out" / row["original"]))
        lesion = np.asarray(Image.open(tmp_path / "out" / row["lesion_image"]))
        mask = np.asarray(Image.open(tmp_path / "out" / row["mask"])) > 127
        assert original.shape == lesion.shape == mask.shape == (128, 128)
        assert mask.sum() == int(row["lesion_pixels"]) > 0
        assert mask[int(row["centre_row"]), int(row["centre_col"])]
        changed = np.abs(lesion.astype(int) - original.astype(int)) > 1  # beyond PNG rounding
        assert changed[mask].mean() > 0.5 and not (changed & ~ndimage.binary_dilation(mask, iterations=4)).any()
        assert row["kind"] == "tumor" and float(row["radius_px"]) > 0 and float(row["kidney_score"]) > 0
    note = json.loads((tmp_path / "out" / "SYNTHETIC.json").read_text())
    assert note["synthetic"] is True and LesionModel.from_dict(note["lesion_model"]) == LesionModel()
    sheet = Image.open(tmp_path / "out" / "contact-sheet.png")
    assert sheet.mode == "P" and sheet.width == 4 * 3 * 160 + 3 * 5
    again = write_lesion_examples(tmp_path / "data", tmp_path / "again", n=4, kind="tumor", seed=0)
    assert open(again).read() == open(manifest).read()


def test_display_scale_of_a_real_scan_follows_its_window():
    """A real CT volume in HU (plain scan, with organ labels): windowed 40/400 and 40/250, the estimated
    window widths keep the true ratio and lie within 0.9-1.5 times the truth (this plain scan's soft
    tissue, about 30 HU, is below the model's nominal 55 HU, so estimates run 20-45% wide); lesions
    land in the labelled kidneys."""
    from kidneyct.io import read_slices

    if not REAL_CT.exists():
        pytest.skip(f"real CT volume not present at {REAL_CT}")
    indices = [5, 10, 15, 20]  # slices with kidneys
    hu = np.stack([ct.pixels for ct in read_slices(REAL_CT, indices)])
    organs = REAL_CT.with_name(REAL_CT.name.replace(".nii.gz", ".organs.nii.gz"))
    labels = np.stack([ct.pixels for ct in read_slices(organs, indices)])
    masks = torch.from_numpy(np.isin(labels, (2, 3)))  # TotalSegmentator: right and left kidney
    widths = {}
    for width in (400, 250):
        images = windowed(hu, 40, width)
        inserted = render_lesions(images, masks, all_of(images), "tumor", generator())
        check_inside_kidney(inserted, images, masks)
        widths[width] = 1 / inserted.scale.per_hu.numpy()
    assert np.allclose(widths[250] / widths[400], 250 / 400, rtol=0.15)
    for width, estimates in widths.items():
        assert ((estimates > 0.9 * width) & (estimates < 1.5 * width)).all(), (width, estimates)


def test_replacing_tumors_cover_their_kidney_and_paint_the_rest_over_as_fat(phantoms):
    """A replacing tumor (a polar mass on a slice beyond the kidney's end) is centred on one kidney and larger
    than it; what of that kidney it leaves is painted over darker than the kidney (perirenal fat), the other
    kidney is untouched, and tumors that do not replace come out exactly as without the option."""
    images, masks = phantoms
    model = LesionModel(replace_share=1.0)
    inserted = render_lesions(images, masks, all_of(images), "tumor", generator(4), model)
    plain = render_lesions(images, masks, all_of(images), "tumor", generator(4), LesionModel())
    for i in range(images.shape[0]):
        labels, _ = ndimage.label(masks[i].numpy())
        row, col = inserted.centres[i].round().long().tolist()
        own = labels == _nearest_label(labels, row, col)
        middle = np.argwhere(own).mean(0)
        offset = np.hypot(*(middle - inserted.centres[i].numpy()))
        assert offset < 0.2 * float(inserted.kidney_radius[i]), f"image {i}: not centred on its kidney"
        lesion, erased = inserted.masks[i].numpy(), inserted.erased[i].numpy()
        assert not (lesion & erased).any()
        assert (lesion | erased)[own].mean() > 0.97, f"image {i}: its kidney still shows"
        assert lesion[own].mean() > 0.6, f"image {i}: the tumor does not cover most of its kidney"
        painted = erased & own
        if painted.any():
            assert inserted.images[i, 0].numpy()[painted].mean() < images[i, 0].numpy()[painted].mean() - 0.05
        other = masks[i].numpy() & ~ndimage.binary_dilation(own, iterations=3)
        untouched = other & ~reach(inserted, i)
        assert untouched.any() and np.array_equal(inserted.images[i, 0].numpy()[untouched], images[i, 0].numpy()[untouched])
    half = render_lesions(images, masks, all_of(images), "tumor", generator(4), LesionModel(replace_share=0.5))
    kept = ~half.erased.flatten(1).any(1) & (half.radii == plain.radii)
    assert kept.any() and torch.equal(half.images[kept], plain.images[kept])
    assert not plain.erased.any()
    with pytest.raises(ValueError, match="replace_share"):
        LesionModel(replace_share=1.5)


def _nearest_label(labels: np.ndarray, row: int, col: int) -> int:
    """The label of the component nearest (row, col): a kidney's middle may lie just outside a curved kidney."""
    if labels[row, col]:
        return int(labels[row, col])
    near = ndimage.distance_transform_edt(labels == 0, return_indices=True)[1][:, row, col]
    return int(labels[near[0], near[1]])


def test_enhancing_tumors_are_as_bright_as_their_kidney_or_brighter():
    """In an enhanced scan a default tumor is darker than its kidney; an enhancing one (small clear-cell tumors
    in the corticomedullary phase) is about as bright or brighter, and the tumors of a mixed model that do not
    enhance come out exactly as without the option."""
    hu, masks = phantom_hu(6, seed=1, cortex=170.0)
    masks = torch.from_numpy(masks)
    images = windowed(hu)
    flat = dict(tumor_texture_hu=(0.0, 0.0), necrosis_probability=0.0)
    dark = render_lesions(images, masks, all_of(images), "tumor", generator(5), LesionModel(**flat))
    bright = render_lesions(images, masks, all_of(images), "tumor", generator(5),
                            LesionModel(**flat, enhancing_share=1.0))
    for i in range(len(hu)):
        kidney = float(np.median(images[i, 0].numpy()[masks[i].numpy()]))
        dark_hu = (float(dark.images[i, 0].numpy()[lesion_core(dark, masks, i)].mean()) - kidney) / float(dark.scale.per_hu[i])
        bright_hu = (float(bright.images[i, 0].numpy()[lesion_core(bright, masks, i)].mean()) - kidney) / float(bright.scale.per_hu[i])
        assert dark_hu < -40 and -30 < bright_hu < 80, (i, dark_hu, bright_hu)
    half = render_lesions(images, masks, all_of(images), "tumor", generator(5), LesionModel(**flat, enhancing_share=0.5))
    same = [torch.equal(half.images[i], dark.images[i]) for i in range(len(hu))]
    assert any(same) and not all(same)
