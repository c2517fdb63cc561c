"""Command line: parses arguments and calls the Python API, nothing more.

Building the parser, `--help`, `kidneyct recipes` and `kidneyct models` import neither torch nor matplotlib:
this module imports only light ones (config, the model specs, the demo's defaults) at the top, and each
handler imports the stage it runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

from kidneyct.about import DISCLAIMER, __version__
from kidneyct.cli_types import device, existing_file, float_range, int_range, origin, output_file, output_folder
from kidneyct.config import (DEFAULT_RECIPE, GROUPS, MAX_DECODED_MB, RECIPES, SERVE_MAX_DECODED_MB, TrainConfig,
                             apply_recipe)
from kidneyct.errors import KidneyCTError
from kidneyct.experiments import demo as demo_defaults
from kidneyct.models import get_spec, list_models

log = logging.getLogger(__name__)


def _add_data_phantom(sub) -> None:
    p = sub.add_parser("phantom", help="generate synthetic abdominal CT phantoms (HU) with lesion masks")
    p.add_argument("--out", required=True, help="output folder (class sub-folders are created)")
    p.add_argument("--n", type=int, default=400, help="number of slices in total (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="slice side in pixels (default 256)")
    p.add_argument("--classes", default="normal,cyst,tumor,stone", help="classes to generate (default all four)")
    p.add_argument("--format", choices=["png", "dicom", "nifti"], default="png")
    p.set_defaults(handler=cmd_data_phantom)


def _option_parser(annotation: str, meta: dict):
    """The argparse type of a TrainConfig field: its (string) annotation's int/float/str, range-checked when
    the field declares a range, so that no run starts that cannot finish."""
    kind = annotation.split("|")[0].strip()
    if meta.get("kind") == "device":
        return device
    if "range" in meta:
        return int_range(*meta["range"]) if kind == "int" else float_range(*meta["range"])
    return {"int": int, "float": float}.get(kind, str)


def _add_train_options(p, defaults: TrainConfig) -> None:
    """One option per exposed TrainConfig field, in argument groups, help and default from the field. Every
    option defaults to None (not given): `_train_config` lays what was given over the recipe's settings."""
    groups = {name: p.add_argument_group(f"{name} settings") for name in GROUPS}
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for f in fields(TrainConfig):
        meta = f.metadata
        if meta.get("flag", "") is None:
            continue
        current = getattr(defaults, f.name)
        target = groups[meta["group"]]
        if "exclusive" in meta:
            if meta["exclusive"] not in exclusive:
                exclusive[meta["exclusive"]] = target.add_mutually_exclusive_group()
            target = exclusive[meta["exclusive"]]
        flag = "--" + f.name.replace("_", "-")
        help_text = meta["help"] + ("" if meta.get("required") else f" (default: {current})")
        if f.type == "bool":
            target.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        target.add_argument(flag, type=_option_parser(f.type, meta), default=None, help=help_text,
                            choices=meta.get("choices"), metavar=meta.get("metavar"), required=bool(meta.get("required")))
    groups["data"].add_argument("--window", type=float, nargs=2, metavar=("LEVEL", "WIDTH"), default=None,
                                help=f"HU window for DICOM/NIfTI inputs (default: {defaults.window_level:g} "
                                     f"{defaults.window_width:g}, abdomen)")


def _add_cache_options(p) -> None:
    p.add_argument("--cache-dir", default=None,
                   help="decode cache folder (default: $KIDNEYCT_CACHE, else ./.cache/kidneyct)")
    p.add_argument("--no-cache", action="store_true", help="decode into memory without reading or writing a cache")


