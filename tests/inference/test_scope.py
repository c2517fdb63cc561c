"""The scope gate: kidney-level slices of pelvis-to-liver phantom volumes and of the real labelled scan are in
scope, the rest is not; a series without a located kidney gets no call; single slices are judged by the
locator and the feature distance to the training slices; the intensity profile warns about non-contrast
scans."""

import shutil

import numpy as np
import pytest

import kidneyct
from kidneyct.inference.scope import InputJudge, Look, ScopeGate
from kidneyct.io import CTSlice
from kidneyct.preprocess import Preprocessing
from kidneyct.study.scope_stats import FeatureDistance, IntensityProfile, ScopeSettings, body_histogram
from kidneyct.study.settings import StudySettings
from kidneyct.synthetic.phantom_volume import render_volume, write_volume

PREP = Preprocessing(image_size=96)


def _series_scope(gate: ScopeGate, slices, heights):
    cts = [CTSlice(hu, True, "phantom", index=i, position=float(h)) for i, ((hu, _), h) in enumerate(zip(slices, heights))]
    return gate.series(cts, [gate.look(c) for c in cts])


def test_phantom_volumes_from_pelvis_to_liver_are_in_scope_where_a_kidney_shows():
    gate = ScopeGate(PREP)
    agreements = []
    for seed in range(12):  # every other one with a tumor; not chosen: the locator misses some unenhanced kidneys
        slices, truth, heights = render_volume(seed, 128, "Tumor" if seed % 2 else None)
        assert not any(truth[:5]) and any(truth) and not any(truth[-5:])  # pelvis, kidneys, liver
        scopes = _series_scope(gate, slices, heights)
        agreements.append(np.mean([s.in_scope == t for s, t in zip(scopes, truth)]))
        shown = heights[np.array(truth)]
        far = (heights < shown.min() - 20) | (heights > shown.max() + 20)  # pelvis and liver, 2 cm from a kidney
        assert not any(s.in_scope for s, outside in zip(scopes, far) if outside)
        if seed % 2:  # a tumor sits in the kidneys: every slice showing it is in scope
            assert all(scopes[i].in_scope for i, (_, mask) in enumerate(slices) if mask.any())
    # The margin adds one slice beyond each pole where the phantom's locator already finds the kidney: 45/47.
    assert np.median(agreements) >= 0.95 and np.mean(agreements) >= 0.93, agreements


def test_the_span_is_grown_by_the_margin_in_slices_from_the_spacing():
    gate = ScopeGate(PREP, ScopeSettings(margin_mm=6.0, margin_slices=1))
    flat = np.zeros((8, 8), np.float32)
    looks = [Look(i in (4, 6), True, None) for i in range(12)]
    for spacing, margin in ((3.0, 2), (5.0, 1), (1.0, 6), (None, 1)):
        slices = [CTSlice(flat, True, "x", index=i, position=None if spacing is None else i * spacing) for i in range(12)]
        assert gate.margin(slices) == margin
        scopes = gate.series(slices, looks)
        assert [i for i, s in enumerate(scopes) if s.in_scope] == list(range(max(0, 4 - margin), min(12, 7 + margin)))
    assert "inside the kidney span" in gate.series(slices, looks)[5].reason
    tilted = gate.series(slices, [Look(i == 4, i != 5, None) for i in range(12)])
    assert not tilted[5].in_scope and "not an axial slice" in tilted[5].reason
    nothing = gate.series(slices, [Look(False, True, None)] * 12)
    assert not any(s.in_scope for s in nothing) and nothing[0].reason == "no kidney found in this series"


