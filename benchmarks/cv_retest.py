"""A finished cross-validation's fold models tested again with other inference settings (no training), compared,
paired, with the source run on the same folds (kidneyct.experiments.retest).

    python benchmarks/cv_retest.py runs/cv-seg-synth runs/cv-seg-synth-midline --midline-band 0.2
    python benchmarks/cv_retest.py runs/cv-seg-synth-midline runs/cv-seg-synth-midline-tta --tta
    python benchmarks/cv_retest.py runs/cv-seg-foldseed1 runs/cv-seg-foldseed1-centre --midline-centre
    python benchmarks/cv_retest.py runs/cv-seg-foldseed1 runs/cv-seg-foldseed1-map --slice-probability map

Writes the new folder's cv.md, cv.json and predictions.csv, and per fold best.pt with the setting and a
calibration refitted on that fold's validation split.
"""

from __future__ import annotations

import argparse
import logging

from kidneyct.experiments.retest import retest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a finished `kidneyct cv` folder of a segmenting model")
    parser.add_argument("out", help="the new cross-validation folder")
    parser.add_argument("--midline-band", type=float, default=None,
                        help="kidney-map components wholly within this share of the view's half side around its "
                             "midline are not kidney (0: off; default: the source run's)")
    parser.add_argument("--midline-centre", action=argparse.BooleanOptionalAction, default=None,
                        help="components centred within the band are not kidney either, horseshoes aside "
                             "(default: the source run's)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                        help="each crop also seen mirrored, outputs averaged (default: the source run's)")
    parser.add_argument("--slice-probability", choices=("head", "map", "mean"), default=None,
                        help="the slice's tumor probability from the slice head, the tumor map's peak inside the "
                             "kidney, or their mean (default: the source run's)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    changes = {name: value for name, value in (("midline_band", args.midline_band),
                                               ("midline_centre", args.midline_centre), ("tta", args.tta),
                                               ("slice_probability", args.slice_probability))
               if value is not None}
    result = retest(args.source, args.out, changes, args.device)
    print(f"{result.out / 'cv.md'}")
    return result


if __name__ == "__main__":
    main()
