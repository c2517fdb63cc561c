"""What a training run is asked to do, as plain data: TrainConfig and the named recipes. No torch here: the
command line builds its parser (and `kidneyct recipes` lists) from this module alone; kidneyct.training turns
a TrainConfig into preprocessing, a model and a split.

Recipes are TrainConfig settings as data, chosen with `--recipe NAME` (train, cv, compare-splits). A recipe
replaces the defaults; options given on the command line still win. Each entry records where its settings
were measured (docs/experiments.md).

DEFAULT_RECIPE is the best recipe measured by grouped cross-validation on a class-folder dataset (no masks);
TrainConfig takes its defaults from it, so `kidneyct train --data DIR` and `TrainConfig(data, out)` train exactly
that recipe. SOURCES_RECIPE is the best measured on several sources with masks (the shipped model's): what `train`,
`cv` and `compare-splits` train when given `--sources` and no `--recipe` (`default_recipe`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from kidneyct.records import DictRecord

_SEGMENTER_ZOOM = {"model": "lite0-unet", "image_size": 128, "epochs": 60, "batch_size": 16, "lr": 2e-3, "lr_batch": 16,
                   "patience": 60, "classes": "tumor,normal+cyst+nokidney", "body_crop": True, "kidney_crop": False,
                   "label_smoothing": 0.0, "sampler": "shuffle", "slice_probability": "mean"}

RECIPES: dict[str, dict] = {
    # The student project's set-up, the defaults before cross-validation picked a recipe; the demo uses it.
    "student-baseline": {
        "description": "seed-cnn at its default 224 px, 30 epochs, whole image, class-weighted loss",
        "settings": {"model": "seed-cnn", "image_size": None, "epochs": 30, "body_crop": False,
                     "kidney_crop": False, "label_smoothing": 0.0, "sampler": "shuffle"},
    },
    # docs/experiments.md, frozen Lite0 at 64 px: the best means of the first grid (5-fold grouped CV, Tumor vs
    # Normal), balanced accuracy 0.565 +- 0.202 per image vs the baseline's 0.525 +- 0.192: within noise, not the
    # default.
    "lite0-64-ls-bal": {
        "description": "frozen EfficientNet-Lite0 at 64 px, 15 epochs, label smoothing 0.1, balanced sampling "
                       "(cheap on a CPU; CV balanced accuracy 0.57 per image, 0.74 per series, series-disjoint)",
        "settings": {"model": "efficientnet-lite0", "image_size": 64, "epochs": 15, "kidney_crop": False,
                     "label_smoothing": 0.1, "sampler": "balanced"},
    },
    # docs/experiments.md, frozen Lite0 at 128 px on the body crop: the best frozen-backbone recipe (5-fold grouped
    # CV, Tumor vs Normal): balanced accuracy 0.635 +- 0.139 per image, 0.711 +- 0.165 per series. Cheap: features
    # cached once.
    "lite0-128-crop-ls-bal": {
        "description": "frozen EfficientNet-Lite0 at 128 px on the body crop, 15 epochs, label smoothing 0.1, "
                       "balanced sampling (CV balanced accuracy 0.64 per image, 0.71 per series, series-disjoint)",
        "settings": {"model": "efficientnet-lite0", "image_size": 128, "epochs": 15, "body_crop": True,
                     "kidney_crop": False, "label_smoothing": 0.1, "sampler": "balanced"},
    },
    # The default until the repeated-fold protocol put the kidney crop ahead of it (docs/experiments.md, the kidney
    # crop on both fold assignments). Before that protocol, the best measured recipe for Tumor vs Normal (5-fold
    # grouped CV, ranked by the mean of per-image and per-series balanced accuracy): 0.714 +- 0.170 per image,
    # 0.793 +- 0.070 per series, tumor sensitivity 0.681 / 0.900. The student's CNN trained from scratch on the
    # body crop beats every frozen ImageNet-feature recipe measured, by about half a standard deviation per image.
    "seed-cnn-96-crop-ls-bal": {
        "description": "seed-cnn from scratch at 96 px on the body crop, 15 epochs, label smoothing 0.1, balanced "
                       "sampling (the default before the kidney crop; 5 folds x 2 repeats, series-disjoint: pooled "
                       "ROC-AUC 0.58 per image, 0.61 per series)",
        "settings": {"model": "seed-cnn", "image_size": 96, "epochs": 15, "body_crop": True,
                     "kidney_crop": False, "label_smoothing": 0.1, "sampler": "balanced"},
    },
    # docs/experiments.md, the kidney crop on one and on both fold assignments, the default since: the body-crop
    # recipe above on the kidney crop (each slice cut to the square around both kidney regions). On 5 folds x 2
    # repeats, pooled out-of-fold Tumor-vs-Normal ROC-AUC 0.697 per image and 0.707 per series against the body
    # crop's 0.580 / 0.607 on the same folds: +0.118 [+0.012, +0.231] per image, the first paired interval above
    # zero; per series +0.100 [-0.035, +0.250].
    "seed-cnn-96-kidney-ls-bal": {
        "description": "seed-cnn from scratch at 96 px on the kidney crop, 15 epochs, label smoothing 0.1, balanced "
                       "sampling (5 folds x 2 repeats, series-disjoint: pooled ROC-AUC 0.70 per image, 0.71 per series)",
        "settings": {"model": "seed-cnn", "image_size": 96, "epochs": 15, "body_crop": True, "kidney_crop": True,
                     "label_smoothing": 0.1, "sampler": "balanced"},
    },
    # The segmenting model (docs/experiments.md, the lite0-unet rows): kidney and tumor maps learnt from masks, an
    # overview of the 256 px body view and a 128 px zoom on each kidney. Every slice not showing tumor is the other
    # class, so the kidney finder also learns from slices without kidneys.
    "lite0-unet-zoom": {
        "description": "EfficientNet-Lite0 U-Net (ImageNet, offline): kidney and tumor maps from masks, an overview "
                       "of the body and a zoom on each kidney at 128 px, 60 epochs; for sources with masks "
                       "(--sources sources/shared.toml)",
        "settings": _SEGMENTER_ZOOM,
    },
    # Row 30 of docs/experiments.md: row 29's recipe with synthetic tumors (KiTS23-sized, with their masks) inserted
    # into half the masked crops of normal kidneys, on the same folds: KiTS23 per slice ROC-AUC 0.752 (row 29: 0.711),
    # tumor Dice mean 0.332 (0.242), Kaggle per series 0.996 (0.870); Pancreas-CT normal slices called tumor 10.6%
    # (3.9%). Pooled per series +0.045 [-0.016, +0.115], ahead in 92% of resamples. The shipped model's recipe.
    "lite0-unet-zoom-synth": {
        "description": "lite0-unet-zoom with synthetic tumors and their masks in half the masked crops of normal "
                       "kidneys (5 folds, patient-disjoint: KiTS23 ROC-AUC 0.75 per slice, Kaggle 1.00 per series; "
                       "Pancreas-CT normals called tumor 10.6%)",
        "settings": {**_SEGMENTER_ZOOM, "synthetic_lesions": 0.5},
    },
    # Row 31: row 30's fold models retested with the midline rule (kidney-map components wholly within 0.2 of the
    # view's half side around its midline are the vertebral body or the aorta, not kidney), which acts only at
    # validation and inference, so this recipe trains the very weights of row 30. Pancreas-CT normal slices called
    # tumor 8.3% (10.6%), KiTS23 per slice ROC-AUC 0.743 (0.752). KiTS23 NoKidney slices in scope by the gate: 4.9%
    # on the second fold assignment (row 39; the 24.7% once given for row 31 counted label maps and is withdrawn).
    # The shipped model's recipe.
    "lite0-unet-zoom-synth-midline": {
        "description": "lite0-unet-zoom-synth whose kidney finder drops kidney-map components lying on the body's "
                       "midline (5 folds, patient-disjoint: KiTS23 ROC-AUC 0.74 per slice, Kaggle 1.00 per series; "
                       "Pancreas-CT normals called tumor 8.3%; KiTS23 slices without kidney in scope 4.9% on a "
                       "second fold assignment)",
        "settings": {**_SEGMENTER_ZOOM, "synthetic_lesions": 0.5, "midline_band": 0.2},
    },
}

# Decoded-size budgets (MiB) of one input, checked from its header (kidneyct.io.budget): files read by
# predict/explain on this machine (a 512 x 512 x 1000-slice int16 volume is 500 MiB; reading a volume takes
# about 3 times its stored size) and one upload to the server (a 4096 x 4096 RGBA PNG is 64 MiB).
MAX_DECODED_MB = 512
SERVE_MAX_DECODED_MB = 64
SERVE_MAX_SIDE = 4096  # pixels per side of an upload (`kidneyct serve`) or of an instance (`kidneyct listen`)

DEFAULT_RECIPE = "seed-cnn-96-kidney-ls-bal"
# A sources file brings masks (KiTS23's), which the segmenting recipes learn from: on sources/shared.toml a
# classifier learns which source a slice comes from (KiTS23 ROC-AUC 0.57, issue 24), the shipped recipe the lesion.
SOURCES_RECIPE = "lite0-unet-zoom-synth-midline"


def default_recipe(sources: bool) -> str:
    """The recipe a run gets when none is named: SOURCES_RECIPE for a sources file, else DEFAULT_RECIPE."""
    return SOURCES_RECIPE if sources else DEFAULT_RECIPE


def recipe_settings(name: str) -> dict:
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    return dict(RECIPES[name]["settings"])


SAMPLERS = ("shuffle", "balanced")
# Settings about where and how fast a run goes, not what it learns: a resumed run takes them anew.
RUNTIME_FIELDS = ("device", "progress", "workers", "cache", "cache_dir", "compile")
GROUPS = ("data", "model", "optimisation", "augmentation", "runtime")

# The defaults are the best cross-validated recipe (DEFAULT_RECIPE), read from its entry so that the recipe
# table stays the one place those settings are written down.
_DEFAULT = recipe_settings(DEFAULT_RECIPE)


def setting(default, group: str, help: str, **cli):
    """A TrainConfig field: its default, its group and its help; the command line's option is generated from
    it (`cli` may hold choices, metavar, required, exclusive (a mutually exclusive set's name), range=(low,
    high[, low_open]) checked when the command line is parsed, kind="device", or flag=None for a field the
    command line does not expose, repeat=True for an option given once per value)."""
    return field(default=default, metadata={"group": group, "help": help, **cli})


@dataclass
class TrainConfig(DictRecord):
    """What a training run is asked to do, grouped (data, model, optimisation, augmentation, runtime); every
    field documents itself and `kidneyct train/cv/compare-splits` options are generated from these fields."""

    data: str | list[str] = setting("", "data", "dataset folder above the class folders; repeat for several sources "
                                    "(each named after its folder, series inferred from the pixels)", repeat=True)
    sources: str | None = setting(None, "data", "a TOML file of sources (name, data, groups, masks, licence: see "
                                  "docs/sources.md and sources/shared.toml), beside or instead of --data", metavar="FILE")
    test_source: str | None = setting(None, "data", "hold this source out: train and validate on the other sources, "
                                      "test on it (cv: leave one source out, one fold)", metavar="NAME")
    out: str = setting("", "runtime", "run folder", flag=None)
    classes: str = setting("tumor,normal", "data", "'tumor,normal', 'all' (four classes), 'tumor,rest' (every other "
                           "folder one class) or merged classes such as 'tumor,normal+cyst'")
    split: str = setting("grouped", "data", "grouped: series-disjoint; random: image-level, only to show how much a "
                         "leaky split inflates", choices=("grouped", "random"))
    val_fraction: float = setting(0.15, "data", "share of series for validation", range=(0.0, 0.9, True))
    test_fraction: float = setting(0.15, "data", "share of series for the test split", range=(0.0, 0.9))
    window_level: float = setting(40.0, "data", "HU window level for DICOM/NIfTI inputs", flag=None)
    window_width: float = setting(400.0, "data", "HU window width for DICOM/NIfTI inputs", flag=None)
    body_crop: bool = setting(_DEFAULT.get("body_crop", False), "data",
                              "crop to the body and blank table/background before resizing (stored in the checkpoint)")
    body_norm: bool = setting(False, "data", "scale each slice's body to a fixed intensity mean and sd before the "
                              "model (removes the export's window level and width; stored in the checkpoint)")
    kidney_crop: bool = setting(_DEFAULT.get("kidney_crop", False), "data", "crop to the square around both kidneys (located from anatomy; the "
                                "body crop where no spine is found) before resizing (stored in the checkpoint)")
    split_file: str | None = setting(None, "data", "read train/val/test from this split CSV (cv folds)", flag=None)
    model: str = setting(_DEFAULT["model"], "model", "a name from `kidneyct models`")
    image_size: int | None = setting(_DEFAULT.get("image_size"), "model", "input side in pixels (None: the model's)", range=(16, 4096))
    pretrained: str | None = setting(None, "model", "ImageNet weights or none (default: the model's)",
                                     choices=("imagenet", "none"))
    finetune: bool = setting(_DEFAULT.get("finetune", False), "model", "unfreeze an ImageNet backbone")
    dropout: float = setting(0.5, "model", "dropout before the classifier", range=(0.0, 0.99))
    tta: bool = setting(False, "model", "inference averages the slice and its mirror image (stored in the checkpoint; "
                        "a segmenting model mirrors each of its crops, at validation too)")
    slice_probability: str = setting("head", "model", "segmenting models: the slice's tumor probability from the "
                                     "slice head, the tumor map's peak inside the kidney, or their mean",
                                     choices=("head", "map", "mean"))
    midline_band: float = setting(0.0, "model", "segmenting models: kidney-map components lying wholly within this "
                                  "share of the view's half side around its midline are not kidney (the vertebral "
                                  "body, the aorta) at validation and inference; 0: off", metavar="SHARE",
                                  range=(0.0, 1.0))
    midline_centre: bool = setting(False, "model", "segmenting models, with --midline-band: a kidney-map component "
                                   "centred within the band is not kidney either, unless a quarter of it lies beyond "
                                   "the band on each side (a horseshoe kidney)")
    view_scale: float = setting(2.0, "model", "segmenting models: side of the body view both looks cut from, as a "
                                "multiple of the input side (stored in the checkpoint): the zoom on a kidney, about a "
                                "third of the view, is as sharp as the view at 3", metavar="SCALE", range=(1.0, 8.0))
    epochs: int = setting(_DEFAULT.get("epochs", 30), "optimisation",
                          "epochs; with --resume, a larger value extends the run", range=(1, None))
    batch_size: int = setting(32, "optimisation", "images per optimiser step", range=(1, None))
    lr: float = setting(1e-3, "optimisation", "AdamW learning rate (cosine schedule)", range=(0.0, 10.0, True))
    lr_batch: int = setting(32, "optimisation", "the batch size --lr is given for: --batch-size B trains at lr x "
                            "sqrt(B / lr-batch), the square-root rule of Adam-type optimisers, so a large GPU batch "
                            "trains the recipe a small CPU batch does", range=(1, None))
    weight_decay: float = setting(1e-4, "optimisation", "AdamW weight decay", range=(0.0, 1.0))
    warmup_epochs: float = setting(1.0, "optimisation", "linear warm-up, in epochs", range=(0.0, 1000.0))
    weight_average: float = setting(0.0, "optimisation", "segmenting models: keep an exponential moving average of "
                                    "the weights over the second half of the epochs, with this decay per step, and "
                                    "keep it as the final weights (0: off; 0.998 averages about the last 500 steps)",
                                    metavar="DECAY", range=(0.0, 0.9999))
    patience: int = setting(8, "optimisation", "epochs without a better validation macro-F1 before stopping", range=(1, None))
    label_smoothing: float = setting(_DEFAULT.get("label_smoothing", 0.0), "optimisation", "label smoothing", range=(0.0, 0.99))
    sampler: str = setting(_DEFAULT.get("sampler", "shuffle"), "optimisation",
                           "shuffle: each image once per epoch, class-weighted loss; balanced: classes drawn equally",
                           choices=SAMPLERS)
    threshold: float | None = setting(None, "optimisation", "tumor operating threshold on calibrated p(tumor), "
                                      "recorded in the checkpoint", exclusive="operating point", range=(0.0, 1.0))
    target_sensitivity: float | None = setting(None, "optimisation", "record the highest tumor threshold reaching "
                                               "this sensitivity on the validation split (e.g. 0.95)",
                                               exclusive="operating point", range=(0.0, 1.0, True))
    seed: int = setting(0, "optimisation", "seed of the split, the initialisation and the augmentation", range=(0, None))
    augment: bool = setting(True, "augmentation", "augment training batches")
    augmentation: str = setting("default", "augmentation", "geometry/intensity policy: default, jitter or strong")
    translate: float | None = setting(None, "augmentation",
                                      "random shifts up to this fraction of the side (default: the policy's)", range=(0.0, 0.5))
    acquisition: str = setting("none", "augmentation", "scanner/export augmentation: none, mild, strong, or "
                               "PRESET:family+family (fov, resolution, blur, sharpen, noise, window, gamma, jpeg)")
    synthetic_lesions: float = setting(0.0, "augmentation", "share of training draws (slices with a located kidney) "
                                       "that receive a synthetic tumor (or cyst, with a Cyst class) and its label; "
                                       "segmenting models: share of masked crops of normal kidneys that receive a "
                                       "synthetic tumor with its mask",
                                       metavar="SHARE", range=(0.0, 1.0))
    replacing_tumors: float = setting(0.0, "augmentation", "segmenting models: share of the synthetic tumors that "
                                      "replace the kidney on the slice (centred on it, larger than it, the kidney "
                                      "around them painted over as fat), as a polar mass shows beyond the kidney's end",
                                      metavar="SHARE", range=(0.0, 1.0))
    enhancing_tumors: float = setting(0.0, "augmentation", "segmenting models: share of the synthetic tumors that are "
                                      "about as bright as the enhanced kidney or brighter, instead of darker",
                                      metavar="SHARE", range=(0.0, 1.0))
    pasted_tumors: float = setting(0.0, "augmentation", "segmenting models: share of the synthetic tumors that are "
                                   "real tumors of other training patients' slices copied in instead (TumorCP), "
                                   "scaled to the receiving kidney, turned and grey-matched",
                                   metavar="SHARE", range=(0.0, 1.0))
    pasted_inside: bool = setting(False, "augmentation", "segmenting models: pasted tumors cut to the receiving "
                                  "kidney grown by 2 px (no pasted tumor pixel, kidney region to the kidney finder, "
                                  "in the fat or a neighbouring organ)")
    unenhanced: float = setting(0.0, "augmentation", "segmenting models: share of masked crops whose kidneys are "
                                "darkened as without contrast medium, so that the kidney finder finds them there too",
                                metavar="SHARE", range=(0.0, 1.0))
    device: str = setting("auto", "runtime", "auto, cpu, cuda or cuda:N", kind="device")
    workers: int | None = setting(None, "runtime", "decoding processes (default: CPU count)", range=(1, 256))
    progress: bool = setting(True, "runtime", "progress bars")
    cache: bool = setting(True, "runtime", "decode once into a memory-mapped cache that later runs load")
    cache_dir: str | None = setting(None, "runtime", "decode cache folder (default: $KIDNEYCT_CACHE, else "
                                    "./.cache/kidneyct)")
    feature_cache: bool = setting(True, "runtime", "frozen backbone: train the head on cached features")
    feature_views: int = setting(4, "runtime", "augmented views per image in the feature cache", range=(0, 64))
    compile: bool = setting(False, "runtime", "torch.compile the trained module")
    recipe: str | None = setting(DEFAULT_RECIPE, "model", "named settings (`kidneyct recipes`); explicit options "
                                 f"override them; with --sources the default is {SOURCES_RECIPE}")

    def groups(self) -> dict[str, dict]:
        """The settings by group: {"data": {...}, "model": {...}, ...}."""
        out: dict[str, dict] = {group: {} for group in GROUPS}
        for f in fields(self):
            out[f.metadata["group"]][f.name] = getattr(self, f.name)
        return out


def apply_recipe(config: TrainConfig, name: str) -> TrainConfig:
    """`config` (a TrainConfig) with the recipe's settings and its name recorded."""
    known = {f.name for f in fields(config)}
    settings = recipe_settings(name)
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"recipe {name!r} sets unknown field(s) {sorted(unknown)}")
    return replace(config, **settings, recipe=name)


def recipe_config(name: str, data: str, out: str, **overrides) -> TrainConfig:
    """A TrainConfig of recipe `name` for `data` and `out`, with `overrides` on top (they win, as options
    given on the command line do)."""
    return replace(apply_recipe(TrainConfig(data=data, out=out), name), **overrides)
