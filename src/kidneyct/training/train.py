"""Training: AdamW + cosine schedule, class-weighted loss, early stopping on validation macro-F1,
atomic best/last checkpoints, exact resume. At the end each checkpoint is calibrated and given its study
settings for its own weights, then written once. Images are decoded once into a memory-mapped cache, live on
the GPU when they fit (else are read per batch from the cache) and are augmented batch-wise on the
device, so no DataLoader sits in the hot loop. A frozen backbone trains its head on cached features.
Under torchrun each rank trains on its shard of every global batch (DistributedDataParallel); rank 0
writes the split, checkpoints and history."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kidneyct.checkpoint import (Checkpoint, DataRecord, EpochRecord, Outputs, Progress, ResumeState, Segmentation,
                                 Source, TrainingRecord, read_checkpoint, write_checkpoint)
from kidneyct.config import RUNTIME_FIELDS, SAMPLERS, TrainConfig
from kidneyct.data.kidneys import kidney_masks
from kidneyct.data.prepare import PreparedData, prepare_data
from kidneyct.evaluation.metrics import point_metrics
from kidneyct.io.atomic import remove_stale_temporaries
from kidneyct.labels import positive_index
from kidneyct.models import ModelConfig, create_model, get_spec
from kidneyct.models.forward import predict_logits
from kidneyct.preprocess import Augmentation, Preprocessing
from kidneyct.run_folder import SPLIT_CSV, RunFolder
from kidneyct.runtime import configure_backend, progress_bar, seed_everything
from kidneyct.synthetic.phantom import is_synthetic
from kidneyct.training import settings
from kidneyct.training.calibration import fit_calibration
from kidneyct.training.distributed import DistContext, init_distributed
from kidneyct.training.engine import FeatureInputs, ImageInputs, ImageStore, head_logits, run_epoch
from kidneyct.training.features import FeatureMemo, extract_features, subset_features, uses_feature_cache
from kidneyct.training.lesion_inputs import LesionPlan
from kidneyct.training.segmenter import SegmenterTrainer, TrainingSet
from kidneyct.training.zoom_batches import has_mask
from kidneyct.training.study_settings import study_settings

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out: Path
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[EpochRecord]
    skipped: list
    split_sizes: dict
    feature_seconds: float | None = None  # time to cache backbone features (frozen backbones)


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, N / (K * n_c): every class contributes equally to the loss."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def make_optimizer(parameters, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # The fused kernel updates every parameter in one pass (one launch on CUDA); a head of a few
    # tensors trains about a third faster per step on CPU too.
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=True)


def cosine_with_warmup(optimizer, total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _write_history(path: Path, history: list[EpochRecord]) -> None:
    if not history:
        return
    rows = [asdict(row) for row in history]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def validation_metrics(logits: torch.Tensor, labels: np.ndarray, classes, weights=None) -> dict:
    loss = F.cross_entropy(logits, torch.as_tensor(labels), weight=weights).item()
    probs = torch.softmax(logits, 1).numpy()
    metrics = point_metrics(labels, probs, classes)
    return {"loss": loss, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def _prepare(config: TrainConfig, prep: Preprocessing, out: Path, reuse_split: bool, ctx: DistContext):
    """Rank 0 decodes (filling the cache) and writes the split; the other ranks then load both."""
    device = ctx.device
    options = dict(seed=config.seed, fractions=settings.split_fractions(config), split_kind=config.split,
                   workers=config.workers, progress=config.progress and ctx.is_main,
                   cache=settings.cache_settings(config), test_source=config.test_source,
                   jpeg_device=device if device.type == "cuda" else None)
    data = None
    if config.split_file is not None and not reuse_split and ctx.is_main:
        source = Path(config.split_file)
        if not source.is_file():
            raise FileNotFoundError(f"split file {source} not found")
        if source.resolve() != RunFolder(out).split_csv.resolve():
            shutil.copyfile(source, RunFolder(out).split_csv)
    reuse_split = reuse_split or config.split_file is not None
    if ctx.is_main:
        data = prepare_data(settings.sources(config), config.classes, prep, RunFolder(out).split_csv,
                            reuse_split=reuse_split, **options)
    ctx.barrier()
    if data is None:
        data = prepare_data(settings.sources(config), config.classes, prep, RunFolder(out).split_csv, reuse_split=True,
                            write_split=False, **options)
    return data


def train(config: TrainConfig, resume: bool = False, extend_epochs: int | None = None,
          feature_memo: FeatureMemo | None = None) -> TrainResult:
    """Train per `config`; under torchrun (WORLD_SIZE > 1) every rank calls this and they train one model.

    Args:
        config: what to train on and how (kidneyct.config.TrainConfig; its defaults are the default recipe).
        resume: continue `<out>/last.pt` under its stored configuration (only runtime settings may change).
        extend_epochs: with `resume`, a larger epoch budget (the cosine schedule stretches from where it is).
        feature_memo: lets trainings on subsets of one decode cache share a frozen backbone's features.

    Returns:
        A TrainResult: the run folder, best.pt and last.pt (calibrated), the history, the skipped files and
        the split sizes.
    """
    ctx = init_distributed(config.device)
    try:
        return _train(config, resume, extend_epochs, ctx, feature_memo)
    finally:
        ctx.close()


def _resolved(config: TrainConfig, resume: bool, extend_epochs: int | None) -> tuple[TrainConfig, Checkpoint | None]:
    """The configuration to run and, when resuming, the checkpoint to continue from."""
    last_path = RunFolder(config.out).last
    if not resume:
        return config, None
    if not last_path.exists():
        raise FileNotFoundError(f"--resume: no {last_path} to resume from")
    previous = read_checkpoint(last_path)
    if previous.resume is None or previous.training is None or previous.training.config is None:
        raise ValueError(f"--resume: {last_path} holds no training state to resume from")
    stored = previous.training.config
    # The run continues as configured; only where it runs (its folder, which may have moved, included) and how
    # it reports may change.
    runtime = {name: getattr(config, name) for name in (*RUNTIME_FIELDS, "out")}
    return TrainConfig.from_dict({**stored.to_dict(), **runtime, "epochs": extend_epochs or stored.epochs}), previous


def _check(config: TrainConfig) -> None:
    if get_spec(config.model).maps:
        _check_segmenting(config)
    if config.threshold is not None and config.target_sensitivity is not None:
        raise ValueError("give either a threshold or a target sensitivity, not both")
    if config.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {config.sampler!r}; choose from {SAMPLERS}")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {config.label_smoothing}")
    if not 0.0 <= config.synthetic_lesions <= 1.0:
        raise ValueError(f"synthetic_lesions is a share of training slices, in [0, 1]; got {config.synthetic_lesions}")
    for option, share in (("--replacing-tumors", config.replacing_tumors), ("--enhancing-tumors", config.enhancing_tumors),
                          ("--pasted-tumors", config.pasted_tumors)):
        if share > 0 and (config.synthetic_lesions <= 0 or not get_spec(config.model).maps):
            raise ValueError(f"{option} is a share of a segmenting model's synthetic tumors: it needs a "
                             "segmenting model and --synthetic-lesions above 0")
    if config.weight_average > 0 and not get_spec(config.model).maps:
        raise ValueError("--weight-average keeps a segmenting model's moving average of its weights; "
                         f"{config.model} is not a segmenting model")
    if config.pasted_inside and config.pasted_tumors <= 0:
        raise ValueError("--pasted-inside cuts pasted tumors to their kidney: give --pasted-tumors above 0 too")
    if config.synthetic_lesions > 0 and config.kidney_crop:
        raise ValueError("synthetic lesions are placed by locating the kidneys in the whole body, but with the kidney "
                         "crop (the default recipe's) the cached images hold only the kidneys: add --no-kidney-crop")


def _check_segmenting(config: TrainConfig) -> None:
    """A segmenting model looks at the body view and zooms on the kidneys it finds itself, learns from masks
    with its own augmentation, and has two classes: tumor and the rest."""
    given = [name for name, on in (("--kidney-crop", config.kidney_crop), ("--acquisition", config.acquisition not in ("none", "", None)),
                                   ("--body-norm", config.body_norm)) if on]
    if given:
        raise ValueError(f"{config.model} is a segmenting model: {', '.join(given)} do not apply to it (it looks at "
                         "the body view, zooms on the kidneys it finds and normalises each crop itself)")
    if config.split_file is None and config.classes.count(",") != 1:
        raise ValueError(f"{config.model} learns two classes, tumor and the rest: give --classes such as "
                         f"'tumor,normal+cyst+nokidney', not {config.classes!r}")
    if config.midline_centre and config.midline_band <= 0:
        raise ValueError("--midline-centre refines the midline rule: give --midline-band above 0 too")


@dataclass
class _Run:
    """What one training run holds while its epochs go by (instead of closures over mutable state)."""

    config: TrainConfig
    ctx: DistContext
    out: Path
    prep: Preprocessing
    data: PreparedData
    model_config: ModelConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    state: Progress
    augmentation: Augmentation | None
    acquisition: object = None
    lesions: LesionPlan | None = None
    inputs: object = None
    forward: object = None
    val_features: torch.Tensor | None = None
    feature_seconds: float | None = None
    best_weights: dict | None = None  # a CPU copy of the best epoch's weights, for the final best.pt
    segmenter: SegmenterTrainer | None = None  # a segmenting model's epochs (kidneyct.training.segmenter)

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.out)

    @property
    def classes(self) -> list[str]:
        return self.data.catalogue.classes

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def val_batch(self) -> int:
        # Inference keeps one layer's activations, so a GPU takes big batches; on a CPU a 128-image batch at
        # 224 px would hold ~1 GB of seed-cnn activations: the training batch size is the bounded choice.
        return max(self.config.batch_size, 128) if self.device.type == "cuda" else self.config.batch_size

    def val_logits(self, part) -> torch.Tensor:
        if self.segmenter is not None:
            views = self.data.splits["val"].images[part]
            return torch.from_numpy(self.segmenter.validation_logits(views, self.config.slice_probability))
        if self.val_features is not None:
            return head_logits(self.model.head, self.val_features[part], self.device)
        return predict_logits(self.model, self.prep, self.data.splits["val"].images[part], self.val_batch, self.device)

    def weights(self) -> dict:
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def checkpoint(self, weights: dict, resume: ResumeState | None = None, **fitted) -> Checkpoint:
        """The run's checkpoint with `weights`; `fitted`: the calibration, operating point and study settings
        fitted at the end (absent in the checkpoints written while training goes on)."""
        data = DataRecord(str(self.data.catalogue.root), is_synthetic(self.data.catalogue.root), SPLIT_CSV,
                          self.config.split, self.config.seed,
                          {name: len(arrays) for name, arrays in self.data.splits.items()},
                          [list(item) for item in self.data.skipped])
        lesions = None if self.lesions is None else {"share": self.lesions.share, "model": self.lesions.model.to_dict()}
        progress = Progress(**{**asdict(self.state), "history": list(self.state.history)})
        training = TrainingRecord(self.config, data, progress, (self.augmentation or Augmentation()).to_dict(),
                                  None if self.acquisition is None else self.acquisition.to_dict(), lesions)
        sources = [Source.of_summary(name, summary) for name, summary in self.data.sources_summary().items()]
        return Checkpoint(self.model_config, list(self.classes), self.prep, weights, training=training, resume=resume,
                          sources=sources, outputs=self.outputs(), **fitted)

    def outputs(self) -> Outputs:
        """What the model outputs beside its logits: a segmenting model's maps and how its looks are made."""
        if self.segmenter is None:
            return Outputs()
        trained = self.segmenter.settings
        return Outputs(maps=get_spec(self.config.model).maps, slice_probability=self.config.slice_probability,
                       kidney_finder="kidney map", segmentation=Segmentation(trained.work_size, trained.zoom,
                                                                          mirror=trained.mirror))

    def resume_state(self) -> ResumeState:
        average = self.segmenter.average_state() if self.segmenter is not None else None
        return ResumeState(self.optimizer.state_dict(), self.scheduler.state_dict(), average)