def _add_listen(sub) -> None:
    p = sub.add_parser("listen", help="DICOM node: a Storage SCP that answers each CT series with results, "
                                      "an SR and key images")
    p.add_argument("--checkpoint", required=True, type=existing_file, help="a kidneyct checkpoint (.pt)")
    p.add_argument("--port", type=int_range(0, 65535), default=11112)
    p.add_argument("--ae-title", default="KIDNEYCT", help="this node's AE title (default KIDNEYCT)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--out", default="dicom-node", type=output_folder,
                   help="received instances, results and DICOM results (default ./dicom-node)")
    p.add_argument("--forward", default=None, metavar="HOST:PORT:AET", help="C-STORE each SR and its key images here")
    p.add_argument("--idle-seconds", type=float_range(0, 3600, low_open=True), default=5.0,
                   help="answer a series once no instance of it arrived for this long (default 5)")
    p.add_argument("--threshold", type=float_range(0, 1), default=None,
                   help="tumor threshold (default: the checkpoint's)")
    p.add_argument("--top-k", type=int_range(1, 10_000), default=None,
                   help="call series by the mean of the k highest in-scope slices instead of the checkpoint's rule")
    p.add_argument("--max-associations", type=int_range(1, 1000), default=32,
                   help="concurrent associations, in all (default 32)")
    p.add_argument("--allow-ae", action="append", default=[], metavar="TITLE[@HOST]",
                   help="accept associations from this calling AE title (from HOST only, when given); repeatable; "
                        "default: any calling AE title")
    p.add_argument("--max-peer-associations", type=int_range(1, 1000), default=8,
                   help="concurrent associations from one address (default 8)")
    p.add_argument("--max-instance-mb", type=float_range(0, 4096, low_open=True), default=64.0,
                   help="largest instance as received; larger ones get Out of Resources (default 64)")
    p.add_argument("--max-association-mb", type=float_range(0, 1_048_576, low_open=True), default=2048.0,
                   help="instances one association may send in all (default 2048)")
    p.add_argument("--max-series-mb", type=float_range(0, 1_048_576, low_open=True), default=512.0,
                   help="one series' instances, decoded, in all: what one answer reads (default 512)")
    p.add_argument("--peer-timeout", type=float_range(0, 3600, low_open=True), default=30.0,
                   help="seconds an association may stay silent, or stall inside a message (default 30)")
    p.add_argument("--device", default="cpu", type=device)
    p.set_defaults(handler=cmd_listen)


def _train_config(args, out: str) -> TrainConfig:
    """The recipe's settings (the parser's defaults) with every option given on the command line on top."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if f.metadata.get("flag", "") is not None and getattr(args, f.name, None) is not None}
    if args.window is not None:
        given["window_level"], given["window_width"] = args.window
    return replace(args.train_defaults, out=out, **given)


def _add_budget_option(p, default_mb: int) -> None:
    p.add_argument("--max-decoded-mb", type=float_range(0, 1_048_576, low_open=True), default=default_mb,
                   help=f"refuse an input whose header says it decodes to more than this many MiB (default "
                        f"{default_mb}): a small compressed file cannot claim gigabytes")


def _add_serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="web app and REST API for one checkpoint (FastAPI + uvicorn)")
    p.add_argument("--checkpoint", required=True, type=existing_file, help="a kidneyct checkpoint (.pt)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; "
                                                      "any other needs a token)")
    p.add_argument("--port", type=int_range(0, 65535), default=8000)
    p.add_argument("--token", default=None, help="bearer token the API requires (default: $KIDNEYCT_TOKEN; "
                                                 "required beyond loopback; the page takes it as #token=...)")
    p.add_argument("--allow-origin", action="append", type=origin, default=[], metavar="ORIGIN",
                   help="a web origin (http://host:port) whose pages may call the API; repeatable")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name the server answers to besides localhost/127.0.0.1 (or '*'); repeatable")
    p.add_argument("--max-upload-mb", type=float_range(0, 1024, low_open=True), default=20.0,
                   help="largest accepted upload (default 20 MB)")
    p.add_argument("--max-side", type=int_range(16, 8192), default=4096, help="largest accepted image side in pixels")
    _add_budget_option(p, SERVE_MAX_DECODED_MB)
    p.add_argument("--timeout", type=float_range(0, 3600, low_open=True), default=30.0,
                   help="per-request time limit in seconds")
    p.add_argument("--body-timeout", type=float_range(0, 3600, low_open=True), default=60.0,
                   help="seconds a client may take to send a request's body (408 beyond)")
    p.add_argument("--max-pending", type=int_range(1, 100_000), default=64,
                   help="requests queued for the model before 503")
    p.add_argument("--max-connections", type=int_range(1, 100_000), default=256,
                   help="open connections at once; beyond, a new one replaces the longest-idle one")
    p.add_argument("--max-connections-per-client", type=int_range(1, 100_000), default=32,
                   help="open connections of one client address; more are closed on arrival (default 32)")
    p.add_argument("--allow-non-ct", action="store_true",
                   help="accept non-CT DICOM (e.g. MR) with a warning instead of refusing it")
    p.add_argument("--device", default="cpu", type=device)
    p.set_defaults(handler=cmd_serve)


def _recipe_argument(argv: list[str] | None) -> str | None:
    """The --recipe value, read before the full parse: the recipe supplies the other options' defaults."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default=None)
    known, _ = pre.parse_known_args(argv)
    return known.recipe


