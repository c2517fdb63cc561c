"""Build the model kidneyct ships (`make model`): what it trains on, with which recipe, what it is checked on and
how its card describes it. Change SPEC (and rerun `make model`) when the default recipe or the data change.

    python benchmarks/shipped_model.py                  # data from ../shared/data (or $KIDNEYCT_DATA)
    python benchmarks/shipped_model.py --work runs/shipped-model

Writes src/kidneyct/weights/default.pt (fp16 weights, model card inside), default.onnx (its export) and
docs/model-card.md. About 10-20 minutes on 2 CPU cores. CI does not run it: the built files are committed.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from kidneyct.checkpoint import Source, SourceValidation
from kidneyct.config import DEFAULT_RECIPE
from kidneyct.experiments.ship import ExternalSource, ShipSpec, TrainingSource, package, ship
from kidneyct.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("KIDNEYCT_DATA", "../shared/data"))  # relative to the repository, as the card shows it

KAGGLE = Source(
    "kaggle-ct-kidney", grouping="CT series inferred from the images (near-duplicates, neighbouring file numbers)",
    licence="unconfirmed",
    citation="Kaggle 'CT KIDNEY DATASET: Normal-Cyst-Tumor and Stone' (Islam MN et al., Sci Rep 12, 2022, "
             "doi:10.1038/s41598-022-15634-4), axial slices exported as JPG from one hospital in Dhaka (10 tumor "
             "scans; no patient identifiers); a partial copy, re-encoded to 256 px grey; its licence could not be "
             "confirmed.")
KITS23 = Source("kits23-slices", grouping="case id (one slice per patient)", licence="CC BY-NC-SA 4.0", patients=166,
                citation="KiTS23 challenge (Heller N. et al., github.com/neheller/kits23), one display-windowed "
                         "axial slice per patient, many hospitals' scanners.")
PANCREAS = Source("pancreas-ct-normal", grouping="patient id in the file name", licence="CC BY 3.0", patients=39,
                  citation="NIH Pancreas-CT (Roth H. et al., The Cancer Imaging Archive): normal kidneys of healthy "
                           "kidney donors and patients without major abdominal disease, another hospital.")

CV_COMMAND = "kidneyct cv --data ../shared/data/ct-kidney --folds 5 --repeats 2 --kidney-crop"
CV_SPLIT = ("5-fold grouped cross-validation x 2 repeats, pooled out of fold (docs/experiments.md row 26): the "
            "recipe on unseen series, not these weights")

SPEC = ShipSpec(
    name=f"kidneyct default ({DEFAULT_RECIPE}), placeholder until the segmenting model",
    recipe=DEFAULT_RECIPE,
    train_on=TrainingSource(KAGGLE, str(DATA / "ct-kidney")),
    summary=("A slice classifier, Tumor vs Normal, trained by the default recipe (seed-cnn from scratch at 96 px on "
             "the kidney crop) on the Kaggle CT kidney slices: what the pipeline could learn from one hospital's "
             "export. It ranks unseen series of that dataset moderately and has not been shown to find kidney "
             "tumors anywhere else; it is shipped so that kidneyct runs the moment it is installed, and will be "
             "replaced by a model that segments kidney and tumor and learns from many patients."),
    weights_licence="unconfirmed (inherited from the Kaggle slices it was trained on)",
    licence_note=("The weights carry the most restrictive licence of their training data: the Kaggle slices, whose "
                  "licence could not be confirmed, so use them for research and teaching only and do not "
                  "redistribute them for any other use. KiTS23 (CC BY-NC-SA 4.0) and Pancreas-CT (CC BY 3.0) "
                  "were only predicted for the checks below, never trained on; a model trained on KiTS23 will be "
                  "non-commercial, share-alike (CC BY-NC-SA 4.0)."),
    external=[
        ExternalSource(KITS23, {"Tumor": str(DATA / "kits23-slices" / "Tumor"),
                                "Normal": str(DATA / "kits23-slices" / "Normal")}, unit="patient"),
        ExternalSource(PANCREAS, {"Normal": str(DATA / "pancreas-ct-normal" / "Normal")}),
    ],
    recorded=[
        SourceValidation(KAGGLE.name, CV_SPLIT, "slice", 3244, {"roc_auc": 0.697, "sensitivity_at_specificity_0.90":
                                                               0.377, "specificity_at_sensitivity_0.90": 0.214},
                         CV_COMMAND),
        SourceValidation(KAGGLE.name, CV_SPLIT, "series", 37, {"roc_auc": 0.707, "sensitivity_at_specificity_0.90":
                                                              0.200, "specificity_at_sensitivity_0.90": 0.556},
                         CV_COMMAND),
    ],
    limitations=[
        "Trained on one hospital's JPG export with 10 tumor patients: the acquisition, not the lesion, is the easiest "
        "signal there (the shortcut probe in docs/experiments.md), so its calls do not transfer to other scanners.",
        "Slices only: a series or volume is called by the mean of its 3 highest in-scope slices; every training slice "
        "was contrast-enhanced, so a non-contrast scan is out of what it knows (a warning says so).",
        "The scope gate (the hand-made kidney locator and the distance to the training slices) refuses slices far "
        "from the kidneys; a slice out of scope gets no call.",
    ],
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/shipped-model", help="the training run's folder")
    parser.add_argument("--reuse", action="store_true", help="package the run already in --work: no training")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.chdir(ROOT)  # the paths the card shows are relative to the repository
    weights, page = Path("src/kidneyct/weights"), Path("docs/model-card.md")
    if args.reuse:
        path = package(RunFolder(args.work).best, SPEC, weights, page)
    else:
        path = ship(SPEC, Path(args.work), weights, page)
    print(f"shipped {path}; model card docs/model-card.md")


if __name__ == "__main__":
    main()