def _start(config: TrainConfig, previous: Checkpoint | None, ctx: DistContext) -> _Run:
    """Data, model, optimiser and schedule (restored when resuming)."""
    out = Path(config.out)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_temporaries(out):  # a run killed mid-write left it
            log.info("removed %s, left by an interrupted write", stale.name)
    configure_backend(ctx.device)
    prep = settings.preprocessing(config)
    data = _prepare(config, prep, out, previous is not None, ctx)
    classes = data.catalogue.classes
    if (config.threshold is not None or config.target_sensitivity is not None) and positive_index(classes) is None:
        raise ValueError(f"a tumor operating threshold needs a tumor class; classes are {classes}")
    train_set, val_set = data.splits["train"], data.splits["val"]
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"split left {len(train_set)} training and {len(val_set)} validation images; "
                         "need more data or other fractions")
    model_config = settings.model_config(config, len(classes))
    if ctx.is_main:
        RunFolder(out).config_json.write_text(json.dumps({"train": config.to_dict(), "model": model_config.to_dict(),
                                                     "preprocessing": prep.to_dict()}, indent=2))
    seed_everything(config.seed)
    # Pretrained weights load on resume too: which layers a model freezes follows its weights (lite0-unet's
    # early stages), and the optimizer state being restored is for exactly the parameters trained then.
    model = create_model(model_config).to(ctx.device)
    model = model.to(memory_format=torch.channels_last)  # faster on CPU (oneDNN) and CUDA alike
    lr = settings.learning_rate(config)
    if lr != config.lr:
        log.info("learning rate %.3g: --lr %.3g scaled for %d images per step (given for %d)", lr, config.lr,
                 config.batch_size, config.lr_batch)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], lr, config.weight_decay)
    segmenter = _segmenter(config, model, train_set, classes, ctx) if get_spec(config.model).maps else None
    steps_per_epoch = segmenter.steps_per_epoch(config.batch_size) if segmenter else \
        math.ceil(len(train_set) / config.batch_size)
    scheduler = cosine_with_warmup(optimizer, steps_per_epoch * config.epochs,
                                   int(steps_per_epoch * config.warmup_epochs))
    state, best_weights = Progress(), None
    if previous is not None:
        model.load_state_dict(previous.state_dict)
        optimizer.load_state_dict(previous.resume.optimizer)
        scheduler.load_state_dict(previous.resume.scheduler)
        if segmenter is not None:
            segmenter.restore_average(previous.resume.average)
        state = Progress(**{**asdict(previous.progress), "history": list(previous.progress.history)})
        best_path = RunFolder(out).best
        best_weights = read_checkpoint(best_path).state_dict if best_path.exists() else None
        log.info("resuming %s after epoch %d", out, state.epoch)
    run = _Run(config, ctx, out, prep, data, model_config, model, optimizer, scheduler, state,
               settings.augmentation_policy(config), settings.acquisition_policy(config))
    run.best_weights, run.segmenter = best_weights, segmenter
    return run


