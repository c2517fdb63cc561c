import numpy as np
import pytest

from kidneyct.data.audit import leakage_audit
from kidneyct.data.catalogue import Sample
from kidneyct.data.groups import NEAR_DUPLICATE, infer_groups, thumbnails
from kidneyct.data.splits import grouped_stratified_split
from kidneyct.preprocess import window_to_uint8
from kidneyct.synthetic.phantom import render_slice, sample_patient


def _resize(hu, size=96):
    from PIL import Image

    return np.asarray(Image.fromarray(window_to_uint8(hu)).resize((size, size), Image.BILINEAR))


@pytest.fixture(scope="module")
def planted():
    """Six phantom series of neighbouring slices, numbered on across series boundaries like the
    Kaggle export, plus a planted exact duplicate and a near-duplicate (re-noised) copy."""
    rng = np.random.default_rng(11)
    images, samples, truth = [], [], []
    number = 0
    for series in range(6):
        label = series % 2
        patient = sample_patient(rng, 128, "Tumor" if label == 0 else None)
        for z in np.linspace(-0.2, 0.2, 4):
            number += 1
            hu, _ = render_slice(patient, float(z))
            images.append(_resize(hu))
            samples.append(Sample(f"/d/{'Tumor' if label == 0 else 'Normal'}/x- ({number}).png", label))
            truth.append(series)
    # Exact duplicate of an image of series 2 under another number, in series 4's number range.
    images.append(images[9].copy())
    samples.append(Sample("/d/Tumor/x- (999).png", 0))
    truth.append(2)
    # Near-duplicate: series 3's first slice re-rendered with fresh noise.
    noisy = images[12].astype(np.int16) + np.random.default_rng(0).integers(-4, 5, images[12].shape)
    images.append(np.clip(noisy, 0, 255).astype(np.uint8))
    samples.append(Sample("/d/Normal/x- (500).png", 1))
    truth.append(3)
    return np.stack(images), samples, np.array(truth)


def test_series_duplicates_and_near_duplicates_are_grouped(planted):
    images, samples, truth = planted
    grouping = infer_groups(samples, images)
    groups = np.array(grouping.groups)
    for series in range(6):  # each planted series is exactly one inferred group
        assert len(set(groups[truth == series])) == 1, series
    assert len(set(groups)) == 6
    assert len(grouping.exact_duplicates) == 1
    assert grouping.summary["label_conflicts"] == 0


def test_neighbouring_numbers_do_not_chain_unrelated_series(planted):
    images, samples, truth = planted
    groups = np.array(infer_groups(samples, images).groups)
    # Numbers 4 and 5 are neighbours but belong to different patients.
    assert groups[3] != groups[4]


def test_label_conflicts_are_reported(planted):
    images, samples, truth = planted
    flipped = list(samples)
    flipped[-1] = Sample(samples[-1].path, 0)  # a near-duplicate of a Normal slice labelled Tumor
    grouping = infer_groups(flipped, images)
    assert grouping.summary["label_conflicts"] >= 1 and grouping.summary["mixed_label_groups"] == 1


def test_grouped_split_keeps_groups_whole_and_audit_sees_no_leak(planted):
    images, samples, truth = planted
    groups = infer_groups(samples, images).groups
    names = grouped_stratified_split([s.label for s in samples], groups, seed=0)
    for group in set(groups):
        assert len({n for g, n in zip(groups, names) if g == group}) == 1
    train = [i for i, n in enumerate(names) if n == "train"]
    test = [i for i, n in enumerate(names) if n != "train"]
    audit = leakage_audit(images[train], [samples[i] for i in train], images[test], [samples[i] for i in test])
    assert audit["near_duplicates"] == 0


def test_audit_flags_a_planted_leak(planted):
    images, samples, truth = planted
    train = [i for i in range(len(samples)) if truth[i] != 5]
    test = [i for i in range(len(samples)) if truth[i] == 5] + [len(samples) - 1]  # + a copy of a train image
    audit = leakage_audit(images[train], [samples[i] for i in train], images[test], [samples[i] for i in test])
    assert audit["near_duplicates"] == 1
    assert audit["closest_pairs"][0]["query"] == samples[-1].key
    assert audit["closest_pairs"][0]["similarity"] >= NEAR_DUPLICATE


def test_thumbnails_are_unit_norm_correlations():
    images = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    vectors = thumbnails(images)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(thumbnails(images[:1] // 2)[0] @ vectors[0], 1, atol=1e-3)  # contrast-invariant


def _partition(grouping) -> set[frozenset[int]]:
    members: dict[str, set[int]] = {}
    for index, group in enumerate(grouping.groups):
        members.setdefault(group, set()).add(index)
    return {frozenset(m) for m in members.values()}


def _grouping(root, prep, csv_path, classes="tumor,normal", workers=1):
    from kidneyct.data.prepare import prepare_data

    return prepare_data(root, classes, prep, csv_path, workers=workers, progress=False, write_split=False).grouping


def test_series_do_not_depend_on_model_input_size_or_body_crop(tmp_path):
    """A model's input size or body crop must not change the series, hence the splits and folds."""
    from kidneyct.preprocess import Preprocessing
    from kidneyct.synthetic.phantom import generate_dataset

    root = tmp_path / "phantoms"
    generate_dataset(root, n=40, seed=5, size=96, classes=["Tumor", "Normal"], slices_per_series=(2, 4),
                     progress=False)
    reference = _partition(_grouping(root, Preprocessing(128), tmp_path / "a.csv"))
    for prep in (Preprocessing(64), Preprocessing(64, body_crop=True), Preprocessing(160, body_crop=True)):
        assert _partition(_grouping(root, prep, tmp_path / "b.csv")) == reference, prep


def test_real_series_are_the_same_with_and_without_body_crop(real_data, tmp_path):
    """On the real slices the crop once split the 10 Tumor series into 17 and the 27 Normal into 51 (weaker grouping, more leakage
    between folds): series now come from one fixed view."""
    from kidneyct.preprocess import Preprocessing

    plain = _grouping(real_data, Preprocessing(128), tmp_path / "a.csv", "tumor,stone", None)
    cropped = _grouping(real_data, Preprocessing(64, body_crop=True), tmp_path / "b.csv", "tumor,stone", None)
    assert _partition(plain) == _partition(cropped)
    assert plain.summary["groups"] == 41  # Tumor 10 + Stone 31 series
