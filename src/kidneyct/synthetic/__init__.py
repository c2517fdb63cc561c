"""Synthetic data built from real slices: lesions inserted into located kidneys."""