def _segmenter(config: TrainConfig, model, train_set, classes: list[str], ctx: DistContext) -> SegmenterTrainer:
    """The epochs of a segmenting model on the training split's body views and masks (held in memory)."""
    if ctx.world_size > 1:
        raise ValueError("segmenting models train in one process; run without torchrun")
    if train_set.masks is None:
        raise ValueError("a segmenting model needs masks: give sources with a masks folder (docs/sources.md)")
    views, masks = np.asarray(train_set.images), np.asarray(train_set.masks)
    if not has_mask(masks).any():
        raise ValueError("no training slice has a mask: a segmenting model learns its maps from masks "
                         "(docs/sources.md: masks/<image stem>.png beside the class folders)")
    data = TrainingSet(views, masks, train_set.labels, np.array([s.source or "" for s in train_set.samples]))
    return SegmenterTrainer(model, data, positive_index(classes), settings.segmenter_settings(config), config.seed,
                            ctx.device, config.epochs)


def _lesion_plan(run: _Run) -> LesionPlan | None:
    """Kidney masks of the training rows and the plan for synthetic lesions, when asked for."""
    if run.config.synthetic_lesions <= 0:
        return None
    train_set = run.data.splits["train"]
    masks = kidney_masks(train_set.images, run.data.decoded.cache_file, run.config.workers)
    log.info("synthetic lesions: %.0f%% of draws, %d of %d training images have a located kidney",
             100 * run.config.synthetic_lesions, int(masks.reshape(len(masks), -1).any(1).sum()), len(masks))
    return LesionPlan.for_classes(torch.from_numpy(masks).to(run.device), run.config.synthetic_lesions, run.classes)


