"""`kidneyct evaluate`: metrics, plots and reports of a checkpoint on its stored split."""

from __future__ import annotations

import json

from kidneyct.cli.options import add_cache, add_checkpoint, add_device, add_no_progress
from kidneyct.cli_types import int_range, output_folder


def add_parsers(sub) -> None:
    p = sub.add_parser("evaluate", help="metrics, plots and reports for a checkpoint")
    add_checkpoint(p, shipped=False)
    p.add_argument("--data", default=None, action="append",
                   help="dataset folder, repeatable (default: the sources it was trained on)")
    p.add_argument("--sources", default=None, metavar="FILE", help="a TOML file of sources (docs/sources.md)")
    p.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    p.add_argument("--out", default=None, type=output_folder, help="report folder (default: <run>/report)")
    add_device(p)
    p.add_argument("--bootstrap", type=int_range(1, 1_000_000), default=1000,
                   help="bootstrap resamples for the 95%% intervals")
    add_no_progress(p)
    add_cache(p)
    p.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from kidneyct.data.cache import CacheSettings
    from kidneyct.experiments.evaluate import evaluate

    result = evaluate(args.checkpoint, data=args.data, split=args.split, out=args.out, device=args.device,
                      n_boot=args.bootstrap, progress=not args.no_progress,
                      cache=CacheSettings(not args.no_cache, args.cache_dir), sources=args.sources)
    summary = {k: round(v["value"], 4) for k, v in result.metrics.items()
               if isinstance(v, dict) and "value" in v}
    print(json.dumps(summary, indent=2))
    print(f"report: {result.html}")
    return 0
