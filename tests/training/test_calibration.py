import numpy as np
import pytest

from kidneyct.evaluation.calibration import expected_calibration_error, nll, softmax
from kidneyct.labels import decide
from kidneyct.checkpoint import read_checkpoint
from kidneyct.training.calibration import fit_temperature, operating_point, threshold_for_sensitivity


def _overconfident(n=4000, factor=3.0, seed=0):
    """Labels drawn from softmax(z); the 'model' reports factor * z, i.e. it is overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, 3))
    p = softmax(z)
    labels = np.array([rng.choice(3, p=row) for row in p])
    return factor * z, labels


def test_temperature_scaling_undoes_known_overconfidence():
    logits, labels = _overconfident(factor=3.0)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert nll(logits, labels, temperature) < nll(logits, labels)
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, temperature), labels)
    assert before > 0.05 and after < before / 2


def test_ece_matches_hand_computation():
    # Half the images at confidence 0.9 with 60% right, half at 0.7 with 70% right: ECE = 0.5*0.3 + 0.5*0.
    probs = np.array([[0.9, 0.1]] * 10 + [[0.7, 0.3]] * 10)
    labels = np.array([0] * 6 + [1] * 4 + [0] * 7 + [1] * 3)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.15)


def test_threshold_for_target_sensitivity_is_the_highest_that_reaches_it():
    rng = np.random.default_rng(1)
    scores = rng.random(200)
    is_tumor = rng.random(200) < 0.4
    threshold = threshold_for_sensitivity(scores, is_tumor, 0.95)
    sensitivity = lambda t: (scores[is_tumor] >= t).mean()  # noqa: E731
    assert sensitivity(threshold) >= 0.95
    assert sensitivity(np.nextafter(threshold, 1.0)) < 0.95  # any higher threshold misses the target


def test_decide_applies_the_tumor_threshold_and_falls_back_to_the_next_class():
    classes = ["Normal", "Cyst", "Tumor", "Stone"]
    probs = np.array([[0.5, 0.1, 0.3, 0.1], [0.2, 0.5, 0.25, 0.05], [0.1, 0.1, 0.7, 0.1]])
    assert decide(probs, classes, None).tolist() == [0, 1, 2]
    assert decide(probs, classes, 0.28).tolist() == [2, 1, 2]
    assert decide(probs, classes, 0.8).tolist() == [0, 1, 0]  # below threshold: best non-tumor class


def test_operating_point_reports_validation_sensitivity_and_specificity():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45]])
    labels = np.array([0, 0, 0, 1, 1])  # class 0 is Tumor
    point = operating_point(probs, labels, ["Tumor", "Normal"], target_sensitivity=1.0)
    assert point.threshold == pytest.approx(0.3)
    assert point.val_sensitivity == 1.0 and point.val_specificity == pytest.approx(0.5)
    with pytest.raises(ValueError, match="tumor class"):
        operating_point(probs, labels, ["Cyst", "Normal"], threshold=0.5)


def test_training_fits_temperature_on_validation_without_worsening_ece(trained_run):
    for path in (trained_run.best_checkpoint, trained_run.last_checkpoint):
        calibration = read_checkpoint(path).calibration
        check = calibration.validation
        assert calibration.temperature > 0 and check.n == trained_run.split_sizes["val"]
        assert check.nll_after <= check.nll_before
        assert check.ece_after <= check.ece_before + 1e-9


def test_a_temperature_that_would_raise_validation_ece_is_not_applied():
    from kidneyct.training.calibration import fit_calibration

    # Already calibrated logits: here the NLL fit (T ~ 1.08) would raise the binned ECE a little.
    logits, labels = _overconfident(n=300, factor=1.0, seed=3)
    assert expected_calibration_error(softmax(logits, fit_temperature(logits, labels)), labels) > \
        expected_calibration_error(softmax(logits), labels)
    calibration, point = fit_calibration(logits, labels, ["Tumor", "Normal", "Cyst"])
    assert calibration.kept is False and calibration.temperature == 1.0
    assert calibration.validation.ece_after == calibration.validation.ece_before
    assert point is None


def test_target_sensitivity_is_chosen_on_validation_recorded_and_applied_by_evaluate(phantom_png, tmp_path):
    import csv
    import json

    from kidneyct.cli import main

    run = tmp_path / "run"
    assert main(["train", "--data", str(phantom_png), "--out", str(run), "--image-size", "96", "--epochs", "1",
                 "--batch-size", "16", "--device", "cpu", "--no-progress", "--workers", "1",
                 "--target-sensitivity", "0.95"]) == 0
    for name in ("best.pt", "last.pt"):
        point = read_checkpoint(run / name).operating_point
        assert point.target_sensitivity == 0.95
        assert point.val_sensitivity >= 0.95 and point.tumor_class == "Tumor"
    threshold = read_checkpoint(run / "best.pt").threshold
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--out", str(tmp_path / "report"),
                 "--device", "cpu", "--bootstrap", "20", "--no-progress"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "report" / "predictions.csv")))
    assert rows and all((r["predicted"] == "Tumor") == (float(r["p_Tumor"]) >= threshold) for r in rows)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["threshold"] == threshold and "ece_before" in metrics["calibration"]["evaluated"]
    assert (tmp_path / "report" / "reliability.png").stat().st_size > 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Calibration" in report and "## Operating point" in report and "reliability.png" in report


def test_threshold_and_target_sensitivity_exclude_each_other(phantom_png, tmp_path):
    from kidneyct.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--data", str(phantom_png), "--out", str(tmp_path), "--threshold", "0.3",
              "--target-sensitivity", "0.9"])