def _attach_inputs(run: _Run, memo: FeatureMemo | None) -> None:
    """What the optimiser trains on: the head on cached backbone features (frozen backbone), else the
    whole model on augmented images (with synthetic lesions when asked for)."""
    config, train_set, val_set = run.config, run.data.splits["train"], run.data.splits["val"]
    if run.segmenter is not None:  # it draws its own crops and steps
        return
    if uses_feature_cache(run.model, config.feature_cache):
        if config.synthetic_lesions > 0 or run.acquisition is not None:
            raise ValueError("synthetic lesions and acquisition augmentation change images every draw: a frozen "
                             "backbone's cached features cannot follow; add --no-feature-cache or --finetune")
        started = time.perf_counter()
        views = config.feature_views if run.augmentation is not None else 0
        args = (run.model, run.prep)
        train_features = subset_features(*args, train_set.images, views, run.augmentation, config.seed, run.ctx,
                                         run.device, run.val_batch, memo)
        # Validation takes the plain view: from the memo when there is one, else computed on its own.
        run.val_features = subset_features(*args, val_set.images, views, run.augmentation, config.seed, run.ctx,
                                           run.device, run.val_batch, memo)[0] if memo is not None else \
            extract_features(*args, ImageStore.create(val_set.images, run.device), 0, None, config.seed, run.ctx,
                             run.val_batch)[0]
        run.feature_seconds = time.perf_counter() - started
        log.info("cached backbone features of %d training images x %d view(s) and %d validation images in %.1f s",
                 len(train_set), 1 + views, len(val_set), run.feature_seconds)
        trained, run.inputs = run.model.head, FeatureInputs(train_features)
    else:
        run.lesions = _lesion_plan(run)
        trained = run.model
        run.inputs = ImageInputs(ImageStore.create(train_set.images, run.device), run.prep, run.augmentation,
                                 run.acquisition, run.lesions)
    run.forward = run.ctx.wrap(trained)
    if config.compile:
        run.forward = torch.compile(run.forward)


