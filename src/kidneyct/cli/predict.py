"""`kidneyct predict`, `explain` and `export`: a checkpoint (or the shipped model) on files, folders, DICOM
series and NIfTI volumes, through the one prediction path (kidneyct.inference.run); this module writes what it
answers."""

from __future__ import annotations

import sys

from kidneyct.cli.options import (add_budget, add_checkpoint, add_device, add_no_progress, mib,
                                  openmp_threads_wait_asleep)
from kidneyct.cli_types import float_range, int_range, output_file, output_folder
from kidneyct.config import MAX_DECODED_MB


def add_parsers(sub) -> None:
    _add_predict(sub)
    p = sub.add_parser("explain", help="Grad-CAM overlays (image, heatmap, the call and its probability)")
    add_checkpoint(p)
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="images, folders, DICOM series or NIfTI volumes")
    p.add_argument("--out", required=True, type=output_folder, help="folder for the overlay PNGs")
    p.add_argument("--cam-layer", "--layer", dest="cam_layer", default=None,
                   help="Grad-CAM target layer (default: the model's)")
    p.add_argument("--batch-size", type=int_range(1, 65_536), default=16)
    add_device(p)
    add_budget(p, MAX_DECODED_MB)
    add_no_progress(p)
    p.set_defaults(handler=cmd_explain, backend="torch")
    p = sub.add_parser("export", help="export a checkpoint for deployment (ONNX, metadata embedded)")
    add_checkpoint(p, shipped=False)
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", required=True, type=output_file(".onnx"), help="output file, e.g. model.onnx")
    p.add_argument("--opset", type=int_range(7, 30), default=None, help="ONNX opset (default: the exporter's)")
    p.set_defaults(handler=cmd_export)


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="class probabilities, scope and study calls for images, folders, DICOM series "
                                       "and NIfTI volumes")
    add_checkpoint(p, "a kidneyct checkpoint (.pt) or an exported .onnx model")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders (recursive; a folder of DICOM files is one series) or NIfTI volumes")
    p.add_argument("--out", default=None, type=output_file(".csv", ".json"),
                   help="results .csv (studies and skipped files in sidecars) or .json; default: JSON lines on stdout")
    p.add_argument("--cam", default=None, metavar="DIR", type=output_folder,
                   help="write a Grad-CAM overlay PNG per slice here")
    p.add_argument("--report", default=None, metavar="DIR", type=output_folder,
                   help="write a study report here: one HTML page per series or volume (call, in-scope slices, key "
                        "images, with Grad-CAM heatmaps on the torch backend, warnings) and index.html")
    p.add_argument("--dicom-out", default=None, metavar="DIR", type=output_folder,
                   help="per DICOM study, a Comprehensive SR with the call and Secondary Capture key images "
                        "(Grad-CAM burned in) here, one folder per Study Instance UID")
    p.add_argument("--masks-out", default=None, metavar="DIR", type=output_folder,
                   help="segmenting models: per input a label mask on its own pixel grid (0 background, 1 kidney, "
                        "2 tumor; in-scope slices only): a PNG per image, a NIfTI volume per NIfTI volume or DICOM "
                        "series; with --dicom-out also a DICOM SEG per DICOM series")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default="auto",
                   help="onnx: run through onnxruntime (a .pt checkpoint is exported on the fly); auto: PyTorch for a "
                        ".pt checkpoint, onnxruntime for the shipped model unless --cam or --dicom-out needs Grad-CAM "
                        "(report heatmaps: --backend torch)")
    p.add_argument("--threshold", type=float_range(0, 1), default=None,
                   help="tumor threshold (default: the checkpoint's)")
    p.add_argument("--top-k", type=int_range(1, 10_000), default=None,
                   help="call studies by the mean of the k highest in-scope slices instead of the checkpoint's rule")
    p.add_argument("--batch-size", type=int_range(1, 65_536), default=64)
    p.add_argument("--workers", type=int_range(0, 256), default=None,
                   help="processes reading inputs while the model runs (default: one per CPU core; 0: none)")
    p.add_argument("--cam-layer", default=None, help="Grad-CAM target layer (default: the model's)")
    add_device(p)
    add_budget(p, MAX_DECODED_MB)
    add_no_progress(p)
    p.set_defaults(handler=cmd_predict)


