"""The model kidneyct ships: trained by a recipe on its source, measured on that source's held-out series and on
sources it never saw (through the one prediction path, as a user meets it), described by a model card, and
stored with fp16 weights beside its ONNX export in kidneyct/weights. `make model` runs `ship` with the
specification benchmarks/shipped_model.py writes down; docs/model-card.md is written from the same card."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kidneyct.about import DISCLAIMER
from kidneyct.checkpoint import Checkpoint, ModelCard, Source, SourceValidation, read_checkpoint, write_checkpoint
from kidneyct.config import recipe_config
from kidneyct.evaluation.ranking import roc_auc
from kidneyct.experiments.evaluate import evaluate
from kidneyct.inference.export import export_onnx
from kidneyct.inference.predictor import Predictor
from kidneyct.labels import positive_index
from kidneyct.run_folder import RunFolder
from kidneyct.weights import CHECKPOINT, EXPORT

log = logging.getLogger(__name__)

HEADLINE = ("roc_auc", "tumor_sensitivity", "tumor_specificity", "balanced_accuracy")


@dataclass(frozen=True)
class TrainingSource:
    """The class-folder dataset the model trains on, as its Source record says it (path: where it lies here)."""

    source: Source
    path: str
    classes: str = "tumor,normal"


@dataclass(frozen=True)
class TrainingSources:
    """Several sources read through a sources file (kidneyct.data.sources, e.g. sources/shared.toml), each
    described by its record (citation, licence, grouping) under its name in the file."""

    sources_file: str
    records: dict[str, Source]
    classes: str = "tumor,normal"


@dataclass(frozen=True)
class ExternalSource:
    """A source the model never trained on: a folder per true class, predicted as a user would."""

    source: Source
    folders: dict[str, str]  # class name -> folder
    unit: str = "slice"  # what one slice is: "patient" where each patient gave one


@dataclass(frozen=True)
class ShipSpec:
    """What `make model` trains and how it is described; the one place to change when the default changes."""

    name: str
    recipe: str  # a name from `kidneyct recipes`
    train_on: TrainingSource | TrainingSources
    summary: str
    weights_licence: str
    licence_note: str
    overrides: dict = field(default_factory=dict)  # TrainConfig fields on top of the recipe
    external: list[ExternalSource] = field(default_factory=list)
    recorded: list[SourceValidation] = field(default_factory=list)  # measured elsewhere, with their command
    limitations: list[str] = field(default_factory=list)
    # Training seeds of a segmenting ensemble (one model per seed, all on the first one's split, averaged:
    # kidneyct.experiments.cv_ensemble.ensemble_run); empty: one model with the recipe's seed.
    seeds: tuple[int, ...] = ()


def ship(spec: ShipSpec, work: Path, weights: Path, card_page: Path | None = None) -> Path:
    """Train, measure and store the shipped model; returns its checkpoint in `weights`."""
    where = {"sources": spec.train_on.sources_file} if isinstance(spec.train_on, TrainingSources) else {}
    config = recipe_config(spec.recipe, getattr(spec.train_on, "path", ""), str(work), classes=spec.train_on.classes,
                           progress=False, **where, **spec.overrides)
    from kidneyct.training.train import train  # imported here: only building the model trains

    if not spec.seeds:
        return package(train(config).best_checkpoint, spec, weights, card_page)
    from kidneyct.experiments.cv_ensemble import ensemble_run

    members = []
    for seed in spec.seeds:  # the first run draws the split; the others train on it
        shared = {"split_file": str(RunFolder.of(members[0]).split_csv)} if members else {}
        members.append(train(replace(config, seed=seed, out=str(work / f"seed-{seed}"), **shared)).best_checkpoint)
    return package(ensemble_run(members, work / "ensemble", where.get("sources"), "cpu"), spec, weights, card_page)


def package(best: Path, spec: ShipSpec, weights: Path, card_page: Path | None = None) -> Path:
    """A trained run's best checkpoint measured and stored as the shipped model (fp16 weights, model card,
    ONNX export) in `weights`; the card also as `card_page`. Returns the shipped checkpoint."""
    work = RunFolder.of(best).path
    shipped = _stored(read_checkpoint(best), spec, work)
    candidate = write_checkpoint(shipped, work / "shipped.pt")  # beside split.csv: evaluable
    held_out = _held_out(candidate, spec, work) if shipped.data.split_sizes.get("test") else []
    validation = [*held_out, *_external(candidate, spec), *spec.recorded]
    shipped = replace(shipped, model_card=_card(spec, validation))
    path = write_checkpoint(shipped, weights / CHECKPOINT)
    export_onnx(path, weights / EXPORT)
    if card_page is not None:
        card_page.write_text(card_markdown(shipped))
    log.info("shipped %s (%d bytes) and %s", path, path.stat().st_size, weights / EXPORT)
    return path


def recard(shipped: Path, spec: ShipSpec, card_page: Path | None = None) -> Path:
    """The shipped checkpoint's card with the text of `spec` (summary and limitations) and its measurements kept,
    written back with the same weights and exported again: a card found wrong is corrected without training or
    measuring anew (the run it was packaged from may be gone). Returns the checkpoint."""
    checkpoint = read_checkpoint(shipped)
    if checkpoint.model_card is None:
        raise ValueError(f"{shipped}: no model card to correct (package a run first)")
    card = replace(checkpoint.model_card, summary=spec.summary, limitations=list(spec.limitations))
    path = write_checkpoint(replace(checkpoint, model_card=card), shipped)
    export_onnx(path, path.parent / EXPORT)
    if card_page is not None:
        card_page.write_text(card_markdown(read_checkpoint(path)))
    return path


def _stored(checkpoint: Checkpoint, spec: ShipSpec, work: Path) -> Checkpoint:
    """Weights only, in fp16 (loading casts them back), with the training source named instead of this
    machine's folders and its slices counted per class."""
    if isinstance(spec.train_on, TrainingSources):  # each source's counts as trained, its record as described
        split_csv = RunFolder(work).split_csv
        sources = [replace(spec.train_on.records[trained.name], counts=_trained_counts(split_csv, trained.name),
                           masked=trained.masked) for trained in checkpoint.sources]
        config = replace(checkpoint.training.config, data="", sources=Path(spec.train_on.sources_file).name, out="")
    else:
        sources = [replace(spec.train_on.source, counts=_trained_counts(RunFolder(work).split_csv))]
        config = replace(checkpoint.training.config, data=sources[0].name, out="")
    training = replace(checkpoint.training, config=config,
                       data=replace(checkpoint.data, root=", ".join(s.name for s in sources), skipped=[]))
    return replace(checkpoint.weights_only(), training=training, sources=sources,
                   state_dict={k: v.half() if v.is_floating_point() else v for k, v in checkpoint.state_dict.items()})