def _epoch(run: _Run, weights: torch.Tensor) -> None:
    """One epoch: sample, train, validate, record, checkpoint."""
    config, state, train_set, val_set = run.config, run.state, run.data.splits["train"], run.data.splits["val"]
    epoch = state.epoch + 1
    # Seeds per epoch (not one global stream) make a resumed run repeat the uninterrupted one.
    seed_everything(config.seed * 1000 + epoch)
    generator = torch.Generator(device=run.device).manual_seed(config.seed * 1000 + epoch)
    labels = torch.as_tensor(train_set.labels).to(run.device)
    if config.sampler == "balanced":
        order = torch.multinomial(weights[labels.cpu()].to(run.device), len(train_set), replacement=True,
                                  generator=generator)
    else:
        order = torch.randperm(len(train_set), generator=generator, device=run.device)
    # Balanced sampling already gives every class equal weight: weighting the loss too would count it twice.
    loss_weights = (weights if config.sampler == "shuffle" else torch.ones_like(weights)).to(run.device)
    run.model.train()
    started = time.perf_counter()
    steps = math.ceil(len(train_set) / config.batch_size)
    bar = progress_bar(total=steps, enabled=config.progress and run.ctx.is_main, desc=f"epoch {epoch}/{config.epochs}")
    if run.segmenter is not None:
        bar.close()  # it has a bar of its own
        stats = run.segmenter.train_epoch(epoch, run.optimizer, run.scheduler, config.batch_size, not bar.disable)
        if epoch == config.epochs:  # the final weights are the moving average, where one is kept
            run.segmenter.adopt_average()
    else:
        stats = run_epoch(run.forward, run.inputs, labels, loss_weights, run.optimizer, run.scheduler, order,
                          config.batch_size, generator, run.ctx, run.device, bar if not bar.disable else None,
                          label_smoothing=config.label_smoothing)
    bar.close()
    seconds = time.perf_counter() - started
    if run.segmenter is None or run.segmenter.validates(epoch, config.epochs):
        logits = run.ctx.assemble(run.val_logits(run.ctx.shard(len(val_set))), len(val_set))
        val = validation_metrics(logits, val_set.labels, run.classes, weights)
    else:
        val = {"loss": math.nan, "accuracy": math.nan, "macro_f1": math.nan}  # not measured this epoch
    improved = _record(state, epoch, stats, val, seconds, run.optimizer.param_groups[0]["lr"], config.patience)
    if run.segmenter is not None:
        # A segmenting model keeps its final weights: its validation split, a few dozen slices, is too small to
        # pick an epoch by without picking its noise.
        improved = epoch == config.epochs
        if improved:
            state.best_epoch = epoch
    log.info("epoch %d: train loss %.4f, %s (%.0f img/s)", epoch, stats.loss, _validation_words(val),
             stats.seen / seconds)
    if improved:
        run.best_weights = run.weights()
    if run.ctx.is_main:  # while training goes on: uncalibrated, so that an interrupted run can resume
        if improved:
            write_checkpoint(run.checkpoint(run.best_weights), run.folder.best)
        write_checkpoint(run.checkpoint(run.weights(), run.resume_state()), run.folder.last)
        _write_history(run.folder.history_csv, state.history)


