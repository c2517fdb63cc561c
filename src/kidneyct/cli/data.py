"""`kidneyct data ...`: phantoms, series groups, the shortcut probe, synthetic lesions and the leakage audit."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from kidneyct.cli.options import add_data, add_device, add_workers

log = logging.getLogger(__name__)


def add_parsers(sub) -> None:
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    _add_phantom(data)
    _add_groups(data)
    _add_probe(data)
    _add_synth(data)
    _add_audit(data)


def _add_phantom(sub) -> None:
    p = sub.add_parser("phantom", help="generate synthetic abdominal CT phantoms (HU) with lesion masks")
    p.add_argument("--out", required=True, help="output folder (class sub-folders are created)")
    p.add_argument("--n", type=int, default=400, help="number of slices in total (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="slice side in pixels (default 256)")
    p.add_argument("--classes", default="normal,cyst,tumor,stone", help="classes to generate (default all four)")
    p.add_argument("--format", choices=["png", "dicom", "nifti"], default="png")
    p.add_argument("--masks", action="store_true", help="also write kidney/tumor/cyst label masks under masks/ "
                                                         "(png and nifti; docs/sources.md)")
    p.set_defaults(handler=cmd_phantom)


def _add_groups(sub) -> None:
    p = sub.add_parser("groups", help="infer which images belong to one CT series")
    add_data(p)
    p.add_argument("data_positional", nargs="?", metavar="DATA", help=argparse.SUPPRESS)  # deprecated: use --data
    p.add_argument("--classes", default="all", help="classes to include (default all four)")
    p.add_argument("--out", default=None, help="write one group id per image to this CSV")
    add_workers(p)
    p.set_defaults(handler=cmd_groups)


def _add_probe(sub) -> None:
    p = sub.add_parser("probe", help="shortcut probe: class from the background alone; model accuracy with the "
                                     "kidneys blanked vs kept; over several sources, the source probe")
    add_data(p)
    p.add_argument("--sources", default=None, metavar="FILE", help="a sources TOML instead of --data: several sources "
                                                                    "add the source probe")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--cv", default=None, metavar="CV_DIR", help="a kidneyct cv folder: its fold models on their "
                                                                      "test folds (with --sources: its out-of-fold scores)")
    source.add_argument("--checkpoint", default=None, help="a checkpoint, on its split.csv's test images")
    p.add_argument("--classes", default="tumor,normal", help="task of the background probe (default tumor,normal)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    add_device(p)
    add_workers(p)
    p.add_argument("--out", required=True, help="report folder (probe.md, probe.json)")
    p.set_defaults(handler=cmd_probe)


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="insert synthetic lesions into real slices' located kidneys: examples with "
                                     "masks, a manifest and a contact sheet")
    add_data(p, required=True, help="dataset folder above the class folders (real slices)")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=48, help="examples to write (default 48)")
    p.add_argument("--kind", choices=["tumor", "cyst"], default="tumor")
    p.add_argument("--classes", default="all", help="classes to take slices from (default all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_synth)


def _add_audit(sub) -> None:
    p = sub.add_parser("audit", help="leakage audit of a split CSV: test images with near-duplicates in train")
    p.add_argument("--split", required=True, help="split.csv of a run")
    add_data(p, help="dataset folder (default: from the run's config.json)")
    p.add_argument("--query", default="test", choices=["val", "test"])
    p.add_argument("--out", default=None, help="write the audit as JSON here")
    p.set_defaults(handler=cmd_audit)


def cmd_phantom(args) -> int:
    from kidneyct.data.catalogue import parse_classes
    from kidneyct.synthetic.phantom import generate_dataset

    manifest = generate_dataset(args.out, n=args.n, seed=args.seed, size=args.size,
                                classes=parse_classes(args.classes), fmt=args.format, masks=args.masks)
    print(f"wrote {args.n} synthetic slices to {args.out} (manifest {manifest})")
    return 0


def cmd_groups(args) -> int:
    from kidneyct.data.survey import series_groups

    if args.data_positional is not None:
        log.warning("`kidneyct data groups DIR` is deprecated: give the dataset as --data DIR, as every command "
                    "takes it")
    data = args.data or args.data_positional
    if data is None:
        raise ValueError("give the dataset folder with --data DIR")
    print(json.dumps(series_groups(data, args.classes, args.workers, args.out), indent=2))
    return 0


def cmd_probe(args) -> int:
    from kidneyct.experiments.probe import run_probe

    if (args.data is None) == (args.sources is None):
        raise SystemExit("kidneyct data probe: give --data DIR or --sources FILE")
    run_probe(args.data, args.out, cv_dir=args.cv, checkpoint=args.checkpoint, classes=args.classes,
              folds=args.folds, seed=args.seed, device=args.device, workers=args.workers, sources_file=args.sources)
    print((Path(args.out) / "probe.md").read_text())
    return 0


def cmd_synth(args) -> int:
    from kidneyct.synthetic.lesion_examples import write_lesion_examples

    classes = None if args.classes == "all" else [c.strip() for c in args.classes.split(",")]
    manifest = write_lesion_examples(args.data, args.out, args.n, kind=args.kind, seed=args.seed, classes=classes)
    print(f"wrote synthetic {args.kind} examples (research only; synthetic lesions in real slices): {manifest}")
    return 0


def cmd_audit(args) -> int:
    from kidneyct.data.audit import audit_lines
    from kidneyct.data.survey import audit_split

    print("\n".join(audit_lines(audit_split(args.split, args.data, args.query, args.out))))
    return 0
