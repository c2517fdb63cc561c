"""Datasets: the catalogue of class folders, decoding (and its cache), series inference, splits, the
one data path shared by train and evaluate, and the leakage audit."""