def _predictor(args, heatmaps=None):
    """The Predictor a predict or explain command asks for (the shipped model without --checkpoint)."""
    from kidneyct.inference.predictor import PredictOptions, Predictor

    options = PredictOptions(threshold=getattr(args, "threshold", None), top_k=getattr(args, "top_k", None),
                             batch_size=args.batch_size, workers=getattr(args, "workers", None),
                             max_decoded_bytes=mib(args.max_decoded_mb), heatmaps=heatmaps,
                             cam_layer=args.cam_layer, progress=not args.no_progress,
                             masks=getattr(args, "masks_out", None))
    predictor = Predictor.open(args.checkpoint, args.device, args.backend, options)
    if options.masks is not None and not predictor.backend.segmenting:
        raise ValueError(f"--masks-out needs a segmenting model (one with kidney and tumor maps); "
                         f"{predictor.checkpoint.model.name} is a slice classifier")
    if getattr(args, "dicom_out", None) and predictor.backend.segmenting:  # a DICOM SEG beside each series' SR
        predictor = predictor.with_options(dicom_seg=str(args.dicom_out))
    return predictor


def _backend(args) -> str:
    """auto: PyTorch for a .pt checkpoint; for the shipped model its ONNX export (no torch to import, seconds
    faster to start) unless Grad-CAM overlays or DICOM key images need PyTorch (a report then shows its key
    images without heatmaps: --backend torch draws them)."""
    if args.backend != "auto":
        return args.backend
    return "onnx" if args.checkpoint is None and not (args.cam or args.dicom_out) else "torch"


def cmd_predict(args) -> int:
    openmp_threads_wait_asleep()
    from kidneyct.inference.writers import json_lines, write_results

    args.backend = _backend(args)
    predictor = _predictor(args, heatmaps=args.cam)
    if args.dicom_out and predictor.backend.name != "torch" and not predictor.backend.segmenting:
        raise ValueError("--dicom-out draws Grad-CAM key images for a classifier: it needs a .pt checkpoint and "
                         "--backend torch (a segmenting model's key images show its tumor map on either backend)")
    results = list(predictor.run(args.inputs))
    if args.out is None:
        for line in json_lines(results):
            print(line)
    else:
        print("wrote " + ", ".join(str(p) for p in write_results(results, args.out, predictor.summary())))
    if args.dicom_out:
        _write_dicom_out(args.dicom_out, results, predictor)
    if args.report:
        from kidneyct.inference.report import write_study_report

        explainer = predictor.explainer() if predictor.backend.name == "torch" or predictor.backend.segmenting else None
        print(f"report: {write_study_report(results, args.report, predictor, explainer)}")
    _print_skipped(results)
    return 0 if any(result.slices for result in results) else 1


def _print_skipped(results) -> None:
    for path, reason in (skip for result in results for skip in result.skipped):
        print(f"skipped {path}: {reason}", file=sys.stderr)


def _write_dicom_out(out, results, predictor) -> None:
    from kidneyct.inference.dicom_results import write_dicom_results
    from kidneyct.inference.model_facts import ModelFacts

    facts = ModelFacts.of(predictor.checkpoint, predictor.backend.source)
    studies = write_dicom_results(results, out, predictor, facts)
    for study in studies:
        print(f"wrote DICOM SR {study.sr} and {len(study.key_images)} key image(s) for study {study.study_uid}")
    if not studies:
        print("no DICOM series among the inputs: no DICOM results written", file=sys.stderr)


def cmd_explain(args) -> int:
    openmp_threads_wait_asleep()
    results = list(_predictor(args, heatmaps=args.out).run(args.inputs))
    for row in (row for result in results for row in result.slices):
        call = f"{row.call} {row.probabilities[row.call]:.3f}" if row.call else "no call (out of scope)"
        print(f"{row.heatmap}  {call}")
    _print_skipped(results)
    return 0 if any(result.slices for result in results) else 1


def cmd_export(args) -> int:
    from kidneyct.inference.export import export_onnx

    print(f"wrote {export_onnx(args.checkpoint, args.out, opset=args.opset)}")
    return 0
