"""Evaluation measures: classification metrics with bootstrap intervals, calibration measures, per-series
aggregation, report figures and HTML/Markdown reports, and Grad-CAM localisation scores. The job that runs a
checkpoint on its split and writes the report is kidneyct.experiments.evaluate."""
