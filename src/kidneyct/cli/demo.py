"""`kidneyct demo-train`: phantoms -> train seed-cnn -> evaluate, all on a built-in default (`make demo-train`;
`make demo` runs the shipped model on a real scan with `kidneyct predict`)."""

from __future__ import annotations

from pathlib import Path

from kidneyct.about import DISCLAIMER
from kidneyct.cli.options import add_device
from kidneyct.experiments import demo as demo_defaults


def add_parsers(sub) -> None:
    p = sub.add_parser("demo-train", help="phantoms -> train seed-cnn -> evaluate, all on a built-in default")
    p.add_argument("--out", default="runs/demo-train")
    p.add_argument("--n", type=int, default=demo_defaults.DEMO_N, help="phantom slices (Tumor and Normal)")
    p.add_argument("--epochs", type=int, default=demo_defaults.DEMO_EPOCHS)
    p.add_argument("--image-size", type=int, default=demo_defaults.DEMO_IMAGE_SIZE)
    add_device(p)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_demo_train, model="seed-cnn")


def cmd_demo_train(args) -> int:
    from kidneyct.experiments.demo import run_demo

    report = run_demo(Path(args.out), n=args.n, epochs=args.epochs, image_size=args.image_size,
                      device=args.device, seed=args.seed)
    print(f"\nDemo finished. Report: {report.html}\n(synthetic phantoms; {DISCLAIMER})")
    return 0