def build_parser(recipe: str | None = None) -> argparse.ArgumentParser:
    defaults = TrainConfig(data="", out="")
    if recipe is not None:
        defaults = apply_recipe(defaults, recipe)
    parser = argparse.ArgumentParser(prog="kidneyct", description=f"kidneyct {__version__}. {DISCLAIMER}")
    parser.add_argument("--version", action="version", version=f"kidneyct {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.set_defaults(train_defaults=defaults)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    _add_data_phantom(data)
    p = data.add_parser("groups", help="infer which images belong to one CT series")
    p.add_argument("data", help="dataset folder above the class folders")
    p.add_argument("--classes", default="all", help="classes to include (default all four)")
    p.add_argument("--out", default=None, help="write one group id per image to this CSV")
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(handler=cmd_data_groups)
    p = data.add_parser("probe", help="shortcut probe: class from the background alone; model accuracy with the "
                                      "kidneys blanked vs kept")
    p.add_argument("--data", required=True, help="dataset folder above the class folders")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--cv", default=None, metavar="CV_DIR", help="a kidneyct cv folder: its fold models on their test folds")
    source.add_argument("--checkpoint", default=None, help="a checkpoint, on its split.csv's test images")
    p.add_argument("--classes", default="tumor,normal", help="task of the background probe (default tumor,normal)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", required=True, help="report folder (probe.md, probe.json)")
    p.set_defaults(handler=cmd_data_probe)
    p = data.add_parser("synth", help="insert synthetic lesions into real slices' located kidneys: examples with "
                                      "masks, a manifest and a contact sheet")
    p.add_argument("--data", required=True, help="dataset folder above the class folders (real slices)")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=48, help="examples to write (default 48)")
    p.add_argument("--kind", choices=["tumor", "cyst"], default="tumor")
    p.add_argument("--classes", default="all", help="classes to take slices from (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_data_synth)
    p = data.add_parser("audit", help="leakage audit of a split CSV: test images with near-duplicates in train")
    p.add_argument("--split", required=True, help="split.csv of a run")
    p.add_argument("--data", default=None, help="dataset folder (default: from the run's config.json)")
    p.add_argument("--query", default="test", choices=["val", "test"])
    p.add_argument("--out", default=None, help="write the audit as JSON here")
    p.set_defaults(handler=cmd_data_audit)

    p = sub.add_parser("models", help="list registered models")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("train", help="train a model on a class-folder dataset")
    _add_train_options(p, defaults)
    p.add_argument("--out", default=None, help="run folder (default runs/<model>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--evaluate", action="store_true", help="evaluate best.pt on the test split afterwards")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("evaluate", help="metrics, plots and reports for a checkpoint")
    p.add_argument("--checkpoint", required=True, type=existing_file)
    p.add_argument("--data", default=None, help="dataset folder (default: the one it was trained on)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--out", default=None, type=output_folder, help="report folder (default: <run>/report)")
    p.add_argument("--device", default="auto", type=device)
    p.add_argument("--bootstrap", type=int_range(1, 1_000_000), default=1000,
                   help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--no-progress", action="store_true")
    _add_cache_options(p)
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("predict", help="class probabilities for images, folders, DICOM series and NIfTI volumes")
    p.add_argument("--checkpoint", required=True, type=existing_file,
                   help="a kidneyct checkpoint (.pt) or an exported .onnx model")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (recursive; a folder of DICOM files is one series) or NIfTI volumes")
    p.add_argument("--out", default=None, type=output_file(".csv", ".json"),
                   help="results .csv (studies and skipped files in sidecars) or .json; default: JSON lines on stdout")
    p.add_argument("--cam", default=None, metavar="DIR", type=output_folder,
                   help="write a Grad-CAM overlay PNG per slice here")
    p.add_argument("--report", default=None, metavar="DIR", type=output_folder,
                   help="write a study report here: one HTML page per series or volume (call, in-scope slices, key "
                        "images with heatmaps, warnings) and index.html")
    p.add_argument("--dicom-out", default=None, metavar="DIR", type=output_folder,
                   help="per DICOM study, a Comprehensive SR with the call and Secondary Capture key images "
                        "(Grad-CAM burned in) here, one folder per Study Instance UID")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch",
                   help="onnx: run through onnxruntime (a .pt checkpoint is exported on the fly)")
    p.add_argument("--threshold", type=float_range(0, 1), default=None,
                   help="tumor threshold (default: the checkpoint's)")
    p.add_argument("--top-k", type=int_range(1, 10_000), default=None,
                   help="call studies by the mean of the k highest in-scope slices instead of the checkpoint's rule")
    p.add_argument("--batch-size", type=int_range(1, 65_536), default=64)
    p.add_argument("--workers", type=int_range(0, 256), default=None,
                   help="processes reading inputs while the model runs (default: one per CPU core; 0: none)")
    p.add_argument("--cam-layer", default=None, help="Grad-CAM target layer (default: the model's)")
    p.add_argument("--device", default="auto", type=device)
    _add_budget_option(p, MAX_DECODED_MB)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("compare-splits", help="train on a random and a grouped split; one comparison table")
    _add_train_options(p, defaults)
    p.add_argument("--out", default=None, help="folder (default runs/compare-<model>)")
    p.set_defaults(handler=cmd_compare_splits)

    p = sub.add_parser("cv", help="grouped, class-stratified k-fold cross-validation: one training per fold")
    _add_train_options(p, defaults)
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--fold-seed", type=int, default=None, help="seed of the fold assignment (default: --seed)")
    p.add_argument("--repeats", type=int, default=1,
                   help="fold assignments (seeds fold-seed, fold-seed+1, ...); numbers are averaged over them")
    p.add_argument("--compare", default=None, metavar="RECIPE|CV_DIR",
                   help="paired comparison on the same folds with a recipe (run too) or a finished cv folder")
    p.add_argument("--keep-models", action="store_true",
                   help="write OUT/ensemble.pt: the first repeat's fold models as one checkpoint (mean probability)")
    p.add_argument("--bootstrap", type=int, default=1000, help="series resamples for the 95%% intervals")
    p.add_argument("--resume", action="store_true",
                   help="reuse the folds OUT already holds (same settings, same test images): finish a killed run "
                        "or add repeats without training the first ones again")
    p.add_argument("--out", default=None, help="folder (default runs/cv-<model>)")
    p.set_defaults(handler=cmd_cv)

    p = sub.add_parser("recipes", help="list named training recipes")
    p.set_defaults(handler=cmd_recipes)

    p = sub.add_parser("explain", help="Grad-CAM overlays (image, heatmap, predicted class and probability)")
    p.add_argument("--checkpoint", required=True, type=existing_file)
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="images, folders, DICOM series or NIfTI volumes")
    p.add_argument("--out", required=True, type=output_folder, help="folder for the overlay PNGs")
    p.add_argument("--layer", default=None, help="Grad-CAM target layer (default: the model's)")
    p.add_argument("--batch-size", type=int_range(1, 65_536), default=16)
    p.add_argument("--device", default="auto", type=device)
    _add_budget_option(p, MAX_DECODED_MB)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=cmd_explain)

    p = sub.add_parser("study-settings", help="add the study rule, scope statistics and intensity profile to a "
                                              "checkpoint trained before they were recorded")
    p.add_argument("--checkpoint", required=True, help="a checkpoint with its split.csv beside it")
    p.add_argument("--out", required=True, help="the new checkpoint (the old one is left as it is)")
    p.add_argument("--data", default=None, help="dataset folder (default: the one it was trained on)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(handler=cmd_study_settings)

    p = sub.add_parser("export", help="export a checkpoint for deployment (ONNX, metadata embedded)")
    p.add_argument("--checkpoint", required=True, type=existing_file)
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", required=True, type=output_file(".onnx"), help="output file, e.g. model.onnx")
    p.add_argument("--opset", type=int_range(7, 30), default=None, help="ONNX opset (default: the exporter's)")
    p.set_defaults(handler=cmd_export)

    _add_serve_parser(sub)

    _add_listen(sub)

    p = sub.add_parser("demo", help="phantoms -> train seed-cnn -> evaluate, all on a built-in default")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--n", type=int, default=demo_defaults.DEMO_N, help="phantom slices (Tumor and Normal)")
    p.add_argument("--epochs", type=int, default=demo_defaults.DEMO_EPOCHS)
    p.add_argument("--image-size", type=int, default=demo_defaults.DEMO_IMAGE_SIZE)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_demo)
    return parser


