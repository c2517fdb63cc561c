"""`kidneyct train`, `cv`, `compare-splits`, `recipes`, `models` and `study-settings`: training runs and what
they are made of."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kidneyct.cli.options import add_data, add_device, add_train_options, train_config
from kidneyct.cli_types import existing_file
from kidneyct.config import RECIPES, default_recipe
from kidneyct.models import list_models


def add_parsers(sub, defaults) -> None:
    p = sub.add_parser("train", help="train a model on a class-folder dataset")
    add_train_options(p, defaults)
    p.add_argument("--out", default=None, help="run folder (default runs/<model>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--evaluate", action="store_true", help="evaluate best.pt on the test split afterwards")
    p.set_defaults(handler=cmd_train)
    p = sub.add_parser("compare-splits", help="train on a random and a grouped split; one comparison table")
    add_train_options(p, defaults)
    p.add_argument("--out", default=None, help="folder (default runs/compare-<model>)")
    p.set_defaults(handler=cmd_compare_splits)
    _add_cv(sub, defaults)
    sub.add_parser("recipes", help="list named training recipes").set_defaults(handler=cmd_recipes)
    sub.add_parser("models", help="list registered models").set_defaults(handler=cmd_models)
    p = sub.add_parser("study-settings", help="add the study rule, scope statistics and intensity profile to a "
                                              "checkpoint trained before they were recorded")
    p.add_argument("--checkpoint", required=True, type=existing_file, help="a checkpoint with its split.csv beside it")
    p.add_argument("--out", required=True, help="the new checkpoint (the old one is left as it is)")
    add_data(p, help="dataset folder (default: the one it was trained on)")
    add_device(p, "cpu")
    p.set_defaults(handler=cmd_study_settings)


def _add_cv(sub, defaults) -> None:
    p = sub.add_parser("cv", help="grouped, class-stratified k-fold cross-validation: one training per fold")
    add_train_options(p, defaults)
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
                   help="reuse the folds OUT already holds (same settings, same test images) and continue a fold killed "
                        "mid-training from its last.pt: finish a killed run or add repeats without training the first "
                        "ones again")
    p.add_argument("--out", default=None, help="folder (default runs/cv-<model>)")
    p.set_defaults(handler=cmd_cv)


def cmd_train(args) -> int:
    from kidneyct.data.cache import CacheSettings
    from kidneyct.experiments.evaluate import evaluate
    from kidneyct.training.distributed import is_main_process
    from kidneyct.training.train import train

    config = train_config(args, args.out or "")
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


def cmd_compare_splits(args) -> int:
    from kidneyct.experiments.compare import compare_splits

    config = train_config(args, args.out or "")
    out = args.out or f"runs/compare-{config.model}"
    compare_splits(replace(config, out=out), out)
    print(Path(out, "comparison.md").read_text())
    return 0


def cmd_cv(args) -> int:
    from kidneyct.experiments.cv import CVConfig, cross_validate

    config = train_config(args, args.out or "")
    config = replace(config, out=args.out or f"runs/cv-{config.model}")
    result = cross_validate(CVConfig(config, folds=args.folds, fold_seed=args.fold_seed,
                                     repeats=args.repeats, compare=args.compare, keep_models=args.keep_models,
                                     bootstrap=args.bootstrap, resume=args.resume))
    print((result.out / "cv.md").read_text())
    return 0


def cmd_recipes(args) -> int:
    for name, recipe in RECIPES.items():
        settings = ", ".join(f"{k}={v}" for k, v in recipe["settings"].items())
        marker = ("  [the default of train, cv and compare-splits with --data]" if name == default_recipe(False)
                  else "  [the default of train, cv and compare-splits with --sources]" if name == default_recipe(True)
                  else "")
        print(f"{name}{marker}\n    {recipe['description']}\n    {settings}")
    return 0


def cmd_models(args) -> int:
    for spec in list_models():
        print(f"{spec.name:20s} {spec.description} [default {spec.image_size} px, pretrained "
              f"{spec.pretrained_default}, backbone {'frozen' if spec.frozen_default else 'trained'}]")
    return 0


def cmd_study_settings(args) -> int:
    import json

    from kidneyct.training.study_settings import refit_study_settings

    study = refit_study_settings(args.checkpoint, args.out, args.data, args.device).study
    print(json.dumps({"out": args.out, "study_rule": study.rule.to_dict(),
                      "feature_threshold": study.features.threshold if study.features else None,
                      "intensity": study.intensity is not None}))
    return 0
