"""benchmarks/kidney_finder_real.py: a segmenting model's kidney finder and scope gate on the two real scans."""

import json


def test_the_gate_keeps_every_found_slice_and_the_span_between_them(real_examples, benchmark_script, tmp_path):
    module = benchmark_script("kidney_finder_real")
    result = module.main(["--out", str(tmp_path / "real.json")])  # the shipped model
    nifti = result["nifti"]
    found, in_scope = nifti["found_per_slice"], nifti["in_scope_per_slice"]
    assert len(found) == len(in_scope) == len(nifti["labelled_per_slice"]) == 30
    assert all(inside >= finds for finds, inside in zip(found, in_scope))  # the span only adds slices
    first, last = found.index(1), len(found) - 1 - found[::-1].index(1)
    assert all(in_scope[first:last + 1])  # no gap between the first and the last slice with a kidney
    assert nifti["kidney_slices_in_scope"] >= nifti["kidney_slices_found"]
    assert result["dicom_no_kidney"]["in_scope"] >= result["dicom_no_kidney"]["found"]
    assert json.loads((tmp_path / "real.json").read_text())["nifti"]["in_scope_per_slice"] == in_scope


def test_every_fold_model_of_a_cv_run_is_measured_as_cv_pairs_reads_it(real_examples, segmenting_cv,
                                                                         benchmark_script, tmp_path):
    module = benchmark_script("kidney_finder_real")
    result = module.main(["--cv", str(segmenting_cv), "--out", str(tmp_path / "real.json")])
    assert sorted(result["folds"]) == ["0", "1"]  # the fixture's two folds
    assert result["folds"]["1"]["command"].endswith("fold-1/best.pt")
    numbers = benchmark_script("cv_pairs").run_numbers(segmenting_cv, tmp_path / "real.json")
    assert numbers["no-kidney DICOM slices taken for kidney"] == sum(
        fold["dicom_no_kidney"]["found"] for fold in result["folds"].values())
