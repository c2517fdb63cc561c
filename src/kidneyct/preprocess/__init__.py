"""Preprocessing: window, body crop, pad/resize, augmentation and the kidney locator."""
