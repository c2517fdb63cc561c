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
