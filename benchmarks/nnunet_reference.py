"""nnU-Net 2D reference on the kits23 slices (issue 24, item 7): convert, train on our folds, score like kidneyct.

Not part of the package and not run by `make test`. It needs nnunetv2 (and its torch) in its OWN virtual
environment, e.g.:

    python3 -m venv /work/nnunet-venv && /work/nnunet-venv/bin/pip install torch==2.14.1 nnunetv2

and writes everything nnU-Net makes under a work folder outside the repository (default /work/nnunet-work):
the images are the KiTS23 renders (CC BY-NC-SA), never to be committed. Only the scores JSON goes into
benchmarks/results/.

Steps (each a subcommand; `commands` prints the exact nnU-Net shell commands of the whole run):

    PY=/work/nnunet-venv/bin/python
    $PY benchmarks/nnunet_reference.py convert        # raw dataset (PNG, NaturalImage2DIO) + fold-0 test images
    $PY benchmarks/nnunet_reference.py trainer --epochs 12 --iterations 10 --val-iterations 1
                                                      # registers nnUNetTrainer_kct_12ep_10it inside nnunetv2
    $PY benchmarks/nnunet_reference.py run plan       # plan_and_preprocess (2 mm target spacing, -np 1), batch 2,
                                                      # splits_final.json from our folds
    $PY benchmarks/nnunet_reference.py run train   --trainer nnUNetTrainer_kct_12ep_10it
    $PY benchmarks/nnunet_reference.py run predict --trainer nnUNetTrainer_kct_12ep_10it
    $PY benchmarks/nnunet_reference.py score       --trainer nnUNetTrainer_kct_12ep_10it

CPU budget: nnU-Net's default 2D plan for the native 462 px renders is batch 12 x 384x512 patches, about
6 minutes per iteration on the 2 shared cores here (250 iterations x 1000 epochs by default). `run plan`
therefore lets nnU-Net's planner plan at a 2 mm target spacing (`--spacing`, in render pixels: ~231 px,
patch 192x256, the whole body in one patch) and lowers the planned batch size (`--batch-size`, default 2;
the planned one is kept as planned_batch_size in the plans). nnU-Net resamples the input and resamples its
predictions back to the native 462 px itself. The trainer subclass (`trainer`) sets num_epochs,
num_iterations_per_epoch and num_val_iterations_per_epoch and saves checkpoint_latest every epoch, so a run
cut short continues with `nnUNetv2_train ... --c`.

The raw dataset holds all 263 kits23 cases in imagesTr/labelsTr (labels 0 background, 1 kidney, 2 tumor,
3 cyst: cyst kept as its own label), and splits_final.json holds our 5 patient folds
(/work/lab/kits23_folds_seed0.json), so `nnUNetv2_train <id> 2d 0` trains on folds 1-4 and validates on
exactly our fold 0. The fold's images are also copied to imagesTs_fold<k> for `nnUNetv2_predict
--save_probabilities`; those predictions are what `score` measures.

Scores (as kidneyct measures its segmenter, kidneyct.evaluation.segmentation): per-slice Dice on the test
fold; tumor Dice over the slices whose TRUE mask shows tumor (pred label 2 vs true 2), kidney Dice over the
slices whose true mask shows kidney with its masses (pred 1|2|3 vs true 1|2|3), pixels unknown (255) in the
true mask left out, Dice 1 when both are empty; median (kidneyct's headline) and mean (KiTS's) with 95%
bootstrap intervals; slice ROC-AUC of Tumor vs Normal (manifest classes) scored by the largest tumor softmax
probability on the slice (and, as a second reading, by the predicted tumor area). `score --kidneyct-src DIR`
(a kidneyct source tree, e.g. `git archive main src/kidneyct`) also runs kidneyct's own functions on the same
label maps and stops if they disagree with the copy below.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

try:  # nnU-Net's own environment; fail early and clearly without it
    import nnunetv2  # noqa: F401
    import numpy as np
    from PIL import Image
except ImportError as exc:  # pragma: no cover - the message is the point
    sys.exit(
        f"nnunet_reference.py needs nnunetv2 (missing: {exc.name}). Install it in a separate environment:\n"
        "  python3 -m venv /work/nnunet-venv && /work/nnunet-venv/bin/pip install torch==2.14.1 nnunetv2\n"
        "and run this script with /work/nnunet-venv/bin/python."
    )

DATA = Path("/work/shared/data/kits23-slices")
FOLDS = Path("/work/lab/kits23_folds_seed0.json")
WORK = Path("/work/nnunet-work")
DATASET_ID = 624
DATASET_NAME = f"Dataset{DATASET_ID:03d}_KiTS23Slices"
CONFIG = "2d"
PLANS = "nnUNetPlans_cpu"  # nnU-Net's planner at a 2 mm target spacing (half the native 462 px), batch size lowered
ENV_KEYS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA", "nnUNet_def_n_proc")
REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "nnunet-reference.json"


def env(work: Path) -> dict:
    e = dict(os.environ)
    e.update(
        nnUNet_raw=str(work / "nnUNet_raw"),
        nnUNet_preprocessed=str(work / "nnUNet_preprocessed"),
        nnUNet_results=str(work / "nnUNet_results"),
    )
    e.setdefault("nnUNet_n_proc_DA", "1")  # 2 shared cores: one augmentation worker beside the trainer
    e.setdefault("nnUNet_def_n_proc", "1")  # one process for resampling/export in validation and prediction
    return e


def manifest(data: Path) -> list[dict]:
    with open(data / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def convert(args) -> None:
    rows = manifest(args.data)
    folds = json.loads(args.folds.read_text())
    raw = args.work / "nnUNet_raw" / DATASET_NAME
    for sub in ("imagesTr", "labelsTr", f"imagesTs_fold{args.fold}"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    for r in rows:
        case = r["case_id"]
        img = np.asarray(Image.open(args.data / r["file"]))
        msk = np.asarray(Image.open(args.data / r["mask"]))
        if img.ndim != 2 or img.shape != msk.shape or msk.max() > 3:
            raise SystemExit(f"{case}: unexpected image {img.shape} / mask {msk.shape} max {msk.max()}")
        # PNG, lossless, one grey channel "CT" (_0000); nnU-Net's NaturalImage2DIO reads it as 1x1x462x462
        shutil.copyfile(args.data / r["file"], raw / "imagesTr" / f"{case}_0000.png")
        Image.fromarray(msk.astype(np.uint8)).save(raw / "labelsTr" / f"{case}.png")
        if folds[case] == args.fold:
            shutil.copyfile(args.data / r["file"], raw / f"imagesTs_fold{args.fold}" / f"{case}_0000.png")
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3},
        "numTraining": len(rows),
        "file_ending": ".png",
        "overwrite_image_reader_writer": "NaturalImage2DIO",
        "name": "kits23-slices",
        "description": "one display-windowed 8-bit axial slice per KiTS23 patient (kidneyct issue 24)",
        "licence": "CC BY-NC-SA 4.0 (KiTS23)",
    }
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))
    n_test = sum(1 for c in folds.values() if c == args.fold)
    print(f"{raw}: {len(rows)} training cases, {n_test} copied to imagesTs_fold{args.fold}")


def write_splits(work: Path, folds_path: Path) -> Path:
    folds = json.loads(folds_path.read_text())
    k = sorted(set(folds.values()))
    splits = [
        {"train": sorted(c for c, f in folds.items() if f != v), "val": sorted(c for c, f in folds.items() if f == v)}
        for v in k
    ]
    out = work / "nnUNet_preprocessed" / DATASET_NAME / "splits_final.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(splits, indent=1))
    print(f"{out}: {len(splits)} folds, val sizes {[len(s['val']) for s in splits]}")
    return out


TRAINER_TEMPLATE = '''"""Written by kidneyct benchmarks/nnunet_reference.py: nnU-Net's default trainer on a CPU budget."""
import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {name}(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = {val_iterations}
        self.save_every = 1  # checkpoint_latest after every epoch: a cut run continues with `nnUNetv2_train ... --c`
'''


def trainer_name(epochs: int, iterations: int) -> str:
    return f"nnUNetTrainer_kct_{epochs}ep_{iterations}it"


def install_trainer(args) -> None:
    """nnU-Net finds trainers by class name inside nnunetv2/training/nnUNetTrainer: put the subclass there."""
    name = trainer_name(args.epochs, args.iterations)
    folder = Path(nnunetv2.__file__).parent / "training" / "nnUNetTrainer" / "variants" / "training_length"
    path = folder / f"{name}.py"
    path.write_text(TRAINER_TEMPLATE.format(name=name, epochs=args.epochs, iterations=args.iterations,
                                            val_iterations=args.val_iterations))
    print(f"{path}\n-tr {name}: {args.epochs} epochs x {args.iterations} iterations "
          f"({args.val_iterations} validation iterations per epoch)")


def plans_path(work: Path) -> Path:
    return work / "nnUNet_preprocessed" / DATASET_NAME / f"{PLANS}.json"


def command_lines(args) -> dict[str, list[str]]:
    raw = args.work / "nnUNet_raw" / DATASET_NAME
    spacing = ["999.0", str(args.spacing), str(args.spacing)]  # NaturalImage2DIO gives 2D images spacing (999, 1, 1)
    return {
        "plan": ["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", CONFIG, "-np", "1", "-npfp", "1",
                 "--verify_dataset_integrity", "-overwrite_target_spacing", *spacing,
                 "-overwrite_plans_name", PLANS],
        "train": ["nnUNetv2_train", str(DATASET_ID), CONFIG, str(args.fold), "-tr", args.trainer, "-p", PLANS,
                  "--npz", "-device", "cpu"],
        "predict": ["nnUNetv2_predict", "-i", str(raw / f"imagesTs_fold{args.fold}"),
                    "-o", str(predict_dir(args)), "-d", str(DATASET_ID), "-c", CONFIG, "-f", str(args.fold),
                    "-tr", args.trainer, "-p", PLANS, "-chk", args.checkpoint, "--save_probabilities",
                    "-device", "cpu", "-npp", "1", "-nps", "1"],
    }


def predict_dir(args) -> Path:
    return args.work / "predictions" / f"{args.trainer}_{PLANS}_fold{args.fold}"


def validation_dir(args) -> Path:
    return (args.work / "nnUNet_results" / DATASET_NAME / f"{args.trainer}__{PLANS}__{CONFIG}"
            / f"fold_{args.fold}" / "validation")


def set_batch_size(work: Path, batch_size: int) -> None:
    """The planner's batch size (12 at 192x256) is sized for a GPU; on 2 shared CPU cores we train with fewer."""
    path = plans_path(work)
    plans = json.loads(path.read_text())
    cfg = plans["configurations"][CONFIG]
    planned = cfg.get("planned_batch_size", cfg["batch_size"])
    cfg["planned_batch_size"] = planned
    cfg["batch_size"] = batch_size
    path.write_text(json.dumps(plans, indent=4))
    print(f"{path}: {CONFIG} batch size {planned} (planned) -> {batch_size}, patch {cfg['patch_size']}, "
          f"spacing {cfg['spacing']}")


def print_commands(args) -> None:
    e = env(args.work)
    print("export " + " ".join(f"{k}={e[k]}" for k in ENV_KEYS))
    for step, cmd in command_lines(args).items():
        print(" ".join(cmd))
        if step == "plan":
            print(f"# then `nnunet_reference.py run plan` sets the {CONFIG} batch size to {args.batch_size} and writes "
                  f"splits_final.json from {args.folds}")
        if step == "train":
            print(f"# its final validation predicts fold {args.fold} with the final checkpoint and --npz "
                  f"(probabilities) into {validation_dir(args)}; nnUNetv2_predict below is the same prediction")


def run(args) -> None:
    cmd = command_lines(args)[args.step]
    binary = Path(sys.executable).parent / cmd[0]
    cmd = [str(binary) if binary.exists() else cmd[0]] + cmd[1:]
    print("+", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, env=env(args.work), check=True)
    wall = time.time() - t0
    if args.step == "plan":
        set_batch_size(args.work, args.batch_size)
        write_splits(args.work, args.folds)
    record_timing(args.work, args.step if args.step == "plan" else f"{args.step}:{args.trainer}",
                  " ".join([cmd[0].split("/")[-1]] + cmd[1:]), wall)
    print(f"{args.step}: {wall / 60:.1f} min")


def record_timing(work: Path, key: str, command: str, wall: float) -> None:
    timings = work / "timings.json"
    t = json.loads(timings.read_text()) if timings.exists() else {}
    t[key] = {"command": command, "wall_s": round(wall, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    timings.write_text(json.dumps(t, indent=1))


MASK_UNKNOWN = 255
KIDNEY_LABELS = (1, 2, 3)  # kidney with its masses (kidneyct.evaluation.segmentation.KIDNEY_LABELS)
TUMOR_LABELS = (2,)


def dice(pred: np.ndarray, true: np.ndarray) -> float:
    """kidneyct.evaluation.segmentation.dice: Dice of two boolean maps, 1.0 when both are empty."""
    s = int(pred.sum()) + int(true.sum())
    return float(2.0 * np.logical_and(pred, true).sum() / s) if s else 1.0


def region_dice(pred: np.ndarray, true: np.ndarray, labels: tuple[int, ...]) -> float | None:
    """kidneyct.evaluation.segmentation.slice_dice on one slice: Dice of the region `labels`, None when the
    true mask (its known pixels) does not hold the region, so the slice does not count."""
    known = true != MASK_UNKNOWN
    region = np.isin(true, labels) & known
    return dice(np.isin(pred, labels) & known, region) if region.any() else None


def kidneyct_check(src: Path, preds: list[np.ndarray], trues: list[np.ndarray], tumor_d, kidney_d) -> dict:
    """kidneyct's own segmentation metrics on the same label maps; stop if the copy above disagrees."""
    sys.path.insert(0, str(src))
    from kidneyct.evaluation import segmentation as seg

    p, t = np.stack(preds), np.stack(trues)
    got = {"tumor_dice_median": seg.tumor_dice(p, t), "kidney_dice_median": seg.kidney_dice(p, t),
           "tumor_dice_mean": seg.mean_tumor_dice(p, t)}
    ours = {"tumor_dice_median": (float(np.median(tumor_d)), len(tumor_d)),
            "kidney_dice_median": (float(np.median(kidney_d)), len(kidney_d)),
            "tumor_dice_mean": float(np.mean(tumor_d))}
    if (seg.slice_dice(p, t, seg.TUMOR_LABELS) != list(tumor_d)
            or seg.slice_dice(p, t, seg.KIDNEY_LABELS) != list(kidney_d)):
        raise SystemExit(f"kidneyct.evaluation.segmentation ({seg.__file__}) disagrees: {got} vs {ours}")
    return {"module": seg.__file__, "tumor_dice": list(got["tumor_dice_median"]),
            "kidney_dice": list(got["kidney_dice_median"]), "mean_tumor_dice": got["tumor_dice_mean"],
            "agrees": True}


def auc(pos: list[float], neg: list[float]) -> float:
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def bootstrap(values, stat, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    v = np.asarray(values)
    s = [stat(v[rng.integers(0, v.size, v.size)]) for _ in range(n)]
    return [round(float(np.percentile(s, 2.5)), 4), round(float(np.percentile(s, 97.5)), 4)]


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median": round(float(np.median(values)), 4),
            "median_ci95": bootstrap(values, np.median), "mean": round(float(np.mean(values)), 4),
            "mean_ci95": bootstrap(values, np.mean)}


def score(args) -> None:
    folds = json.loads(args.folds.read_text())
    rows = [r for r in manifest(args.data) if folds[r["case_id"]] == args.fold]
    pred_dir = {"validation": validation_dir(args), "predict": predict_dir(args)}[args.source]
    per_case, tumor_d, kidney_d, pos, neg, pos_area, neg_area = [], [], [], [], [], [], []
    preds, trues = [], []
    missing = [r["case_id"] for r in rows if not (pred_dir / f"{r['case_id']}.png").exists()
               or not (pred_dir / f"{r['case_id']}.npz").exists()]
    if missing:
        raise SystemExit(f"{pred_dir}: {len(missing)} of the fold's {len(rows)} cases not predicted: {missing}")
    for r in rows:
        case, cls = r["case_id"], r["class"]
        true = np.asarray(Image.open(args.data / r["mask"]))
        pred = np.asarray(Image.open(pred_dir / f"{case}.png"))
        if pred.shape != true.shape:
            raise SystemExit(f"{case}: prediction {pred.shape} vs mask {true.shape}")
        probs = np.load(pred_dir / f"{case}.npz")["probabilities"]  # (labels, 1, H, W)
        p_tumor = float(probs[2].max())
        rec = {"case": case, "class": cls, "max_tumor_prob": round(p_tumor, 4),
               "pred_tumor_px": int((pred == 2).sum()), "true_tumor_px": int((true == 2).sum()),
               "pred_kidney_px": int(np.isin(pred, KIDNEY_LABELS).sum()),
               "true_kidney_px": int(np.isin(true, KIDNEY_LABELS).sum())}
        # kidneyct's rule: a slice counts for a structure when its TRUE mask shows it (not by its class)
        d = region_dice(pred, true, TUMOR_LABELS)
        if d is not None:
            tumor_d.append(d)
            rec["tumor_dice"] = round(d, 4)
        d = region_dice(pred, true, KIDNEY_LABELS)
        if d is not None:
            kidney_d.append(d)
            rec["kidney_dice"] = round(d, 4)
        if cls == "Tumor":
            pos.append(p_tumor)
            pos_area.append(rec["pred_tumor_px"])
        if cls == "Normal":
            neg.append(p_tumor)
            neg_area.append(rec["pred_tumor_px"])
        per_case.append(rec)
        preds.append(pred)
        trues.append(true)
    check = kidneyct_check(args.kidneyct_src, preds, trues, tumor_d, kidney_d) if args.kidneyct_src else None
    rng = np.random.default_rng(0)
    pos_a, neg_a = np.asarray(pos), np.asarray(neg)
    aucs = [auc(pos_a[rng.integers(0, pos_a.size, pos_a.size)], neg_a[rng.integers(0, neg_a.size, neg_a.size)])
            for _ in range(2000)]
    timings_path = args.work / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    cfg = json.loads(plans_path(args.work).read_text())["configurations"][CONFIG]
    default_plans = args.work / "nnUNet_preprocessed" / DATASET_NAME / "nnUNetPlans.json"
    native = (json.loads(default_plans.read_text())["configurations"][CONFIG] if default_plans.exists() else {})
    result_dir = args.work / "nnUNet_results" / DATASET_NAME / f"{args.trainer}__{PLANS}__{CONFIG}"
    trainer_src = Path(nnunetv2.__file__).parent / "training" / "nnUNetTrainer" / "variants" / "training_length"
    tr_text = (trainer_src / f"{args.trainer}.py").read_text() if (trainer_src / f"{args.trainer}.py").exists() else ""
    budget = {k: int(line.split("=")[1]) for line in tr_text.splitlines()
              for k in ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch")
              if line.strip().startswith(f"self.{k} =")}
    from importlib.metadata import version  # not `import torch`: scoring needs no torch

    out = {
        "what": "nnU-Net 2D reference on kits23-slices, kidneyct issue 24 item 7",
        "nnunetv2": version("nnunetv2"),
        "torch": version("torch"),
        "dataset": f"{DATASET_NAME}: all {len(folds)} kits23 cases, labels 0 bg, 1 kidney, 2 tumor, 3 cyst; "
                   "native 462x462 8-bit PNG (NaturalImage2DIO), channel 'CT'",
        "folds": str(args.folds), "test_fold": args.fold,
        "train_cases": sum(1 for f in folds.values() if f != args.fold), "test_cases": len(rows),
        "trainer": args.trainer, "budget": budget,
        "plans": PLANS,
        "plans_2d": {k: cfg.get(k) for k in ("batch_size", "planned_batch_size", "patch_size",
                                              "median_image_size_in_voxels", "spacing", "normalization_schemes")},
        "default_plans_2d_native_462px": {k: native.get(k) for k in ("batch_size", "patch_size", "spacing")},
        "predictions": f"{pred_dir} ({args.source})",
        "predictions_note": args.note,
        "device": "cpu (2 cores shared with other jobs, low priority)",
        "commands": {**{k: " ".join(v) for k, v in command_lines(args).items()},
                     "score": " ".join(["python", "benchmarks/nnunet_reference.py", *sys.argv[1:]])},
        "timings": timings,
        "checkpoint": str(result_dir / f"fold_{args.fold}" / args.checkpoint),
        "metrics": {
            "slices": {"test_fold": len(rows), **{c: sum(1 for r in rows if r["class"] == c)
                                                   for c in sorted({r["class"] for r in rows})}},
            "tumor_dice": {**summary(tumor_d), "over": "slices whose true mask shows tumor (label 2)"},
            "kidney_dice": {**summary(kidney_d), "over": "slices whose true mask shows kidney (labels 1|2|3)"},
            "tumor_vs_normal_auc": {"n_tumor": len(pos), "n_normal": len(neg), "auc": round(auc(pos, neg), 4),
                                    "auc_ci95": [round(float(np.percentile(aucs, 2.5)), 4),
                                                 round(float(np.percentile(aucs, 97.5)), 4)],
                                    "score": "max tumor softmax probability on the slice"},
            "tumor_vs_normal_auc_by_predicted_tumor_area": round(auc(pos_area, neg_area), 4),
            "kidneyct_check": check,
            "tumor_slices_with_no_tumor_predicted": sum(1 for r in per_case if r["class"] == "Tumor"
                                                        and r["pred_tumor_px"] == 0),
            "normal_slices_with_tumor_predicted": sum(1 for r in per_case if r["class"] == "Normal"
                                                      and r["pred_tumor_px"] > 0),
        },
    }
    out["training"] = epoch_times(result_dir / f"fold_{args.fold}")
    # per-case values stay with the KiTS23 data outside the repository; only the summary is committed
    per_case_path = args.work / f"per_case_{args.trainer}_fold{args.fold}_{args.source}.json"
    per_case_path.write_text(json.dumps(per_case, indent=1))
    out["per_case"] = str(per_case_path)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    doc.setdefault("runs", {})[args.trainer] = out
    doc["what"] = out.pop("what")
    doc["headline"] = max(doc["runs"], key=lambda t: doc["runs"][t]["budget"].get("num_epochs", 0)
                          * doc["runs"][t]["budget"].get("num_iterations_per_epoch", 0))
    args.out.write_text(json.dumps(dict(sorted(doc.items(), key=lambda kv: kv[0] == "runs")), indent=1) + "\n")
    m = out["metrics"]
    print(f"tumor Dice median {m['tumor_dice']['median']} mean {m['tumor_dice']['mean']} (n={len(tumor_d)}); "
          f"kidney Dice median {m['kidney_dice']['median']} mean {m['kidney_dice']['mean']} (n={len(kidney_d)}); "
          f"Tumor vs Normal AUC {m['tumor_vs_normal_auc']['auc']} -> {args.out}")


def epoch_times(fold_dir: Path) -> dict:
    """Epochs run and their summed wall time from nnU-Net's training log(s) (the final validation excluded)."""
    times, losses = [], []
    for log in sorted(fold_dir.glob("training_log_*.txt")):
        for line in log.read_text().splitlines():
            if "Epoch time:" in line:
                times.append(float(line.split("Epoch time:")[1].split()[0]))
            elif " train_loss " in line:
                losses.append(float(line.split("train_loss")[1]))
    return {"epochs_logged": len(times), "epoch_time_sum_s": round(sum(times), 1),
            "epoch_time_median_s": round(float(np.median(times)), 1) if times else None,
            "train_loss_first_last": [losses[0], losses[-1]] if losses else None}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--folds", type=Path, default=FOLDS)
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--fold", type=int, default=0)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("convert")
    sub.add_parser("splits")
    t = sub.add_parser("trainer")
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--iterations", type=int, required=True)
    t.add_argument("--val-iterations", type=int, default=5)
    for name in ("commands", "run", "score"):
        p = sub.add_parser(name)
        if name == "run":
            p.add_argument("step", choices=["plan", "train", "predict"])
        p.add_argument("--trainer", default=trainer_name(12, 10))
        p.add_argument("--spacing", type=float, default=2.0, help="2D target spacing in pixels of the 462 px render")
        p.add_argument("--batch-size", type=int, default=2)
        p.add_argument("--checkpoint", default="checkpoint_final.pth")
        if name == "score":
            p.add_argument("--out", type=Path, default=RESULT)
            p.add_argument("--source", choices=["validation", "predict"], default="predict",
                           help="score nnUNetv2_predict's output or the training run's final validation (--npz)")
            p.add_argument("--kidneyct-src", type=Path, default=None,
                           help="a kidneyct source tree (holding kidneyct/evaluation/segmentation.py): also score "
                                "with kidneyct's own functions and stop if they disagree")
            p.add_argument("--note", default=None, help="a line about the predictions, kept in the JSON")
    args = ap.parse_args(argv)
    if args.work.resolve().is_relative_to(REPO):
        raise SystemExit("--work must lie outside the repository (the KiTS23 images may not be committed)")
    {"convert": convert, "splits": lambda a: write_splits(a.work, a.folds), "trainer": install_trainer,
     "commands": print_commands, "run": run, "score": score}[args.cmd](args)


if __name__ == "__main__":
    main()
