"""End to end: a model trained on phantoms calls a phantom DICOM series and NIfTI volume with a tumor on
known slices, and the slices it names as driving the call are tumor slices."""

import numpy as np
import pytest

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
    results = list(phantom_detector.run([s.path for s in studies.values()]))
    assert not any(r.skipped for r in results) and len(results) == len(studies)
    by_input = {s.input: s for s in results}
    for (fmt, seed), study in studies.items():
        found = by_input[str(study.path)]
        assert found.kind == ("series" if fmt == "dicom" else "volume") and found.n_slices == N_SLICES
        assert found.tumor, (fmt, seed, found)
        assert set(found.driving_slices) <= TRUE_SLICES, (fmt, seed, found.driving_slices)
        tumor = np.array([s.probabilities["Tumor"] for s in found.slices])
        inside = [i in TRUE_SLICES for i in range(N_SLICES)]
        assert tumor[inside].mean() > tumor[~np.array(inside)].mean()  # the lesion, not the patient
