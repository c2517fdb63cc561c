"""benchmarks/cv_repeats.py: one recipe's runs on different fold assignments, per source, and their mean."""

import pytest


def _cv(fold_seed: int, kits_auc: float, pancreas_specificity: float, **settings) -> dict:
    train = {"model": "lite0-unet", "synthetic_lesions": 0.5, "out": f"runs/{fold_seed}", "device": "cpu", **settings}
    rows = {"kits23": {"image": {"roc_auc": {"value": kits_auc}}, "tumor_dice": 0.0, "tumor_dice_mean": 0.3,
                       "kidney_dice": 0.94},
            "pancreas-ct": {"specificity": pancreas_specificity}}
    return {"config": {"fold_seed": fold_seed, "train": train}, "per_source": {"rows": rows}}


def test_each_number_is_given_per_run_and_averaged(benchmark_script):
    module = benchmark_script("cv_repeats")
    runs = [_cv(0, 0.74, 0.9), _cv(1, 0.80, 0.95, device="auto")]  # where a run went does not matter
    module.check_same_recipe(runs, ["a", "b"])
    table = {entry["number"]: entry for entry in module.repeats_table(runs)}
    kits = table["KiTS23 per slice ROC-AUC"]
    assert kits["runs"] == [0.74, 0.80] and kits["mean"] == pytest.approx(0.77)
    assert table["Pancreas-CT normal slices called tumor (%)"]["mean"] == pytest.approx(7.5)


def test_other_settings_or_the_same_folds_are_not_repeats(benchmark_script):
    module = benchmark_script("cv_repeats")
    with pytest.raises(SystemExit, match="synthetic_lesions"):
        module.check_same_recipe([_cv(0, 0.7, 0.9), _cv(1, 0.7, 0.9, synthetic_lesions=0.0)], ["a", "b"])
    with pytest.raises(SystemExit, match="share a fold assignment"):
        module.check_same_recipe([_cv(0, 0.7, 0.9), _cv(0, 0.8, 0.9)], ["a", "b"])