def cmd_data_probe(args) -> int:
    from kidneyct.experiments.probe import run_probe

    run_probe(args.data, args.out, cv_dir=args.cv, checkpoint=args.checkpoint, classes=args.classes,
              folds=args.folds, seed=args.seed, device=args.device, workers=args.workers)
    print((Path(args.out) / "probe.md").read_text())
    return 0


def cmd_data_synth(args) -> int:
    from kidneyct.synthetic.lesion_examples import write_lesion_examples

    classes = None if args.classes == "all" else [c.strip() for c in args.classes.split(",")]
    manifest = write_lesion_examples(args.data, args.out, args.n, kind=args.kind, seed=args.seed, classes=classes)
    print(f"wrote synthetic {args.kind} examples (research only; synthetic lesions in real slices): {manifest}")
    return 0


def cmd_data_phantom(args) -> int:
    from kidneyct.data.catalogue import parse_classes
    from kidneyct.synthetic.phantom import generate_dataset

    manifest = generate_dataset(args.out, n=args.n, seed=args.seed, size=args.size,
                                classes=parse_classes(args.classes), fmt=args.format)
    print(f"wrote {args.n} synthetic slices to {args.out} (manifest {manifest})")
    return 0


def cmd_data_groups(args) -> int:
    from kidneyct.data.catalogue import build_catalogue
    from kidneyct.data.decode import decode_samples
    from kidneyct.data.groups import infer_groups, series_view, summarise, write_groups_csv
    from kidneyct.data.prepare import report_skipped

    catalogue = build_catalogue(args.data, args.classes)
    started = time.perf_counter()
    decoded = decode_samples(catalogue.samples, series_view(), workers=args.workers)
    decoded_at = time.perf_counter()
    report_skipped(catalogue.skipped + decoded.skipped)
    grouping = infer_groups(decoded.samples, decoded.images)
    grouped_at = time.perf_counter()
    summary = summarise(grouping, decoded.samples, catalogue.classes)
    summary["seconds"] = {"decode": round(decoded_at - started, 2), "grouping": round(grouped_at - decoded_at, 2)}
    summary["label_conflict_examples"] = [
        [decoded.samples[a].key, decoded.samples[b].key, round(s, 4)] for a, b, s in grouping.label_conflicts[:10]]
    if args.out:
        write_groups_csv(args.out, catalogue.root, decoded.samples, catalogue.classes, grouping)
        summary["csv"] = args.out
    print(json.dumps(summary, indent=2))
    return 0


