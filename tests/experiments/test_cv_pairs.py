"""benchmarks/cv_pairs.py: paired comparisons repeated over training seeds, judged on the mean difference."""

import json
import math

import pytest


def _cv(fold_seed: int, seed: int) -> dict:
    return {"config": {"fold_seed": fold_seed, "train": {"seed": seed}}, "per_source": {"rows": {}}}


def test_each_pair_is_differenced_and_the_differences_averaged(benchmark_script):
    module = benchmark_script("cv_pairs")
    pairs = [({"auc": 0.80, "dicom": 8.0}, {"auc": 0.75, "dicom": 0.0}),
             ({"auc": 0.73, "dicom": 27.0}, {"auc": 0.74, "dicom": math.nan})]
    table = {entry["number"]: entry for entry in module.pairs_table(pairs)}
    assert [p["difference"] for p in table["auc"]["pairs"]] == pytest.approx([0.05, -0.01])
    assert table["auc"]["mean_difference"] == pytest.approx(0.02)
    assert table["dicom"]["mean_difference"] == pytest.approx(8.0)  # a pair without the number does not count
    assert table["dicom"]["mean_candidate"] == pytest.approx(17.5)


def test_runs_on_other_folds_or_seeds_are_not_a_pair(benchmark_script):
    module = benchmark_script("cv_pairs")
    module.check_pair(_cv(1, 0), _cv(1, 0), ("a", "b"))
    with pytest.raises(SystemExit, match="different fold assignments"):
        module.check_pair(_cv(1, 0), _cv(0, 0), ("a", "b"))
    with pytest.raises(SystemExit, match="different seeds"):
        module.check_pair(_cv(1, 1), _cv(1, 0), ("a", "b"))


def test_a_run_gives_its_cv_numbers_its_scope_and_its_real_scan_finds(segmenting_cv, benchmark_script, tmp_path):
    module = benchmark_script("cv_pairs")
    real = tmp_path / "real.json"
    real.write_text(json.dumps({"folds": {str(k): {"dicom_no_kidney": {"slices": 20, "found": k},
                                                   "nifti": {"kidney_slices_found": 0.5 + 0.1 * k}} for k in range(5)}}))
    numbers = module.run_numbers(segmenting_cv, real)
    cv = json.loads((segmenting_cv / "cv.json").read_text())
    expected = {e["number"]: e["runs"][0] for e in module.cv_repeats.repeats_table([cv])}
    for name, value in expected.items():
        assert numbers[name] == pytest.approx(value, nan_ok=True), name
    assert numbers["no-kidney DICOM slices taken for kidney"] == 10
    assert numbers["unenhanced NIfTI kidney slices found (%)"] == pytest.approx(70.0)  # mean over fold models
    assert math.isnan(numbers["KiTS23 NoKidney slices in scope (%)"])  # phantoms: no KiTS23 source
    table = module.pairs_table([(numbers, numbers)])
    assert all(entry["mean_difference"] == 0 or math.isnan(entry["mean_difference"]) for entry in table)


def test_an_ensemble_is_compared_with_the_mean_of_exactly_its_members(benchmark_script, tmp_path):
    module = benchmark_script("cv_pairs")
    assert module.mean_numbers([{"auc": 0.70, "dice": 0.30}, {"auc": 0.80, "dice": math.nan}]) == pytest.approx(
        {"auc": 0.75, "dice": math.nan}, nan_ok=True)
    ensemble, first, second, other = (tmp_path / name for name in ("ens", "a", "b", "c"))
    ensemble.mkdir()
    (ensemble / "members.json").write_text(json.dumps({"members": [str(first), str(second)]}))
    module.check_members(ensemble, [second, first])  # the order does not matter
    with pytest.raises(SystemExit, match="not the ensemble of"):
        module.check_members(ensemble, [first, other])
    with pytest.raises(SystemExit, match="lists nothing"):
        module.check_members(first, [first, second])  # a plain run is nobody's ensemble
    module.check_pair(_cv(1, 0), _cv(1, 1), ("ens", "b"), same_seed=False)  # members differ in seed by design
    with pytest.raises(SystemExit, match="different fold assignments"):
        module.check_pair(_cv(1, 0), _cv(0, 1), ("ens", "b"), same_seed=False)


def test_a_committed_record_gives_its_runs_numbers_with_its_scope_file(segmenting_cv, benchmark_script, tmp_path):
    """A run folder does not outlive its machine: its cv.json kept as a record, with its cv_scope output, pairs."""
    module = benchmark_script("cv_pairs")
    record, scope = tmp_path / "cv-run.json", tmp_path / "cv-scope-run.json"
    record.write_text((segmenting_cv / "cv.json").read_text())
    scope.write_text(json.dumps({"scope": {"kits23": {"NoKidney": {"slices": 80, "in_scope": 0.05},
                                                      "Normal": {"slices": 100, "in_scope": 0.8},
                                                      "Tumor": {"slices": 60, "in_scope": 0.9}}}}))
    from_folder, from_record = module.run_numbers(segmenting_cv), module.run_numbers(record, scope=scope)
    for name in from_folder:
        if "scope" not in name:
            assert from_record[name] == pytest.approx(from_folder[name], nan_ok=True), name
    assert from_record["KiTS23 NoKidney slices in scope (%)"] == pytest.approx(5.0)
    assert from_record["KiTS23 slices with a kidney in scope (%)"] == pytest.approx(100 * (80 + 54) / 160)
    assert math.isnan(module.run_numbers(record)["KiTS23 NoKidney slices in scope (%)"])  # no scope file: unknown
    module.main([f"{record}:{segmenting_cv}", "--scope", f"{record}={scope}", "--out", str(tmp_path / "p.json")])
    assert "--scope" in json.loads((tmp_path / "p.json").read_text())["command"]
