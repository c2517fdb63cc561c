"""Datasets: catalogue of class folders, decoding, splits, preprocessing and synthetic phantoms."""