def cmd_data_audit(args) -> int:
    from kidneyct.data.audit import audit_lines, leakage_audit
    from kidneyct.data.decode import decode_samples
    from kidneyct.data.groups import series_view
    from kidneyct.data.splits import read_split_csv
    from kidneyct.preprocess import Preprocessing

    split_csv = Path(args.split)
    config_path = split_csv.parent / "config.json"
    run_config = json.loads(config_path.read_text()) if config_path.exists() else {}
    data = args.data or run_config.get("train", {}).get("data")
    if data is None:
        raise ValueError(f"--data is needed: no config.json beside {split_csv}")
    with open(split_csv, newline="") as handle:
        classes = list(dict.fromkeys(row["label"] for row in csv.DictReader(handle)))
    splits = read_split_csv(split_csv, data, classes)
    prep = series_view(Preprocessing(window_level=run_config.get("train", {}).get("window_level", 40.0),
                                     window_width=run_config.get("train", {}).get("window_width", 400.0)))
    train = decode_samples(splits["train"], prep)
    query = decode_samples(splits[args.query], prep)
    result = leakage_audit(train.images, train.samples, query.images, query.samples)
    print("\n".join(audit_lines(result)))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


def cmd_compare_splits(args) -> int:
    from kidneyct.experiments.compare import compare_splits

    config = _train_config(args, args.out or "")
    out = args.out or f"runs/compare-{config.model}"
    compare_splits(replace(config, out=out), out)
    print(Path(out, "comparison.md").read_text())
    return 0


