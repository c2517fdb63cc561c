"""Per-source tables: a row per source and a pooled row, the ranking statistics where a source has both
classes, the rates at the threshold everywhere, per-group numbers where groups hold several slices, Dice
only with a segmenting model."""

from __future__ import annotations

import math

import numpy as np

from kidneyct.evaluation.per_source import POOLED, Scored, per_source_table, table_lines


def _scored(predicted_masks=None) -> Scored:
    rng = np.random.default_rng(0)
    sources = ["a"] * 40 + ["b"] * 20 + ["c"] * 12
    is_tumor = np.array([(i // 4) % 2 == 0 for i in range(40)] + [i < 8 for i in range(20)] + [False] * 12)
    groups = [f"a:{i // 4}" for i in range(40)] + [f"b:{i}" for i in range(20)] + [f"c:{i // 3}" for i in range(12)]
    scores = np.where(is_tumor, 0.7, 0.3) + rng.normal(0, 0.1, (2, 72))
    scores[:, 40:60] = rng.uniform(0, 1, (2, 20))  # source b: chance
    masks = np.zeros((72, 8, 8), np.uint8)
    masks[:, 2:6, 2:6] = 1
    masks[is_tumor, 3:5, 3:5] = 2
    return Scored(sources, groups, is_tumor, ~is_tumor, scores, scores > 0.5, masks, predicted_masks)


def test_rows_per_source_and_pooled():
    table = per_source_table(_scored(), {"a", "c"}, n_boot=50)
    assert list(table) == ["a", "b", "c", POOLED]
    assert table["a"]["image"]["roc_auc"]["value"] > 0.9 > table["b"]["image"]["roc_auc"]["value"]
    assert table["a"]["image"]["roc_auc"]["ci_low"] <= table["a"]["image"]["roc_auc"]["value"]
    assert (table[POOLED]["images"], table[POOLED]["tumor"], table["c"]["negative"]) == (72, 28, 12)
    assert math.isnan(table["c"]["image"]["roc_auc"]["value"])  # normal slices only: nothing to rank
    assert 0.0 <= table["c"]["specificity"] <= 1.0 and math.isnan(table["c"]["sensitivity"])
    assert table["b"]["group"] is None and table["a"]["groups"] == 10 and table["c"]["group"] is not None
    assert math.isnan(table[POOLED]["tumor_dice"]) and table[POOLED]["tumor_dice_slices"] == 0
    lines = "\n".join(table_lines(table, "tumor vs normal"))
    assert "| c | 12 (0 / 12) | n/a | n/a | n/a | n/a |" in lines and "Per series or patient" in lines


def test_dice_columns_fill_with_a_segmenting_models_masks():
    perfect = _scored().true_masks.copy()
    table = per_source_table(_scored(predicted_masks=perfect), set(), n_boot=20)
    assert table["a"]["tumor_dice"] == 1.0 and table["a"]["tumor_dice_slices"] == 20
    assert table[POOLED]["kidney_dice"] == 1.0 and table[POOLED]["kidney_dice_slices"] == 72


def test_one_source_is_its_own_pooled_row_and_known_intervals_are_taken():
    scored = _scored()
    first = slice(0, 40)
    one = Scored(scored.sources[first], scored.groups[first], scored.is_tumor[first], scored.negative[first],
                 scored.scores[:, first], scored.called[:, first])
    known = {"image": {name: {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6} for name in
                       ("roc_auc", "sensitivity_at_specificity_90", "specificity_at_sensitivity_90")}}
    table = per_source_table(one, {"a"}, n_boot=20, pooled=known)
    assert list(table) == ["a", POOLED] and table["a"] == table[POOLED]
    assert table["a"]["image"]["roc_auc"]["value"] == 0.5 and table["a"]["group"]["roc_auc"]["value"] > 0.9
