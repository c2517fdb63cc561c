"""The layout of a training run's folder: the one place its file names are written down. Training writes
these files; evaluation, cross-validation, the probes, the audits and the model facts find them here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BEST, LAST = "best.pt", "last.pt"
SPLIT_CSV = "split.csv"
HISTORY_CSV = "metrics.csv"
CONFIG_JSON = "config.json"
REPORT_DIR = "report"
REPORT_METRICS = "metrics.json"
ENSEMBLE = "ensemble.pt"


def _file(*names: str) -> property:
    return property(lambda self: self.path.joinpath(*names), doc=f"{'/'.join(names)} in the run folder")


@dataclass(frozen=True)
class RunFolder:
    """A run folder (`kidneyct train --out DIR`): its checkpoints, split, history, configuration and report."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of(cls, checkpoint: str | Path) -> "RunFolder":
        """The run folder a checkpoint file lies in."""
        return cls(Path(checkpoint).parent)

    best = _file(BEST)
    last = _file(LAST)
    split_csv = _file(SPLIT_CSV)
    history_csv = _file(HISTORY_CSV)
    config_json = _file(CONFIG_JSON)
    report = _file(REPORT_DIR)  # where `kidneyct evaluate` writes its report by default
    report_metrics = _file(REPORT_DIR, REPORT_METRICS)
    ensemble = _file(ENSEMBLE)