def test_a_find_farther_from_the_kidneys_than_they_reach_does_not_stretch_the_span():
    """One false kidney on a pelvis slice 20 cm below the kidneys: out of scope, and the slices between stay out;
    a kidney whose middle the finder missed stays one span; without positions every find counts."""
    gate = ScopeGate(PREP, ScopeSettings(margin_mm=6.0, margin_slices=1, kidney_extent_mm=200.0))
    flat = np.zeros((8, 8), np.float32)
    slices = [CTSlice(flat, True, "x", index=i, position=i * 5.0) for i in range(100)]
    kidneys = set(range(50, 76)) - set(range(58, 64))  # 13 cm of kidney, a 3 cm stretch missed (a large tumor)
    looks = [Look(i in kidneys or i == 10, True, None) for i in range(100)]
    scopes = gate.series(slices, looks)
    assert [i for i, s in enumerate(scopes) if s.in_scope] == list(range(49, 77))
    assert scopes[10].located and "false find" in scopes[10].reason and "50-75" in scopes[10].reason
    assert "inside the kidney span" in scopes[60].reason
    unplaced = [CTSlice(flat, True, "x", index=i) for i in range(100)]
    assert [i for i, s in enumerate(gate.series(unplaced, looks)) if s.in_scope] == list(range(9, 77))


def test_a_segmenting_models_series_keeps_the_span_its_kidney_map_found_in_scope():
    """A polar mass or a small pole the kidney map does not find stays in scope between the slices where it found
    kidney, grown by the margin; single slices are judged alone; a series where the map found nothing is out."""
    from kidneyct.checkpoint.schema import Outputs, Segmentation

    outputs = Outputs(maps=("kidney", "tumor"), kidney_finder="kidney map",
                      segmentation=Segmentation(min_kidney_fraction=0.002))
    judge = InputJudge(StudySettings(scope=ScopeSettings(margin_mm=6.0, margin_slices=1)), PREP, outputs)
    flat = np.zeros((8, 8), np.float32)
    slices = [CTSlice(flat, True, "x", index=i, position=i * 3.0) for i in range(14)]
    shares = np.zeros(14)
    shares[[4, 5, 8]] = 0.01  # slices 6-7 hold the mass the map missed
    scopes = judge.scopes(slices, True, None, kidney_fraction=shares)
    assert [i for i, s in enumerate(scopes) if s.in_scope] == list(range(2, 11))  # 4..8 grown by 2 slices (6 mm)
    assert "kidney map" in scopes[4].reason and "inside the kidney span" in scopes[6].reason
    assert not scopes[6].located and scopes[4].located
    assert "no kidney in the model's kidney map" in scopes[12].reason
    alone = judge.scopes(slices, False, None, kidney_fraction=shares)
    assert [i for i, s in enumerate(alone) if s.in_scope] == [4, 5, 8]
    far = [CTSlice(flat, True, "x", index=i, position=i * 20.0) for i in range(14)]  # 12: 8 cm past 8, 16 past 4
    far_shares = shares.copy()
    far_shares[12] = 0.02
    assert [i for i, s in enumerate(judge.scopes(far, True, None, kidney_fraction=far_shares)) if s.in_scope] == \
        list(range(3, 14))  # within 20 cm: one span
    judge.gate.settings = ScopeSettings(margin_mm=6.0, margin_slices=1, kidney_extent_mm=150.0)
    narrow = judge.scopes(far, True, None, kidney_fraction=far_shares)
    assert [i for i, s in enumerate(narrow) if s.in_scope] == [3, 4, 5, 6, 7, 8, 9]
    assert "false find" in narrow[12].reason
    assert not any(s.in_scope for s in judge.scopes(slices, True, None, kidney_fraction=np.zeros(14)))


def test_single_slices_are_judged_by_the_locator_then_the_feature_distance():
    rng = np.random.default_rng(0)
    train, val = rng.normal(0, 1, (400, 4)), rng.normal(0, 1, (200, 4))
    features = FeatureDistance.fit(train, val, acceptance=0.95)
    assert np.mean(features.distance(val) <= features.threshold) == pytest.approx(0.95, abs=0.01)
    gate = ScopeGate(PREP, features=features)
    assert gate.single(Look(True, True, 0.7), None).in_scope
    near, far = gate.single(Look(False, True, None), np.zeros(4)), gate.single(Look(False, True, None), np.full(4, 9.0))
    assert near.in_scope and "like the training slices" in near.reason
    assert not far.in_scope and "unlike the training slices" in far.reason
    assert not gate.single(Look(False, False, None), np.zeros(4)).in_scope
    unchecked = ScopeGate(PREP).single(Look(False, True, None), None)  # a checkpoint from before the statistics
    assert unchecked.in_scope and "not checked" in unchecked.reason


