"""Command line: parses arguments and calls the Python API, nothing more. One module per command group (data,
training, evaluate, predict, serve, demo), the options they share in `options`.

Building the parser, `--help`, `kidneyct recipes` and `kidneyct models` import neither torch nor matplotlib:
these modules import only light ones (config, the model specs, the demo's defaults) at the top, and each handler
imports the stage it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from kidneyct.about import DISCLAIMER, __version__
from kidneyct.cli import data, demo, evaluate, predict, serve, training
from kidneyct.cli.options import recipe_argument
from kidneyct.config import TrainConfig, apply_recipe
from kidneyct.errors import KidneyCTError
from kidneyct.models import get_spec

log = logging.getLogger(__name__)

# Besides kidneyct's own errors, the built-in kinds raised for bad options, inputs and machines end in one line
# too: ValueError (an impossible split), KeyError (an unknown model), OSError (a missing or unwritable file),
# RuntimeError (torch's way to report a device or memory problem). -v adds the traceback; any other exception
# is a bug and keeps it.
EXPECTED_ERRORS = (KidneyCTError, ValueError, KeyError, OSError, RuntimeError)


def build_parser(recipe: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; `recipe` (the --recipe given) supplies the training options' defaults."""
    defaults = TrainConfig(data="", out="")
    if recipe is not None:
        defaults = apply_recipe(defaults, recipe)
    parser = argparse.ArgumentParser(prog="kidneyct", description=f"kidneyct {__version__}. {DISCLAIMER}")
    parser.add_argument("--version", action="version", version=f"kidneyct {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.set_defaults(train_defaults=defaults)
    sub = parser.add_subparsers(dest="command", required=True)
    data.add_parsers(sub)
    training.add_parsers(sub, defaults)
    evaluate.add_parsers(sub)
    predict.add_parsers(sub)
    serve.add_parsers(sub)
    demo.add_parsers(sub)
    return parser


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
    model = getattr(args, "model", None) or args.train_defaults.model
    try:
        minimum = get_spec(model).min_image_size
    except KeyError:
        return  # an unknown model is reported by the run with the list of known ones
    if size < minimum:
        parser.error(f"argument --image-size: {model} needs at least {minimum} px, got {size}")


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser(recipe_argument(argv))
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


__all__ = ["EXPECTED_ERRORS", "build_parser", "main"]
