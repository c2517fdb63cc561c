"""Synthetic data: CT phantoms in Hounsfield units with ground-truth lesion masks, single studies with a lesion
on known slices, and their writers (PNG, DICOM series, NIfTI volumes). Everything written is labelled synthetic."""
