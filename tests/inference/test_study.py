"""End to end: a model trained on phantoms calls a phantom DICOM series and NIfTI volume with a tumor on
known slices, and the slices it names as driving the call are tumor slices."""

import numpy as np
import pytest

from kidneyct.inference.batch import predict_inputs
from kidneyct.study.rule import LEGACY_RULE, StudyRule, call_study, rule_of, study_score
from kidneyct.synthetic.phantom_study import study_positions, write_study

N_SLICES, LESION = 16, (5, 10)
TRUE_SLICES = set(range(LESION[0], LESION[1] + 1))


def test_study_positions_put_the_lesion_on_the_requested_slices():
    for seed in range(3):
        study = write_study_in_memory(seed)
        assert study == list(range(LESION[0], LESION[1] + 1))
    positions, centre = study_positions(N_SLICES, *LESION)
    assert np.allclose(np.diff(positions), positions[1] - positions[0]) and positions[5] < centre < positions[10]
    with pytest.raises(ValueError, match="do not fit"):
        study_positions(8, 6, 9)


def write_study_in_memory(seed):
    from kidneyct.synthetic.phantom_study import render_study

    slices, _ = render_study(seed, 96, N_SLICES, *LESION)
    return [i for i, (_, mask) in enumerate(slices) if mask.any()]


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    made = {}
    for fmt in ("dicom", "nifti"):
        for seed in (101, 102):
            made[(fmt, seed)] = write_study(root / fmt, fmt, seed=seed, size=96, n_slices=N_SLICES,
                                            lesion_slices=LESION)
    return made


def test_written_studies_read_back_with_their_lesion_slices(studies):
    for study in studies.values():
        assert study.lesion_slices == sorted(TRUE_SLICES)
        assert len(study.rows) == N_SLICES and all(r["class"] == "Tumor" for r in study.rows)
        assert [r["lesion_pixels"] > 0 for r in study.rows] == [i in TRUE_SLICES for i in range(N_SLICES)]


@pytest.mark.slow
def test_series_and_volume_get_a_tumor_call_driven_by_the_tumor_slices(phantom_detector, studies):
    result = predict_inputs(phantom_detector, [s.path for s in studies.values()], progress=False)
    assert not result.skipped and len(result.studies) == len(studies)
    by_input = {s.input: s for s in result.studies}
    for (fmt, seed), study in studies.items():
        found = by_input[str(study.path)]
        assert found.kind == ("series" if fmt == "dicom" else "volume") and found.n_slices == N_SLICES
        assert found.tumor, (fmt, seed, found)
        assert set(found.driving_slices) <= TRUE_SLICES, (fmt, seed, found.driving_slices)
        slices = [s for s in result.slices if s.input == str(study.path)]
        tumor = np.array([s.probabilities["Tumor"] for s in slices])
        inside = [i in TRUE_SLICES for i in range(N_SLICES)]
        assert tumor[inside].mean() > tumor[~np.array(inside)].mean()  # the lesion, not the patient


def test_the_top_k_rule_means_the_k_highest_slices_and_names_them():
    probs = np.array([0.1, 0.2, 0.9, 0.8, 0.05, 0.7, 0.1])
    indices = [10, 11, 12, 13, 14, 15, 16]
    call = call_study(probs, indices, 0.5, StudyRule("top_k", k=3))
    assert call.probability == pytest.approx((0.9 + 0.8 + 0.7) / 3) and call.tumor
    assert call.driving_slices == [12, 13, 15] and "top-3 mean" in call.description
    assert not call_study(probs, indices, 0.85, StudyRule("top_k", k=3)).tumor  # one confident slice is not enough
    assert study_score([0.3, 0.6], rule=StudyRule("top_k", k=3)).driving == [0, 1]  # k capped by length


@pytest.mark.parametrize("rule, expected, driving", [
    (StudyRule("mean"), 0.375, [0, 1, 2, 3]), (StudyRule("max"), 0.8, [3]),
    (StudyRule("top_fraction", fraction=0.5), 0.6, [2, 3]), (StudyRule("noisy_or"), 1 - 0.9 * 0.8 * 0.6 * 0.2, [0, 1, 2, 3]),
])
def test_each_rule_gives_its_probability_and_driving_slices(rule, expected, driving):
    score = study_score([0.1, 0.2, 0.4, 0.8], rule=rule)
    assert score.probability == pytest.approx(expected) and score.driving == driving and score.n_in_scope == 4


def test_out_of_scope_slices_never_drive_a_call():
    probs = [0.9, 0.95, 0.1, 0.2, 0.15, 0.99]
    in_scope = [False, False, True, True, True, False]
    call = call_study(probs, list(range(6)), 0.5, StudyRule("max"), in_scope)
    assert call.probability == pytest.approx(0.2) and call.driving_slices == [3] and call.tumor is False
    none = call_study(probs, list(range(6)), 0.5, StudyRule("max"), [False] * 6)
    assert none.probability is None and none.tumor is None and "no kidney found" in none.description


def test_checkpoints_record_their_rule_and_older_ones_get_the_legacy_top_3():
    assert rule_of({}) == LEGACY_RULE == StudyRule("top_k", k=3)
    assert rule_of({"study_rule": {"kind": "mean", "k": 3, "fraction": 0.25}}) == StudyRule("mean")
    with pytest.raises(ValueError, match="unknown study rule"):
        StudyRule("median")
