"""Training a segmenting model (kidney and tumor maps and a slice head) on the cached body views of several
sources, masked or not.

An epoch takes every slice with a mask and, from each source, at most `per_source_cap` slices without one
(drawn class-balanced), so a large unmasked source cannot drown the masks. Each slice is seen as an overview or
zoomed on its kidneys (`zoom_batches`); slices without a kidney mask are zoomed where the model's own overview
found their kidneys, refreshed every `refresh_every` epochs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from kidneyct.models.forward import segment_runner
from kidneyct.models.look_twice import Looks, look_twice, overview, slice_logits
from kidneyct.preprocess.zoom import Zoom
from kidneyct.records import DictRecord
from kidneyct.runtime import progress_bar
from kidneyct.training.engine import EpochStats
from kidneyct.training.segmentation_loss import SegmentationLoss
from kidneyct.training.tumor_paste import LEAST_TUMOR_PX, TumorBank
from kidneyct.training.zoom_batches import (TUMOR_VALUE, ZoomAugmentation, choose_boxes, crop_labels, cut_batch,
                                            has_mask, mask_boxes)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmenterSettings(DictRecord):
    """How a segmenting model is trained (stored in its checkpoint).

    Args:
        work_size: side of both looks' crops, in pixels (a multiple of 32).
        overview_share: share of training draws that show the whole view instead of the zoom.
        per_source_cap: slices without a mask that one source contributes per epoch.
        refresh_every: epochs a slice without a kidney mask keeps the zoom boxes the model's overview last drew
            for it (they are drawn again when it is next drawn after that).
        validate_every: epochs between validations (and the last epoch): a segmenting model keeps its final
            weights, so validation only reports progress and fits the calibration at the end; both looks over
            every validation slice each epoch would cost more than the epoch.
        tumor_repeats: how many times a masked slice with tumor pixels is drawn per epoch (tumor pixels are
            rare: repeating their slices, as nnU-Net oversamples foreground, teaches the tumor map sooner).
        lesion_bias: chance that a zoom on a masked tumor slice shows the kidney with the tumor.
        mirror: validation (and so the calibration) and inference also see each crop mirrored, outputs averaged.
        weight_average: decay per step of an exponential moving average of the weights (and BatchNorm statistics)
            kept over the second half of the epochs and made the final weights (0: off, the last step's weights);
            two trainings averaged as one model ranked tumors better than either (docs/experiments.md), and the
            average of one training's late weights is that ensemble's one-model cousin.
        zoom, loss, augmentation: the zoom box rule, the loss weights and the training augmentation.
    """

    work_size: int = 128
    overview_share: float = 0.35
    per_source_cap: int = 160
    refresh_every: int = 4
    validate_every: int = 10
    tumor_repeats: int = 3
    lesion_bias: float = 0.75
    mirror: bool = False
    weight_average: float = 0.0
    zoom: Zoom = field(default_factory=Zoom)
    loss: SegmentationLoss = field(default_factory=SegmentationLoss)
    augmentation: ZoomAugmentation | None = field(default_factory=ZoomAugmentation)  # None: no augmentation



@dataclass
class TrainingSet:
    """The rows a segmenting model trains on: uint8 body views and masks [N, V, V] (masks UNKNOWN where a slice
    has none), class labels [N] and each row's source name."""

    views: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def looks(model: torch.nn.Module, views: np.ndarray, settings: SegmenterSettings, tumor_class: int,
          device: torch.device, with_maps: bool = False) -> Looks:
    return look_twice(segment_runner(model, device), views, settings.zoom, settings.work_size, tumor_class, with_maps,
                      mirror=settings.mirror)


class SegmenterTrainer:
    """The epochs of one segmenting model: which rows, which boxes, and the optimiser steps."""

    def __init__(self, model: torch.nn.Module, data: TrainingSet, tumor_class: int, settings: SegmenterSettings,
                 seed: int, device: torch.device, epochs: int = 1):
        self.model, self.data, self.tumor_class = model, data, tumor_class
        self.settings, self.seed, self.device = settings, seed, device
        # The weights' moving average, kept from the first epoch of the second half on (settings.weight_average).
        self.average: AveragedModel | None = None
        self.average_from = epochs // 2 + 1
        self.known = has_mask(data.masks)
        self.true_boxes = mask_boxes(data.masks, settings.zoom)
        self.predicted_boxes: dict[int, list] = {}
        self.drawn_at: dict[int, int] = {}  # the epoch whose overview drew a row's predicted boxes
        self.other_class = 1 - tumor_class  # two classes: tumor and the rest
        self.tumor_rows = np.flatnonzero(self.known & (data.masks == TUMOR_VALUE).any((1, 2)))
        self.bank = self._tumor_bank()

    def _tumor_bank(self) -> TumorBank | None:
        """The training split's real tumors, when the augmentation pastes some (only then: building it costs)."""
        augmentation = self.settings.augmentation
        if augmentation is None or augmentation.pasted_tumors <= 0 or augmentation.synthetic_tumors <= 0:
            return None
        bank = TumorBank.from_views(self.data.views[self.tumor_rows], self.data.masks[self.tumor_rows])
        if bank is None:
            log.warning("pasted tumors: no training slice has a tumor of %d pixels or more; all inserted tumors are "
                        "synthetic", LEAST_TUMOR_PX)
        else:
            log.info("pasted tumors: %d real tumors of %d training tumor slices in the bank", len(bank),
                     len(self.tumor_rows))
        return bank

    def epoch_rows(self, epoch: int) -> np.ndarray:
        """Every masked row, plus per source at most `per_source_cap` unmasked rows, class-balanced, shuffled."""
        rng = np.random.default_rng([self.seed, epoch])
        rows = [np.flatnonzero(self.known)] + [self.tumor_rows] * (self.settings.tumor_repeats - 1)
        for source in np.unique(self.data.sources):
            pool = np.flatnonzero(~self.known & (self.data.sources == source))
            if len(pool) > self.settings.per_source_cap:
                classes = np.unique(self.data.labels[pool])
                weights = 1.0 / np.bincount(np.searchsorted(classes, self.data.labels[pool]))
                chance = weights[np.searchsorted(classes, self.data.labels[pool])]
                pool = rng.choice(pool, self.settings.per_source_cap, replace=False, p=chance / chance.sum())
            rows.append(pool)
        return rng.permutation(np.concatenate(rows))

    def steps_per_epoch(self, batch_size: int) -> int:
        unmasked = sum(min(self.settings.per_source_cap, int((~self.known & (self.data.sources == s)).sum()))
                       for s in np.unique(self.data.sources))
        masked = int(self.known.sum()) + len(self.tumor_rows) * (self.settings.tumor_repeats - 1)
        return math.ceil((masked + unmasked) / batch_size)

    def refresh_boxes(self, rows: np.ndarray, epoch: int) -> None:
        """Zoom boxes for those of `rows` without a kidney mask whose boxes are missing or `refresh_every` epochs
        old, from the model's current overview of them (only the rows an epoch draws: a source of thousands of
        unmasked slices would otherwise cost more than the epoch)."""
        stale = np.array(sorted({int(r) for r in rows if not self.true_boxes[r]
                                 and epoch - self.drawn_at.get(int(r), -10**9) >= self.settings.refresh_every}),
                         np.int64)
        if len(stale) == 0:
            return
        was_training = self.model.training
        _, chosen = overview(segment_runner(self.model, self.device), self.data.views[stale], self.settings.zoom,
                             self.settings.work_size)
        self.model.train(was_training)
        for row, (boxes, found) in zip(stale, chosen):
            self.drawn_at[int(row)] = epoch
            if found:
                self.predicted_boxes[int(row)] = boxes
            else:
                self.predicted_boxes.pop(int(row), None)

    def validates(self, epoch: int, last: int) -> bool:
        """Whether `epoch` is validated (every `validate_every` epochs and the last)."""
        return epoch == last or epoch % self.settings.validate_every == 0

    def validation_logits(self, views, how: str) -> np.ndarray:
        """Slice logits [N, 2] of uint8 body views by both looks, the slice probability taken `how`
        (look_twice.slice_logits)."""
        return slice_logits(looks(self.model, np.asarray(views), self.settings, self.tumor_class, self.device), how,
                            self.tumor_class)

    def train_epoch(self, epoch: int, optimizer, scheduler, batch_size: int, progress: bool = False) -> EpochStats:
        """One epoch of optimiser steps (the zoom boxes of the epoch's slices without masks redrawn first when
        due)."""
        generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        order = self.epoch_rows(epoch)
        if self.settings.weight_average > 0 and epoch >= self.average_from and self.average is None:
            self.average = self._new_average()
        if epoch > 1:  # the first epoch's untrained overview finds nothing: unmasked rows show the whole view
            self.refresh_boxes(order, epoch)
        self.model.train()
        total, seen = 0.0, 0
        bar = progress_bar(total=math.ceil(len(order) / batch_size), enabled=progress, desc=f"epoch {epoch}")
        for start in range(0, len(order), batch_size):
            rows = np.sort(order[start:start + batch_size])
            if len(rows) < 2:  # BatchNorm needs two
                continue
            loss = self._step(rows, generator, optimizer)
            scheduler.step()
            total, seen = total + loss * len(rows), seen + len(rows)
            bar.update()
        bar.close()
        return EpochStats(total / max(seen, 1), math.nan, seen)

    def _step(self, rows: np.ndarray, generator: torch.Generator, optimizer) -> float:
        settings = self.settings
        boxes, zoomed = choose_boxes(rows, self.true_boxes, self.predicted_boxes, settings.overview_share,
                                     settings.lesion_bias, generator)
        crops, masks, unenhanced = cut_batch(self.data.views[rows], self.data.masks[rows], boxes, settings.work_size,
                                             settings.augmentation, generator, self.bank)
        labels, learnt = crop_labels(self.data.labels[rows], masks, zoomed, self.tumor_class, self.other_class)
        learnt &= ~unenhanced
        crops = crops.to(self.device).contiguous(memory_format=torch.channels_last)
        logits, maps = self.model.segment(crops)
        loss = settings.loss(logits, maps, masks.to(self.device), torch.from_numpy(labels).to(self.device),
                             self.tumor_class, torch.from_numpy(learnt).to(self.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if self.average is not None:
            self.average.update_parameters(self.model)
        return float(loss.detach())

    def _new_average(self) -> AveragedModel:
        # use_buffers: BatchNorm's running statistics are averaged with the weights, so the average needs no
        # extra pass over the data to re-estimate them.
        return AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.settings.weight_average),
                             use_buffers=True)

    def adopt_average(self) -> None:
        """Make the weights' moving average the model's weights (after the last epoch); nothing without one."""
        if self.average is not None:
            self.model.load_state_dict(self.average.module.state_dict())

    def average_state(self) -> dict | None:
        """The moving average's state, for last.pt (None before it starts or without one)."""
        return None if self.average is None else {k: v.detach().cpu().clone()
                                                  for k, v in self.average.state_dict().items()}

    def restore_average(self, state: dict | None) -> None:
        """Continue the moving average of an interrupted run (`average_state`)."""
        if state is not None:
            self.average = self._new_average()
            self.average.load_state_dict(state)