def cmd_cv(args) -> int:
    from kidneyct.experiments.cv import CVConfig, cross_validate

    config = _train_config(args, args.out or "")
    config = replace(config, out=args.out or f"runs/cv-{config.model}")
    result = cross_validate(CVConfig(config, folds=args.folds, fold_seed=args.fold_seed,
                                     repeats=args.repeats, compare=args.compare, keep_models=args.keep_models,
                                     bootstrap=args.bootstrap, resume=args.resume))
    print((result.out / "cv.md").read_text())
    return 0


def cmd_recipes(args) -> int:
    for name, recipe in RECIPES.items():
        settings = ", ".join(f"{k}={v}" for k, v in recipe["settings"].items())
        marker = "  [the default of train, cv and compare-splits]" if name == DEFAULT_RECIPE else ""
        print(f"{name}{marker}\n    {recipe['description']}\n    {settings}")
    return 0


def cmd_models(args) -> int:
    for spec in list_models():
        print(f"{spec.name:20s} {spec.description} [default {spec.image_size} px, pretrained "
              f"{spec.pretrained_default}, backbone {'frozen' if spec.frozen_default else 'trained'}]")
    return 0


def cmd_train(args) -> int:
    from kidneyct.data.cache import CacheSettings
    from kidneyct.experiments.evaluate import evaluate
    from kidneyct.training.distributed import is_main_process
    from kidneyct.training.train import train

    config = _train_config(args, args.out or "")
    config = replace(config, out=args.out or f"runs/{config.model}")
    result = train(config, resume=args.resume, extend_epochs=args.epochs if args.resume else None)
    if not is_main_process():  # under torchrun, rank 0 reports
        return 0
    print(f"best checkpoint: {result.best_checkpoint}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable file(s); see the log above and the report")
    if args.evaluate:
        report = evaluate(result.best_checkpoint, device=config.device, progress=config.progress,
                          cache=CacheSettings(config.cache, config.cache_dir))
        print(f"report: {report.html}")
    return 0


def cmd_evaluate(args) -> int:
    from kidneyct.data.cache import CacheSettings
    from kidneyct.experiments.evaluate import evaluate

    result = evaluate(args.checkpoint, data=args.data, split=args.split, out=args.out, device=args.device,
                      n_boot=args.bootstrap, progress=not args.no_progress,
                      cache=CacheSettings(not args.no_cache, args.cache_dir))
    summary = {k: round(v["value"], 4) for k, v in result.metrics.items()
               if isinstance(v, dict) and "value" in v}
    print(json.dumps(summary, indent=2))
    print(f"report: {result.html}")
    return 0


