"""Report figures (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from kidneyct.evaluation.calibration import ECE_BINS, expected_calibration_error, reliability_bins  # noqa: E402
from kidneyct.labels import positive_index  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_plot(confusion: dict, path: Path) -> Path:
    counts = np.asarray(confusion["counts"])
    rates = np.asarray(confusion["row_rate"])
    labels = confusion["labels"]
    fig, ax = plt.subplots(figsize=(1.3 * len(labels) + 2.2, 1.1 * len(labels) + 1.8))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{counts[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center",
                    color="white" if rates[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (count, row %)")
    return _save(fig, path)


def _one_vs_rest(y, probs, classes):
    pos = positive_index(classes)
    indices = [pos] if pos is not None else range(len(classes))
    for i in indices:
        target = (y == i).astype(int)
        if 0 < target.sum() < len(target):
            yield classes[i], target, probs[:, i]


def roc_plot(y, probs, classes, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, target, score in _one_vs_rest(y, probs, classes):
        fpr, tpr, _ = roc_curve(target, score)
        ax.plot(fpr, tpr, label=f"{name} vs rest")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("ROC")
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def pr_plot(y, probs, classes, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for name, target, score in _one_vs_rest(y, probs, classes):
        precision, recall, _ = precision_recall_curve(target, score)
        ax.plot(recall, precision, label=f"{name} vs rest")
        ax.axhline(target.mean(), color="grey", lw=0.6, ls=":")
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall")
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def curves_plot(history: list[dict], path: Path) -> Path | None:
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.5, 3.4))
    left.plot(epochs, [h["train_loss"] for h in history], label="train")
    left.plot(epochs, [h["val_loss"] for h in history], label="validation")
    left.set_title("loss")
    left.set_xlabel("epoch")
    left.legend()
    right.plot(epochs, [h["train_accuracy"] for h in history], label="train accuracy")
    right.plot(epochs, [h["val_accuracy"] for h in history], label="val accuracy")
    right.plot(epochs, [h["val_macro_f1"] for h in history], label="val macro-F1")
    right.set_ylim(0, 1.02)
    right.set_xlabel("epoch")
    right.set_title("accuracy")
    right.legend(fontsize=8)
    return _save(fig, path)


def reliability_plot(labels, probs_before: np.ndarray, probs_after: np.ndarray, path: Path,
                     n_bins: int = ECE_BINS) -> Path:
    """Reliability diagram: accuracy per confidence bin before and after temperature scaling."""
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfect calibration")
    for name, probs, marker in (("before", probs_before, "o"), ("after", probs_after, "s")):
        bins = reliability_bins(probs, labels, n_bins)
        used = bins["count"] > 0
        ece = expected_calibration_error(probs, labels, n_bins)
        ax.plot(bins["confidence"][used], bins["accuracy"][used], marker=marker, ms=4,
                label=f"{name} temperature scaling (ECE {ece:.3f})")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (top-label probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram ({n_bins} bins)")
    ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path)