def _trained_counts(split_csv: Path, source: str | None = None) -> dict[str, int]:
    """Slices per class the model was trained and validated on (the split's train and val rows), of one source
    when named."""
    with open(split_csv, newline="") as handle:
        counts = Counter(row["label"] for row in csv.DictReader(handle) if row["split"] in ("train", "val")
                         and (source is None or row.get("source") == source))
    return dict(sorted(counts.items()))


def source_validations(table: dict, split: str, command: str, names: dict[str, str] | None = None) -> list[
        SourceValidation]:
    """One record per source of a per-source table (cv.json's or evaluate's "per_source"): per slice the ranking
    statistics, the calls at the threshold and the Dice where the model segments; per series or patient where the
    source groups several slices. `names` renames sources (the sources file's names to their records')."""
    out = []
    for name, row in table.get("rows", {}).items():
        if name == "pooled":
            continue
        shown = (names or {}).get(name, name)
        metrics = {k: round(v["value"], 3) for k, v in row["image"].items() if v["value"] == v["value"]}
        extra = {"tumor_sensitivity": row["sensitivity"], "tumor_specificity": row["specificity"],
                 "tumor_dice_median": row.get("tumor_dice"), "tumor_dice_mean": row.get("tumor_dice_mean"),
                 "kidney_dice_median": row.get("kidney_dice")}
        metrics.update({k: round(v, 3) for k, v in extra.items() if v is not None and v == v})
        out.append(SourceValidation(shown, split, "slice", row["images"], metrics, command))
        if row.get("group"):
            grouped = {k: round(v["value"], 3) for k, v in row["group"].items() if v["value"] == v["value"]}
            out.append(SourceValidation(shown, split, "series or patient", row["groups"], grouped, command))
    return out


def _held_out(checkpoint_file: Path, spec: ShipSpec, work: Path) -> list[SourceValidation]:
    """The training sources' test split (grouped: its series or patients were never trained or validated on)."""
    seed = read_checkpoint(checkpoint_file).data.split_seed
    if isinstance(spec.train_on, TrainingSources):
        result = evaluate(checkpoint_file, sources=spec.train_on.sources_file, out=work / "report", device="cpu",
                          progress=False)
        command = f"kidneyct evaluate --checkpoint {checkpoint_file} --sources {spec.train_on.sources_file}"
        names = {name: record.name for name, record in spec.train_on.records.items()}
        return source_validations(result.per_source or {}, f"patient- or series-disjoint test split (seed {seed})",
                                  command, names)
    result = evaluate(checkpoint_file, data=spec.train_on.path, out=work / "report", device="cpu", progress=False)
    split = f"series-disjoint test split of `kidneyct train` (grouped, seed {seed})"
    command = f"kidneyct evaluate --checkpoint {checkpoint_file} --data {spec.train_on.path}"
    return [SourceValidation(spec.train_on.source.name, split, unit, metrics["n"],
                             {k: round(metrics[k]["value"], 3) for k in HEADLINE}, command)
            for unit, metrics in (("slice", result.metrics), ("series", result.series_metrics))]