def _openmp_threads_wait_asleep() -> None:
    """Before torch loads (the parser is torch-free): idle OpenMP threads sleep instead of spinning, unless
    the caller chose otherwise. On CPUs shared with other jobs a spinning thread holds the core its partner
    needs: one 96 px slice took 210 ms through the default model instead of 10 ms, batches ran 30% slower."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cmd_predict(args) -> int:
    _openmp_threads_wait_asleep()
    from kidneyct.inference.batch import open_backend, predict_inputs

    onnx = args.backend == "onnx" or args.checkpoint.lower().endswith(".onnx")
    if args.dicom_out and onnx:
        raise ValueError("--dicom-out draws Grad-CAM key images: it needs a .pt checkpoint and --backend torch")
    backend, explainer = open_backend(args.checkpoint, args.backend, args.device,
                                      with_cam=bool(args.cam or args.dicom_out) or (bool(args.report) and not onnx),
                                      cam_layer=args.cam_layer)
    result = predict_inputs(backend, args.inputs, batch_size=args.batch_size, top_k=args.top_k,
                            threshold=args.threshold, cam_dir=args.cam, explainer=explainer,
                            progress=not args.no_progress, workers=args.workers,
                            max_decoded_bytes=_mib(args.max_decoded_mb))
    if args.out is None:
        for row in result.slices:
            print(json.dumps({"input": row.input, "source": row.source, "slice_index": row.slice_index,
                              "predicted": row.predicted, "probabilities": row.probabilities,
                              "in_scope": row.in_scope, "scope_reason": row.scope_reason,
                              **({"warnings": row.warnings} if row.warnings else {})}))
        for study in result.studies:
            probability = None if study.tumor_probability is None else round(study.tumor_probability, 6)
            print(json.dumps({"study": study.input, "tumor_probability": probability, "tumor": study.tumor,
                              "driving_slices": study.driving_slices, "in_scope_slices": study.in_scope_slices,
                              "rule": study.aggregation, "warnings": study.warnings}))
    else:
        print("wrote " + ", ".join(str(p) for p in result.write(args.out)))
    if args.dicom_out:
        _write_dicom_out(args, result, backend, explainer)
    if args.report:
        from kidneyct.inference.report import write_study_report

        print(f"report: {write_study_report(result, args.report, backend, args.checkpoint, explainer)}")
    for path, reason in result.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 0 if result.slices else 1


def _write_dicom_out(args, result, backend, explainer) -> None:
    from kidneyct.inference.dicom_results import write_dicom_results
    from kidneyct.inference.model_facts import ModelFacts

    facts = ModelFacts.from_loaded(backend.loaded, args.checkpoint)
    studies = write_dicom_results(result, args.dicom_out, backend, explainer, facts)
    for study in studies:
        print(f"wrote DICOM SR {study.sr} and {len(study.key_images)} key image(s) for study {study.study_uid}")
    if not studies:
        print("no DICOM series among the inputs: no DICOM results written", file=sys.stderr)


def cmd_explain(args) -> int:
    from kidneyct.inference.batch import open_backend, predict_inputs

    backend, explainer = open_backend(args.checkpoint, "torch", args.device, with_cam=True, cam_layer=args.layer)
    result = predict_inputs(backend, args.inputs, batch_size=args.batch_size, cam_dir=args.out,
                            explainer=explainer, progress=not args.no_progress,
                            max_decoded_bytes=_mib(args.max_decoded_mb))
    for row in result.slices:
        print(f"{row.cam}  {row.predicted} {row.probabilities[row.predicted]:.3f}")
    for path, reason in result.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 0 if result.slices else 1


def cmd_study_settings(args) -> int:
    from kidneyct.training.study_settings import fit_study_settings

    payload = fit_study_settings(args.checkpoint, args.out, args.data, args.device)
    features = payload["scope"]["features"]
    print(json.dumps({"out": args.out, "study_rule": payload["study_rule"],
                      "feature_threshold": features["threshold"] if features else None,
                      "intensity": payload["intensity"] is not None}))
    return 0


def cmd_export(args) -> int:
    from kidneyct.inference.export import export_onnx

    print(f"wrote {export_onnx(args.checkpoint, args.out, opset=args.opset)}")
    return 0


def cmd_serve(args) -> int:
    _openmp_threads_wait_asleep()
    from kidneyct.serve import ServeSettings, serve
    from kidneyct.serve.service import LOOPBACK_HOSTS

    settings = ServeSettings(
        max_upload_bytes=_mib(args.max_upload_mb), max_image_side=args.max_side,
        max_decoded_bytes=_mib(args.max_decoded_mb), request_timeout_s=args.timeout,
        body_timeout_s=args.body_timeout, max_pending=args.max_pending, max_connections=args.max_connections,
        max_connections_per_client=args.max_connections_per_client,
        device=args.device, allow_non_ct_dicom=args.allow_non_ct,
        token=args.token or os.environ.get("KIDNEYCT_TOKEN") or None,
        allowed_hosts=(*LOOPBACK_HOSTS, *args.allow_host), allowed_origins=tuple(args.allow_origin))
    serve(args.checkpoint, settings, host=args.host, port=args.port)
    return 0


def _mib(megabytes: float) -> int:
    return int(megabytes * 1024 * 1024)


def cmd_listen(args) -> int:
    _openmp_threads_wait_asleep()
    from kidneyct.serve.dicom_node import Destination, DicomNode, NodeLimits, NodeSettings, Peer

    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # one line per association otherwise
    limits = NodeLimits(max_instance_bytes=_mib(args.max_instance_mb), max_association_bytes=_mib(args.max_association_mb),
                        max_series_bytes=_mib(args.max_series_mb), max_associations=args.max_associations,
                        max_peer_associations=args.max_peer_associations, idle_timeout_s=args.peer_timeout)
    settings = NodeSettings(out=Path(args.out), ae_title=args.ae_title, host=args.host, port=args.port,
                            idle_seconds=args.idle_seconds, threshold=args.threshold, top_k=args.top_k,
                            device=args.device, limits=limits, allowed_peers=tuple(map(Peer.parse, args.allow_ae)),
                            forward=Destination.parse(args.forward) if args.forward else None)
    DicomNode(args.checkpoint, settings).serve_forever()
    return 0


def cmd_demo(args) -> int:
    from kidneyct.experiments.demo import run_demo

    report = run_demo(Path(args.out), n=args.n, epochs=args.epochs, image_size=args.image_size,
                      device=args.device, seed=args.seed)
    print(f"\nDemo finished. Report: {report.html}\n(synthetic phantoms; {DISCLAIMER})")
    return 0


# Besides kidneyct's own errors, the built-in kinds raised for bad options, inputs and machines end in one line
# too: ValueError (an impossible split), KeyError (an unknown model), OSError (a missing or unwritable file),
# RuntimeError (torch's way to report a device or memory problem). -v adds the traceback; any other exception
# is a bug and keeps it.
EXPECTED_ERRORS = (KidneyCTError, ValueError, KeyError, OSError, RuntimeError)


def _report(error: BaseException, verbose: bool) -> int:
    message = error.args[0] if isinstance(error, KeyError) and error.args else error
    print(f"kidneyct: error: {message}", file=sys.stderr)
    if verbose:
        log.debug("traceback", exc_info=error)
    return 2


def _check_image_size(parser: argparse.ArgumentParser, args) -> None:
    """An --image-size below the model's minimum ends the parse (no run folder made, nothing decoded)."""
    size = getattr(args, "image_size", None)
    if size is None:
        return
    model = "seed-cnn" if args.command == "demo" else (getattr(args, "model", None) or args.train_defaults.model)
    try:
        minimum = get_spec(model).min_image_size
    except KeyError:
        return  # an unknown model is reported by the run with the list of known ones
    if size < minimum:
        parser.error(f"argument --image-size: {model} needs at least {minimum} px, got {size}")


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser(_recipe_argument(argv))
    except (KeyError, ValueError) as error:
        return _report(error, verbose=False)
    args = parser.parse_args(argv)
    _check_image_size(parser, args)
    # A handler on the package logger for this call only: basicConfig is a no-op when the host
    # (a notebook, pytest, an app embedding kidneyct) already configured the root logger.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    package_logger = logging.getLogger("kidneyct")
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.handler(args)
    except EXPECTED_ERRORS as error:
        return _report(error, args.verbose)
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)


if __name__ == "__main__":
    raise SystemExit(main())
