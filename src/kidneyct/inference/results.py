"""What a prediction answers, as typed records: one `StudyResult` per input (a single image, a DICOM series, a
NIfTI volume, or an input that could not be read), holding one `SliceResult` per slice. Every front end (the
CLI, `kidneyct.load(...).predict`, the web API, the DICOM node) gets these same objects from
kidneyct.inference.run and only formats them: `to_dict()` and `to_json()` are the forms they write.

A slice out of scope gets no class call (`call` None): its probabilities are the model's numbers on a slice the
model was not made for, and no output may read them as a call; nor does it get a segmenting model's areas or
label masks."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from kidneyct.about import DISCLAIMER

STUDY_KINDS = ("series", "volume")


@dataclass
class SliceResult:
    source: str  # the file holding the slice (an in-memory slice: the name it was given)
    index: int | None  # position in its series or volume
    probabilities: dict[str, float]  # calibrated
    call: str | None  # the class called under the threshold; None: out of scope, no call
    in_scope: bool
    scope_reason: str
    warnings: list[str] = field(default_factory=list)  # a single image's intensity warnings (a study's: on it)
    heatmap: str | None = None  # the Grad-CAM overlay PNG written for this slice, when asked for
    masks: dict[str, str] = field(default_factory=dict)  # label files written for this slice ("labels": 0/1/2)
    # A segmenting model's areas on the input's grid, in scope only: kidney (its kidney map, tumor included) and
    # tumor, in pixels and, where the input gives its pixel spacing, in mm^2 (None otherwise)
    areas: dict[str, float | int | None] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StudyResult:
    """One input. For a series or volume the study fields hold the call by the checkpoint's study rule over its
    in-scope slices (tumor and probability None: no slice in scope, no call); a single image's call is its slice's.
    """

    input: str  # the file, folder, series or volume as given
    kind: str  # "image", "series", "volume"; "unread" when nothing of it could be read (the reasons: skipped)
    slices: list[SliceResult] = field(default_factory=list)
    tumor_probability: float | None = None
    tumor: bool | None = None
    threshold: float | None = None
    rule: str = ""  # how the study probability was made, or why there is none
    driving_slices: list[int] = field(default_factory=list)  # the slices the probability comes from
    positive_slices: list[int] = field(default_factory=list)  # in-scope slices called tumor on their own
    in_scope_slices: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) left out of this input

    @property
    def is_study(self) -> bool:
        return self.kind in STUDY_KINDS

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["slices"] = [s.to_dict() for s in self.slices]
        values["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return {"n_slices": self.n_slices, **values}

    def to_json(self, **options) -> str:
        # ensure_ascii (the default): a file name that is no valid UTF-8 (a lone surrogate in Python) is escaped
        return json.dumps(self.to_dict(), **options)


@dataclass(frozen=True)
class ModelSummary:
    """The model behind a batch of results, as written beside them."""

    name: str
    checkpoint: str  # the file's name (not its path)
    backend: str
    classes: list[str]
    temperature: float
    threshold: float | None
    study_rule: dict

    def to_dict(self) -> dict:
        return {"disclaimer": DISCLAIMER, **asdict(self)}
