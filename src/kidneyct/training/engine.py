"""The training hot loop: device-side batches (images or cached features) and one epoch of optimiser steps.

No DataLoader and no per-step host synchronisation: batches are index-gathered from tensors already on
the device (or from the memory-mapped cache on the host when they are not), augmented there, and the
running loss stays on the device until the epoch ends.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kidneyct.data.rows import Rows
from kidneyct.preprocess import Augmentation, Preprocessing, to_unit_tensor
from kidneyct.preprocess.acquisition import AcquisitionAugmentation
from kidneyct.runtime import autocast
from kidneyct.training.lesion_inputs import LesionPlan
from kidneyct.training.distributed import DistContext

log = logging.getLogger(__name__)

GPU_FRACTION = 0.5  # of free GPU memory the resident images may take; the rest is the model's


class ImageStore:
    """uint8 images [N, S, S]: all on the device when it is a GPU with room for them, otherwise read per
    batch from the host rows (a memmap of the decode cache: no copy of the set in RAM)."""

    def __init__(self, rows: Rows, device: torch.device, resident: bool):
        self.rows, self.device = rows, device
        self.tensor = rows.to_tensor(device) if resident else None

    @classmethod
    def create(cls, rows: Rows, device: torch.device) -> "ImageStore":
        resident = False
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            resident = rows.nbytes <= GPU_FRACTION * free
            log.info("training images (%.0f MiB) %s", rows.nbytes / 2**20,
                     "live on the GPU" if resident else "stream from host memory: too large for the GPU")
        return cls(rows, device, resident)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, index: torch.Tensor) -> torch.Tensor:
        if self.tensor is not None:
            return self.tensor[index.to(self.device)]
        batch = torch.from_numpy(self.rows[index.cpu().numpy()])
        if self.device.type == "cuda":
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch

    def slice(self, start: int, stop: int) -> torch.Tensor:
        if self.tensor is not None:
            return self.tensor[start:stop]
        return torch.from_numpy(self.rows[start:stop]).to(self.device)


class ImageInputs:
    """Model inputs for a batch: gathered, scaled to [0, 1], given synthetic lesions (relabelled), augmented
    (geometry and intensity, then acquisition), standardised, channels_last; with a mask store, `batch` also
    gives the batch's masks, written with the lesions and moved by the same geometry.

    Every random draw is made for the whole global batch and each rank applies its rows, so an image's
    augmentation does not depend on the number of ranks (the lesions' own shapes excepted: each rank
    renders its rows from one seed of the global stream). Masks take no draw, so asking for them changes
    no image.
    """

    def __init__(self, store: ImageStore, prep: Preprocessing, augmentation: Augmentation | None,
                 acquisition: AcquisitionAugmentation | None = None, lesions: LesionPlan | None = None,
                 masks: ImageStore | None = None):
        self.store, self.prep, self.augmentation = store, prep, augmentation
        self.acquisition, self.lesions, self.masks = acquisition, lesions, masks

    def __call__(self, index: torch.Tensor, local: torch.Tensor, generator: torch.Generator,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, _ = self.batch(index, local, generator, labels)
        return images, labels

    def batch(self, index: torch.Tensor, local: torch.Tensor, generator: torch.Generator,
              labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Model inputs, labels and masks (uint8 [B, S, S]; None without a mask store) of this rank's rows."""
        images = to_unit_tensor(self.store.take(index[local]))
        masks = self.masks.take(index[local]) if self.masks is not None else None
        if self.lesions is not None:
            receive, cyst, seed = self.lesions.draw(len(index), generator)
            images, labels, masks = self.lesions.apply_with_masks(images, index[local], labels,
                                                                  (receive[local], cyst[local], seed), masks)
        if self.augmentation is not None:
            params = self.augmentation.sample(len(index), generator, generator.device)[local]  # the global batch's
            images = Augmentation.apply(images, params)
            masks = None if masks is None else Augmentation.apply_masks(masks, params)
        if self.acquisition is not None:
            params = self.acquisition.sample(len(index), generator, generator.device)[local]
            images = self.acquisition.apply(images, params)
            masks = None if masks is None else self.acquisition.apply_masks(masks, params)
        return self.prep.model_input(images), labels, masks


class FeatureInputs:
    """Head inputs from cached backbone features [V, N, F]: each image contributes one random view."""

    def __init__(self, features: torch.Tensor):
        self.features = features

    def __call__(self, index: torch.Tensor, local: torch.Tensor, generator: torch.Generator,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Drawn for the global batch, like augmentation, so a view does not depend on the number of ranks.
        views = torch.randint(0, len(self.features), (len(index),), generator=generator, device=generator.device)
        return self.features[views[local], index[local]], labels


@dataclass
class EpochStats:
    loss: float  # class-weighted mean training loss
    accuracy: float
    seen: int


def run_epoch(forward, inputs, labels: torch.Tensor, loss_weights: torch.Tensor, optimizer, scheduler,
              order: torch.Tensor, batch_size: int, generator: torch.Generator, ctx: DistContext,
              device: torch.device, bar=None, label_smoothing: float = 0.0) -> EpochStats:
    """One pass over `order` in global batches of `batch_size`; each rank takes every world_size-th image.

    The loss is normalised by the whole global batch's class weights (not the rank's), so the gradient
    that DistributedDataParallel averages equals the single-process one: the number of ranks changes
    float rounding, not the result.
    """
    steps = math.ceil(len(order) / batch_size)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    for step in range(steps):
        index = order[step * batch_size:(step + 1) * batch_size]
        if len(index) < ctx.world_size:  # a tail too short to give every rank an image: skipped by all
            scheduler.step()
            continue
        local = ctx.local_positions(len(index), index.device)
        batch_labels = labels[index]
        weight_total = loss_weights[batch_labels].sum()
        images, local_labels = inputs(index, local, generator, batch_labels[local])
        with autocast(device):
            logits = forward(images)
        losses = F.cross_entropy(logits.float(), local_labels, weight=loss_weights, reduction="none",
                                 label_smoothing=label_smoothing)
        loss = losses.sum() * (ctx.world_size / weight_total)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += losses.detach().sum() / weight_total * len(index)
        correct += (logits.detach().argmax(1) == local_labels).sum()
        if bar is not None:
            bar.update()
            if step % 20 == 0:  # a host sync: only now and then, and only with a progress bar
                bar.set_postfix(loss=f"{loss_sum.item() / min((step + 1) * batch_size, len(order)):.4f}")
    totals = ctx.all_reduce_sum(torch.stack([loss_sum, correct])).tolist()
    return EpochStats(totals[0] / len(order), totals[1] / len(order), len(order))


@torch.inference_mode()
def head_logits(head: torch.nn.Module, features: torch.Tensor, device: torch.device,
                batch_size: int = 4096) -> torch.Tensor:
    """Logits [N, K] (float32, CPU) of a classifier head on feature vectors."""
    was_training = head.training
    head.eval()
    outputs = []
    for start in range(0, len(features), batch_size):
        with autocast(device):
            outputs.append(head(features[start:start + batch_size].to(device)).float().cpu())
    head.train(was_training)
    return torch.cat(outputs) if outputs else torch.zeros((0, 0))
