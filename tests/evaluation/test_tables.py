from kidneyct.evaluation.report import class_rows, summary_rows
from kidneyct.evaluation.tables import interval_cell, markdown_table, mean_sd_cell, value_and_interval


def test_cells_show_intervals_spreads_and_what_is_undefined():
    entry = {"value": 0.91234, "ci_low": 0.8712, "ci_high": 0.9481}
    assert value_and_interval(entry) == ("0.912", "0.871 - 0.948")
    assert interval_cell(entry) == "0.912 (0.871 - 0.948)"
    for undefined in ({"value": float("nan"), "ci_low": 0.0, "ci_high": 1.0}, None):
        assert value_and_interval(undefined) == ("n/a", "") and interval_cell(undefined) == "n/a"
    assert mean_sd_cell({"mean": 0.5, "std": 0.125, "n": 3}) == "0.500 ± 0.125"
    assert mean_sd_cell({"mean": 0.5, "std": float("nan"), "n": 1}) == "0.500"
    assert mean_sd_cell({"mean": float("nan"), "std": float("nan"), "n": 0}) == "n/a"


def test_markdown_table_lines():
    assert markdown_table(["metric", "value"], [("Accuracy", 0.5), ["F1", "n/a"]]) == [
        "| metric | value |", "|---|---|", "| Accuracy | 0.5 |", "| F1 | n/a |"]


def test_report_rows_take_the_metrics_present_in_order():
    entry = {"value": 0.5, "ci_low": 0.25, "ci_high": 0.75}
    metrics = {"macro_f1": entry, "accuracy": entry, "precision_tumor": entry, "recall_tumor": entry,
               "f1_tumor": None}
    assert summary_rows(metrics) == [("Accuracy", "0.500", "0.250 - 0.750"), ("Macro F1", "0.500", "0.250 - 0.750")]
    assert class_rows(metrics, ["Tumor"]) == [("Tumor", "0.500 (0.250 - 0.750)", "0.500 (0.250 - 0.750)", "n/a")]
