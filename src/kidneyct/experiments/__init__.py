"""Experiments: the jobs that combine training, inference and evaluation. Evaluate a checkpoint on its split
and write the report, grouped k-fold cross-validation, the random-vs-grouped split comparison and the demo.
Kept light at import: the CLI reads the demo's defaults from here."""
