"""The options several commands share, defined once so that the same thing has the same option everywhere:
--checkpoint, --data, --device, --max-decoded-mb, the decode cache, --no-progress, and the training options
generated from TrainConfig's fields."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields, replace

from kidneyct.cli_types import device, existing_file, float_range, int_range
from kidneyct.config import GROUPS, TrainConfig, default_recipe

TRAINING_COMMANDS = ("train", "cv", "compare-splits")  # the commands whose options a recipe's settings default

SHIPPED = "the model shipped with kidneyct"


def add_checkpoint(p, kinds: str = "a kidneyct checkpoint (.pt)", shipped: bool = True) -> None:
    """--checkpoint: optional (the shipped model) where the command can run one."""
    if shipped:
        p.add_argument("--checkpoint", default=None, type=existing_file, help=f"{kinds} (default: {SHIPPED})")
    else:
        p.add_argument("--checkpoint", required=True, type=existing_file, help=kinds)


def add_data(p, required: bool = False, help: str = "dataset folder above the class folders") -> None:
    p.add_argument("--data", required=required, default=None, help=help)


def add_device(p, default: str = "auto") -> None:
    p.add_argument("--device", default=default, type=device, help=f"auto, cpu, cuda or cuda:N (default {default})")


def add_budget(p, default_mb: int) -> None:
    p.add_argument("--max-decoded-mb", type=float_range(0, 1_048_576, low_open=True), default=default_mb,
                   help=f"refuse an input whose header says it decodes to more than this many MiB (default "
                        f"{default_mb}): a small compressed file cannot claim gigabytes")


def add_cache(p) -> None:
    p.add_argument("--cache-dir", default=None,
                   help="decode cache folder (default: $KIDNEYCT_CACHE, else ./.cache/kidneyct)")
    p.add_argument("--no-cache", action="store_true", help="decode into memory without reading or writing a cache")


def add_no_progress(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_workers(p, help: str = "decoding processes (default: one per CPU core)") -> None:
    p.add_argument("--workers", type=int_range(0, 256), default=None, help=help)


def mib(megabytes: float) -> int:
    return int(megabytes * 1024 * 1024)


def openmp_threads_wait_asleep() -> None:
    """Before torch loads (the parser is torch-free): idle OpenMP threads sleep instead of spinning, unless
    the caller chose otherwise. On CPUs shared with other jobs a spinning thread holds the core its partner
    needs: one 96 px slice took 210 ms through the default model instead of 10 ms, batches ran 30% slower."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def recipe_argument(argv: list[str] | None) -> str | None:
    """The recipe whose settings are the other options' defaults, read before the full parse: --recipe when
    given, else the sources default when a training command is given --sources (`default_recipe`), else None
    (TrainConfig's own defaults: DEFAULT_RECIPE)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("command", nargs="?")
    pre.add_argument("--recipe", default=None)
    pre.add_argument("--sources", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.recipe is None and known.sources is not None and known.command in TRAINING_COMMANDS:
        return default_recipe(sources=True)
    return known.recipe


def _option_parser(annotation: str, meta: dict):
    """The argparse type of a TrainConfig field: its (string) annotation's int/float/str, range-checked when
    the field declares a range, so that no run starts that cannot finish."""
    kind = annotation.split("|")[0].strip()
    if meta.get("kind") == "device":
        return device
    if "range" in meta:
        return int_range(*meta["range"]) if kind == "int" else float_range(*meta["range"])
    return {"int": int, "float": float}.get(kind, str)


def add_train_options(p, defaults: TrainConfig) -> None:
    """One option per exposed TrainConfig field, in argument groups, help and default from the field. Every
    option defaults to None (not given): `train_config` lays what was given over the recipe's settings."""
    groups = {name: p.add_argument_group(f"{name} settings") for name in GROUPS}
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in fields(TrainConfig):
        meta = f.metadata
        if meta.get("flag", "") is None:
            continue
        target = groups[meta["group"]]
        if "exclusive" in meta:
            if meta["exclusive"] not in exclusive:
                exclusive[meta["exclusive"]] = target.add_mutually_exclusive_group()
            target = exclusive[meta["exclusive"]]
        flag = "--" + f.name.replace("_", "-")
        help_text = meta["help"] + ("" if meta.get("required") else f" (default: {getattr(defaults, f.name)})")
        if f.type == "bool":
            target.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        target.add_argument(flag, type=_option_parser(f.type, meta), default=None, help=help_text,
                            choices=meta.get("choices"), metavar=meta.get("metavar"),
                            required=bool(meta.get("required")), action="append" if meta.get("repeat") else "store")
    groups["data"].add_argument("--window", type=float, nargs=2, metavar=("LEVEL", "WIDTH"), default=None,
                                help=f"HU window for DICOM/NIfTI inputs (default: {defaults.window_level:g} "
                                     f"{defaults.window_width:g}, abdomen)")


def train_config(args, out: str) -> TrainConfig:
    """The recipe's settings (the parser's defaults) with every option given on the command line on top."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if f.metadata.get("flag", "") is not None and getattr(args, f.name, None) is not None}
    if args.window is not None:
        given["window_level"], given["window_width"] = args.window
    if len(given.get("data", ())) == 1:  # one --data: the plain folder, as before sources existed
        given["data"] = given["data"][0]
    return replace(args.train_defaults, out=out, **given)