def _validation_words(val: dict) -> str:
    """The epoch's validation numbers for the log; a segmenting model measures them only on some epochs."""
    if math.isnan(val["loss"]):
        return "validation not measured this epoch"
    return f"val loss {val['loss']:.4f}, val acc {val['accuracy']:.4f}, val macro-F1 {val['macro_f1']:.4f}"


def _record(state: Progress, epoch: int, stats, val: dict, seconds: float, lr: float, patience: int) -> bool:
    """Update the state with one epoch's numbers; True when validation macro-F1 improved."""
    state.epoch = epoch
    improved = val["macro_f1"] > state.best_score + 1e-6
    if improved:
        state.best_score, state.best_epoch, state.stale_epochs = val["macro_f1"], epoch, 0
    else:
        state.stale_epochs += 1
    state.history.append(EpochRecord(
        epoch, train_loss=round(stats.loss, 6), train_accuracy=round(stats.accuracy, 6),
        val_loss=round(val["loss"], 6), val_accuracy=round(val["accuracy"], 6),
        val_macro_f1=round(val["macro_f1"], 6), lr=lr,
        seconds=round(seconds, 3), images_per_second=round(stats.seen / seconds, 1)))
    if state.stale_epochs >= patience:
        state.stopped_early = True
        log.info("early stop after epoch %d: no better validation macro-F1 for %d epochs", epoch, patience)
    return improved


def _finish(run: _Run) -> None:
    """Write last.pt and best.pt once each, for its own weights: calibrated on the validation split, with what
    inference needs to judge whole studies (study rule, scope statistics, intensity profile)."""
    if run.ctx.is_main:
        last = run.weights()
        # A resumed run whose best.pt was removed keeps its last weights as the best.
        best = run.best_weights if run.best_weights is not None else last
        for path, weights, resume in ((run.folder.last, last, run.resume_state()), (run.folder.best, best, None)):
            run.model.load_state_dict(weights)
            write_checkpoint(run.checkpoint(weights, resume, **_fitted(run)), path)
    run.ctx.barrier()  # every rank returns once rank 0's files are written


def _fitted(run: _Run) -> dict:
    """The calibration, operating point and study settings of the model's current weights."""
    val = run.data.splits["val"]
    calibration, point = fit_calibration(run.val_logits(slice(None)).float().cpu().numpy(), val.labels, run.classes,
                                         run.config.threshold, run.config.target_sensitivity)
    log.info("temperature %.3f, validation ECE %.4f -> %.4f", calibration.temperature,
             calibration.validation.ece_before, calibration.validation.ece_after)
    study = study_settings(run.model, run.prep, run.data.splits["train"].images, val.images, run.device,
                           features=run.segmenter is None)
    return {"calibration": calibration, "operating_point": point, "study": study}


def _train(config: TrainConfig, resume: bool, extend_epochs: int | None, ctx: DistContext,
           memo: FeatureMemo | None) -> TrainResult:
    config, previous = _resolved(config, resume, extend_epochs)
    _check(config)
    run = _start(config, previous, ctx)
    _attach_inputs(run, memo)
    weights = class_weights(run.data.splits["train"].labels, len(run.classes))
    while run.state.epoch < config.epochs and not run.state.stopped_early:
        _epoch(run, weights)
    _finish(run)
    return TrainResult(run.out, run.folder.best, run.folder.last, run.state.history, run.data.skipped,
                       {name: len(arrays) for name, arrays in run.data.splits.items()}, run.feature_seconds)
