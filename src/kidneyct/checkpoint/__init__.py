"""The checkpoint: the typed contract between training, which writes it once at its end, and everything that
reads it (inference, evaluation, serving, export). `Checkpoint` and its records (schema), reading older schemas
(migrate), files (read_checkpoint, write_checkpoint); the PyTorch model of a checkpoint is
kidneyct.checkpoint.model's. Importing this package imports no torch."""

from kidneyct.checkpoint.files import read_checkpoint, write_checkpoint
from kidneyct.checkpoint.schema import (FORMAT, SCHEMA_VERSION, Calibration, CalibrationCheck, Checkpoint,
                                        DataRecord, EpochRecord, Member, ModelCard, OperatingPoint, Outputs,
                                        Progress, ResumeState, Segmentation, Source, SourceValidation,
                                        TrainingRecord, check_calibration)

__all__ = [
    "FORMAT", "SCHEMA_VERSION", "Calibration", "CalibrationCheck", "Checkpoint", "DataRecord", "EpochRecord", "Member",
    "ModelCard", "OperatingPoint", "Outputs", "Progress", "ResumeState", "Segmentation", "Source", "SourceValidation",
    "TrainingRecord", "check_calibration", "read_checkpoint", "write_checkpoint",
]