def _external(checkpoint_file: Path, spec: ShipSpec) -> list[SourceValidation]:
    predictor = Predictor.open(checkpoint_file, "cpu")
    return [external_validation(predictor, external) for external in spec.external]


def external_validation(predictor: Predictor, external: ExternalSource) -> SourceValidation:
    """A source's slices through the one prediction path: ROC-AUC of p(tumor) where both classes are present,
    the share of each class called tumor (a slice out of scope is not called), and the share in scope."""
    tumor = predictor.classes[positive_index(predictor.classes)]
    truth, probability, called, in_scope = [], [], [], []
    for name, folder in external.folders.items():
        for result in predictor.run([folder]):
            for row in result.slices:
                truth.append(name == tumor)
                probability.append(row.probabilities[tumor])
                called.append(row.call == tumor)
                in_scope.append(row.in_scope)
    truth, called = np.array(truth), np.array(called)
    metrics = {"in_scope": round(float(np.mean(in_scope)), 3)}
    if truth.any() and (~truth).any():
        metrics["roc_auc"] = round(roc_auc(truth.astype(int), np.array(probability)), 3)
        metrics["tumor_sensitivity"] = round(float(called[truth].mean()), 3)
    if (~truth).any():
        metrics["called_tumor_among_normal"] = round(float(called[~truth].mean()), 3)
    folders = " ".join(external.folders.values())
    return SourceValidation(external.source.name, "never trained on: every slice of its folders", external.unit,
                            len(truth), metrics, f"kidneyct predict --checkpoint CHECKPOINT {folders}",
                            "the one prediction path, scope gate included: a slice out of scope is not called")


def _card(spec: ShipSpec, validation: list[SourceValidation]) -> ModelCard:
    return ModelCard(spec.name, spec.summary, spec.weights_licence, spec.licence_note, validation=validation,
                     limitations=list(spec.limitations))


def card_markdown(checkpoint: Checkpoint) -> str:
    """docs/model-card.md: the card inside the shipped checkpoint, for people."""
    card = checkpoint.model_card
    lines = [f"# Model card: {card.name}", "", f"> {DISCLAIMER}", "", card.summary, "",
             "## Model", "", f"- Architecture: {checkpoint.model.name}, input {checkpoint.preprocessing.image_size} px "
             f"({_crop(checkpoint)}), classes {', '.join(checkpoint.classes)}.",
             f"- Outputs: slice logits{_maps(checkpoint)}; calibrated by temperature {checkpoint.temperature:.3f}; study rule: {checkpoint.study.rule.describe()}.",
             f"- Files: `src/kidneyct/weights/{CHECKPOINT}` (fp16 weights) and `{EXPORT}` (its ONNX export), built by "
             "`make model` (benchmarks/shipped_model.py).", "", "## Data and licences", ""]
    lines += [f"- **{s.name}** ({s.licence}): {s.citation} Grouping: {s.grouping}. Slices trained and validated on: "
              f"{', '.join(f'{k} {v}' for k, v in s.counts.items())}." for s in checkpoint.sources]
    lines += ["", f"**Weights licence: {card.weights_licence}.** {card.licence_note}", "", "## Validation", "",
              "| source | split | unit | n | numbers | how to measure again |", "|---|---|---|---|---|---|"]
    lines += [f"| {v.source} | {v.split} | {v.unit} | {v.n} | "
              f"{', '.join(f'{k} {x:.3f}' for k, x in v.metrics.items())} | `{v.command}`"
              f"{' (' + v.note + ')' if v.note else ''} |" for v in card.validation]
    lines += ["", "## Intended use", "", f"{card.intended_use[:1].upper()}{card.intended_use[1:]}.", "",
              "## Limitations", ""]
    lines += [f"- {item}" for item in card.limitations] + [f"- {DISCLAIMER}", ""]
    return "\n".join(lines)


def _maps(checkpoint: Checkpoint) -> str:
    return "; maps " + ", ".join(checkpoint.outputs.maps) if checkpoint.outputs.has_maps else ""


def _crop(checkpoint: Checkpoint) -> str:
    prep = checkpoint.preprocessing
    return "kidney crop" if prep.kidney_crop else "body crop" if prep.body_crop else "whole slice"