def test_the_intensity_profile_warns_about_kidneys_without_contrast():
    prep = Preprocessing(image_size=96)
    enhanced, plain = [], []
    for seed in range(40):
        slices, truth, heights = render_volume(seed, 96, None, heights=[-20.0, 0.0, 20.0])
        images = [prep.to_uint8(CTSlice(hu, True, "p")) for hu, _ in slices]
        (enhanced if _is_enhanced(seed) else plain).extend(images)
    profile = IntensityProfile.fit(np.stack(enhanced[:60]), np.stack(enhanced[60:]))
    assert profile is not None and profile.kidney is not None and profile.n_kidney_slices >= 20
    judge = InputJudge(StudySettings(intensity=profile), prep)
    plain_warnings = judge.warnings(np.stack(plain), judge.scopes([CTSlice(i / 255.0, False, "p") for i in plain],
                                                                  False, None), hu=True)
    assert any("darker than in the training slices" in w and "HU" in w for w in plain_warnings), plain_warnings
    inverted = [body_histogram(255 - image) for image in enhanced[60:70]]  # another window entirely
    assert any("unlike the training slices" in w for w in profile.warnings([h for h in inverted if h is not None], []))
    assert profile.warnings([body_histogram(image) for image in enhanced[60:70]], []) == []


def _is_enhanced(seed: int) -> bool:
    from kidneyct.synthetic.phantom import sample_patient

    return sample_patient(np.random.default_rng(seed), 96, None).enhanced


def test_predict_calls_a_phantom_volume_on_its_in_scope_slices_only(tmp_path, trained_run):
    volume = write_volume(tmp_path / "v", "nifti", seed=3, size=96, lesion="Tumor")
    study = kidneyct.load(trained_run.best_checkpoint).predict(volume.path)
    in_scope = [s.index for s in study.slices if s.in_scope]
    assert study.in_scope_slices == in_scope and set(study.driving_slices) <= set(in_scope)
    agreement = np.mean([(s.index in in_scope) == volume.kidney[s.index] for s in study.slices])
    assert agreement >= 0.9 and study.tumor_probability is not None
    assert all(s.scope_reason for s in study.slices)


def test_the_real_scans_kidney_slices_are_in_scope_and_the_kidney_free_series_gets_no_call(real_examples,
                                                                                           trained_run, tmp_path):
    import nibabel as nib

    nifti = real_examples / "abdomen-ct-30slices.nii.gz"
    dicom = tmp_path / "dicom"
    shutil.copytree(real_examples / "upper-abdomen-dicom-no-kidney", dicom)  # the UID-named files, as exported
    scanned, series = kidneyct.load(trained_run.best_checkpoint).run([nifti, dicom])
    labels = np.asarray(nib.as_closest_canonical(nib.load(str(real_examples / "abdomen-ct-30slices.organs.nii.gz")))
                        .dataobj)
    kidney = np.isin(labels, [2, 3]).any((0, 1))
    scan = {s.index: s.in_scope for s in scanned.slices}
    called = np.array([scan[i] for i in range(len(kidney))])
    precision, recall = (called & kidney).sum() / called.sum(), (called & kidney).sum() / kidney.sum()
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    assert series.n_slices == 20 and series.tumor_probability is None and series.tumor is None
    assert "no kidney found" in series.rule and all(s.call is None for s in series.slices)
    assert set(scanned.driving_slices) <= {i for i, inside in scan.items() if inside}
