"""The checkpoint as typed records: what training writes once at its end and every reader takes by attribute.

A checkpoint carries everything inference needs (nnU-Net style: plans beside the weights): the model and its
outputs, the classes, the preprocessing, the calibration and operating point, and the study settings (rule,
scope statistics, intensity profile); and what a reader needs to trust it: how it was trained (configuration,
data, split, history), from which sources, and a model card. No torch here: an ONNX export carries the same
records, without the weights, in its metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, replace

from kidneyct.about import DISCLAIMER, __version__
from kidneyct.config import TrainConfig
from kidneyct.errors import CheckpointError
from kidneyct.models.registry import ModelConfig
from kidneyct.preprocess.preprocessing import Preprocessing
from kidneyct.preprocess.zoom import Zoom
from kidneyct.records import DictRecord
from kidneyct.run_folder import SPLIT_CSV
from kidneyct.study.settings import StudySettings

FORMAT = "kidneyct-checkpoint"
SCHEMA_VERSION = 2  # 1: the flat dict of kidneyct 0.1 (read through kidneyct.checkpoint.migrate)


@dataclass(frozen=True)
class Segmentation(DictRecord):
    """How a segmenting model looks at a slice and what its maps decide (kidneyct.models.look_twice).

    work_size: side of both looks' crops (the overview of the body view, the zoom on each kidney).
    zoom: the rule that draws the zoom boxes around the overview's kidney map.
    mask_threshold: the map probability above which a pixel is kidney or tumor in masks, overlays and Dice.
    min_kidney_fraction: the share of the body view the overview must call kidney for a slice to show one (the
        scope gate's kidney finder).
    mirror: each crop is also seen mirrored left-right and the two outputs averaged (test-time augmentation)."""

    work_size: int = 128
    zoom: Zoom = field(default_factory=Zoom)
    mask_threshold: float = 0.5
    min_kidney_fraction: float = 0.002
    mirror: bool = False


@dataclass(frozen=True)
class Outputs(DictRecord):
    """What the model outputs beside the slice logits [K], and how inference uses it.

    maps: per-pixel probability maps [len(maps), H, W] on the model's input, e.g. ("kidney", "tumor"); empty for a
    slice classifier. slice_probability: where the slice's tumor probability comes from ("head": the logits;
    a segmenting model may choose its tumor map inside the kidney, or both). kidney_finder: what the scope gate
    locates kidneys with ("locator": the anatomical locator; "kidney map": the model's own kidney map)."""

    maps: tuple[str, ...] = ()
    slice_probability: str = "head"
    kidney_finder: str = "locator"
    segmentation: Segmentation | None = None  # a segmenting model's looks; None for a slice classifier

    @property
    def has_maps(self) -> bool:
        return bool(self.maps)


@dataclass(frozen=True)
class CalibrationCheck(DictRecord):
    """Calibration measured on the validation split, before and after the temperature."""

    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    ece_bins: int = 15


@dataclass(frozen=True)
class Calibration(DictRecord):
    temperature: float = 1.0
    method: str = "not fitted: T = 1"
    fitted_temperature: float | None = None  # the NLL-optimal one, kept only if validation ECE does not rise
    kept: bool | None = None
    at_bound: bool | None = None  # the fit ran into its search bound: too few or too easy validation slices
    validation: CalibrationCheck | None = None


@dataclass(frozen=True)
class OperatingPoint(DictRecord):
    """The tumor threshold on calibrated p(tumor) and how it was chosen (with what it gave on validation)."""

    threshold: float
    method: str
    tumor_class: str | None = None
    target_sensitivity: float | None = None
    val_sensitivity: float | None = None
    val_specificity: float | None = None
    val_n: int | None = None


@dataclass(frozen=True)
class EpochRecord(DictRecord):
    """One epoch of training as the history (and the run's metrics.csv) records it."""

    epoch: int
    train_loss: float = math.nan
    train_accuracy: float = math.nan
    val_loss: float = math.nan
    val_accuracy: float = math.nan
    val_macro_f1: float = math.nan
    lr: float = math.nan
    seconds: float = math.nan
    images_per_second: float = math.nan


@dataclass
class Progress(DictRecord):
    """Where training stands: epochs done, the best validation score and when, early stopping, the history."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    stale_epochs: int = 0
    stopped_early: bool = False
    history: list[EpochRecord] = field(default_factory=list)

    def kept_epoch(self) -> EpochRecord | None:
        """The history row of the epoch whose weights best.pt holds."""
        return next((row for row in self.history if row.epoch == self.best_epoch), None)


@dataclass(frozen=True)
class DataRecord(DictRecord):
    """The dataset a run trained on and how it was split (the split itself is the run folder's split.csv)."""

    root: str = ""
    synthetic: bool = False
    split_csv: str = SPLIT_CSV
    split_kind: str = "unknown"
    split_seed: int | None = None
    split_sizes: dict[str, int] = field(default_factory=dict)
    skipped: list[list[str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The dataset folder's name (never the machine's path, which results must not leak)."""
        return self.root.rstrip("/").rsplit("/", 1)[-1] or "an unnamed dataset"


@dataclass
class TrainingRecord(DictRecord):
    """How the weights were trained. augmentation, acquisition and synthetic_lesions are recorded for
    provenance: inference never needs them, and a resumed run rebuilds them from `config`."""

    config: TrainConfig | None = None
    data: DataRecord = field(default_factory=DataRecord)
    progress: Progress = field(default_factory=Progress)
    augmentation: dict | None = None
    acquisition: dict | None = None
    synthetic_lesions: dict | None = None


@dataclass(frozen=True)
class Source(DictRecord):
    """One training source: a dataset with its own patients, grouping and licence."""

    name: str
    grouping: str = ""  # what keeps a patient on one side of a split: "inferred series", "case id", ...
    counts: dict[str, int] = field(default_factory=dict)  # training slices per class
    patients: int | None = None
    licence: str = "unknown"
    citation: str = ""
    masked: int = 0  # training slices with a mask
    settings: dict = field(default_factory=dict)  # how to read it again (kidneyct.data.sources.Source.to_dict)

    @classmethod
    def of_summary(cls, name: str, summary: dict) -> "Source":
        """The record of a source from `PreparedData.sources_summary()`'s entry."""
        reading = {key: value for key, value in summary.items() if key not in ("images", "classes", "masked", "groups")}
        return cls(name, str(summary.get("groups_kind", summary.get("grouping", ""))), dict(summary.get("classes", {})),
                   summary.get("groups"), str(summary.get("licence") or "unknown"), masked=int(summary.get("masked", 0)),
                   settings=reading)


@dataclass(frozen=True)
class SourceValidation(DictRecord):
    """Numbers measured on one source's held-out patients or series, with how to measure them again."""

    source: str
    split: str  # e.g. "series-disjoint test split, seed 0" or "5-fold grouped CV x 2 repeats, pooled out of fold"
    unit: str  # what one case is: "slice", "series", "patient"
    n: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    command: str = ""
    note: str = ""


@dataclass(frozen=True)
class ModelCard(DictRecord):
    """What a shipped model is, may be used for and was validated on (docs/model-card.md is its long form)."""

    name: str
    summary: str
    weights_licence: str  # the most restrictive licence of the training data, which the weights inherit
    licence_note: str = ""
    intended_use: str = "research and teaching on CT slices and studies; not for diagnosis, treatment or triage"
    validation: list[SourceValidation] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    disclaimer: str = DISCLAIMER


@dataclass(frozen=True)
class Member(DictRecord):
    """One model of an ensemble checkpoint (its weights are the state dict's `members.<i>.` entries)."""

    model: ModelConfig
    temperature: float = 1.0
    source: str = ""
    best_epoch: int | None = None


@dataclass
class ResumeState:
    """The optimiser's and schedule's state in last.pt, so that `--resume` continues exactly; `average`: the
    weights' running average when the run keeps one (a segmenting model's --weight-average)."""

    optimizer: dict
    scheduler: dict
    average: dict | None = None


@dataclass
class Checkpoint(DictRecord):
    """A kidneyct checkpoint (schema version SCHEMA_VERSION). `model` is an ensemble's first member's."""

    model: ModelConfig
    classes: list[str]
    preprocessing: Preprocessing
    state_dict: dict = field(default_factory=dict, repr=False)  # empty in an ONNX export's metadata
    outputs: Outputs = field(default_factory=Outputs)
    calibration: Calibration = field(default_factory=Calibration)
    operating_point: OperatingPoint | None = None
    study: StudySettings = field(default_factory=StudySettings)
    training: TrainingRecord | None = None
    members: list[Member] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    model_card: ModelCard | None = None
    resume: ResumeState | None = field(default=None, repr=False)
    kidneyct_version: str = __version__

    @property
    def temperature(self) -> float:
        return self.calibration.temperature

    @property
    def threshold(self) -> float | None:
        return None if self.operating_point is None else self.operating_point.threshold

    @property
    def data(self) -> DataRecord:
        """The training data's record (empty for a checkpoint that records none)."""
        return self.training.data if self.training is not None else DataRecord()

    @property
    def progress(self) -> Progress:
        return self.training.progress if self.training is not None else Progress()

    def weights_only(self) -> "Checkpoint":
        """This checkpoint without the optimiser's state: what best.pt and shipped models hold."""
        return replace(self, resume=None)

    def header(self) -> dict:
        """Everything but the weights and the optimiser's state, as plain data (JSON-able): an ONNX export's
        metadata."""
        values = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in ("state_dict", "resume")}
        # Through JSON and back: the same plain data whether it was just made or read from an export.
        return {"format": FORMAT, "version": SCHEMA_VERSION, **json.loads(json.dumps(values))}

    def to_payload(self) -> dict:
        """The dict torch.save writes (tensors and plain data only: loadable with weights_only=True)."""
        payload = self.header()
        payload["state_dict"] = self.state_dict
        if self.resume is not None:
            payload["resume"] = {"optimizer": self.resume.optimizer, "scheduler": self.resume.scheduler}
            if self.resume.average is not None:
                payload["resume"]["average"] = self.resume.average
        return payload

    @classmethod
    def from_payload(cls, payload: dict, source: object = "checkpoint") -> "Checkpoint":
        """A checkpoint from what `to_payload` (or any earlier kidneyct) wrote, checked; CheckpointError naming
        `source` when it is not one or cannot be used."""
        from kidneyct.checkpoint.migrate import current_payload

        values = current_payload(payload, source)
        try:
            resume = values.pop("resume", None)
            checkpoint = cls.from_dict(values)
            if resume is not None:
                checkpoint.resume = ResumeState(resume["optimizer"], resume["scheduler"], resume.get("average"))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{source}: unusable checkpoint ({type(error).__name__}: {error})") from None
        checkpoint.check(source)
        return checkpoint

    def check(self, source: object) -> None:
        """Raise CheckpointError (naming `source`) unless the classes, calibration, threshold and outputs agree."""
        check_calibration(source, self.classes, self.temperature, self.threshold)
        for member in self.members:
            check_calibration(source, self.classes, member.temperature, None)
        for config in [m.model for m in self.members] or [self.model]:
            if config.num_classes != len(self.classes):
                raise CheckpointError(f"{source}: the model has {config.num_classes} outputs for "
                                      f"{len(self.classes)} classes")


def _plain(value):
    return value.to_dict() if isinstance(value, DictRecord) else [_plain(v) for v in value] \
        if isinstance(value, list) else value


def check_calibration(source, classes, temperature, threshold) -> None:
    """Raise CheckpointError unless the classes are distinct non-empty names, the temperature a finite
    number above 0 (0 would divide the logits into NaN probabilities) and the threshold None or in [0, 1].

    Args:
        source: the checkpoint or ONNX file, named in the error.
        classes, temperature, threshold: as stored.
    """
    if (not isinstance(classes, (list, tuple)) or len(classes) < 2 or len(set(classes)) != len(classes)
            or not all(isinstance(c, str) and c for c in classes)):
        raise CheckpointError(f"{source}: classes {classes!r} are not two or more distinct names")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise CheckpointError(f"{source}: calibration temperature {temperature!r} is not a finite number above 0")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not 0 <= threshold <= 1):
        raise CheckpointError(f"{source}: tumor threshold {threshold!r} is not a probability in [0, 1]")
