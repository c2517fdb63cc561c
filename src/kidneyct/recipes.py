"""Named training recipes: TrainConfig settings as data, chosen with `--recipe NAME` (train, cv,
compare-splits). A recipe replaces the defaults; options given on the command line still win.
Each entry records where its settings were measured (docs/experiments.md)."""

from __future__ import annotations

from dataclasses import fields, replace

RECIPES: dict[str, dict] = {
    "default": {
        "description": "TrainConfig's defaults as they are",
        "settings": {},
    },
    # docs/experiments.md, row 5: the best means of the measured rows (5-fold grouped CV, Tumor vs Normal),
    # balanced accuracy 0.565 +- 0.202 per image vs the baseline's 0.525 +- 0.192: within noise, not the default.
    "lite0-64-ls-bal": {
        "description": "frozen EfficientNet-Lite0 at 64 px, 15 epochs, label smoothing 0.1, balanced sampling "
                       "(cheap on a CPU; CV balanced accuracy ~0.57 per image, ~0.74 per series, series-disjoint)",
        "settings": {"model": "efficientnet-lite0", "image_size": 64, "epochs": 15, "label_smoothing": 0.1,
                     "sampler": "balanced"},
    },
    # docs/experiments.md, row 8: the best measured row (5-fold grouped CV, Tumor vs Normal, 128 px): balanced
    # accuracy 0.649 +- 0.175 per image, 0.788 +- 0.201 per series; the body crop carries most of the gain
    # (row 7: 0.634 vs row 6's 0.557 without it). Still within about one sd, so not the train default.
    "lite0-128-crop-ls-bal": {
        "description": "frozen EfficientNet-Lite0 at 128 px on the body crop, 15 epochs, label smoothing 0.1, "
                       "balanced sampling (CV balanced accuracy ~0.65 per image, ~0.79 per series, series-disjoint)",
        "settings": {"model": "efficientnet-lite0", "image_size": 128, "epochs": 15, "body_crop": True,
                     "label_smoothing": 0.1, "sampler": "balanced"},
    },
}


def recipe_settings(name: str) -> dict:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    return dict(RECIPES[name]["settings"])


def apply_recipe(config, name: str):
    """`config` (a TrainConfig) with the recipe's settings and its name recorded."""
    known = {f.name for f in fields(config)}
    settings = recipe_settings(name)
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"recipe {name!r} sets unknown field(s) {sorted(unknown)}")
    return replace(config, **settings, recipe=name)
