"""The shipped model's packaging: a trained run measured on its held-out series and on a source it never saw,
stored with fp16 weights, a model card and its ONNX export, and described in a page."""

from dataclasses import replace

import kidneyct
from kidneyct.checkpoint import Source, SourceValidation, read_checkpoint
from kidneyct.experiments.ship import ExternalSource, ShipSpec, TrainingSource, package


def test_a_trained_run_is_packaged_with_its_card_and_export(trained_run, phantom_png, tmp_path):
    spec = ShipSpec("phantom model", "student-baseline", TrainingSource(Source("phantoms", licence="CC0"),
                                                                        str(phantom_png)),
                    "a model of phantoms", "CC0 (phantoms)", "made here",
                    external=[ExternalSource(Source("phantoms-normal", licence="CC0"),
                                             {"Normal": str(phantom_png / "Normal")})],
                    recorded=[SourceValidation("phantoms", "elsewhere", "series", 3, {"roc_auc": 0.5}, "a command")])
    path = package(trained_run.best_checkpoint, spec, tmp_path / "weights", tmp_path / "card.md")
    shipped = read_checkpoint(path)
    assert shipped.resume is None and all(v.dtype.itemsize == 2 for v in shipped.state_dict.values()
                                          if v.is_floating_point())
    counts, sizes = shipped.sources[0].counts, trained_run.split_sizes
    assert set(counts) == {"Tumor", "Normal"} and sum(counts.values()) == sizes["train"] + sizes["val"]
    assert shipped.data.root == shipped.training.config.data == "phantoms"  # no folder of this machine
    card = shipped.model_card
    assert [(v.source, v.unit) for v in card.validation] == [("phantoms", "slice"), ("phantoms", "series"),
                                                             ("phantoms-normal", "slice"), ("phantoms", "series")]
    assert set(card.validation[2].metrics) == {"in_scope", "called_tumor_among_normal"}
    onnx = kidneyct.load(tmp_path / "weights" / "default.onnx")
    assert onnx.checkpoint.model_card == card and replace(onnx.checkpoint, state_dict={}).header() == shipped.header()
    page = (tmp_path / "card.md").read_text()
    assert "Weights licence: CC0 (phantoms)" in page and "not a medical device" in page and "phantoms-normal" in page


def test_several_seeds_ship_their_ensemble_recalibrated_on_the_shared_split(tmp_path):
    from kidneyct.experiments.ship import ship
    from kidneyct.synthetic.phantom import generate_dataset

    data = tmp_path / "masked"
    generate_dataset(data, n=24, seed=5, size=128, classes=["Tumor", "Normal"], slices_per_series=(1, 1),
                     progress=False, masks=True)
    spec = ShipSpec("phantom ensemble", "lite0-unet-zoom", TrainingSource(Source("phantoms", licence="CC0"),
                                                                          str(data)),
                    "two seeds of a segmenting model", "CC0 (phantoms)", "made here", seeds=(0, 1),
                    overrides=dict(image_size=64, epochs=1, batch_size=8, device="cpu", workers=1))
    path = ship(spec, tmp_path / "work", tmp_path / "weights")
    shipped = read_checkpoint(path)
    assert [m.model.name for m in shipped.members] == ["lite0-unet", "lite0-unet"]
    assert "not refitted" not in shipped.calibration.method  # fitted on the members' shared validation split
    splits = [(tmp_path / "work" / name / "split.csv").read_text() for name in ("seed-0", "seed-1", "ensemble")]
    assert splits[0] == splits[1] == splits[2]
    members = [read_checkpoint(tmp_path / "work" / f"seed-{s}" / "best.pt").state_dict for s in (0, 1)]
    assert any(not value.equal(members[1][key]) for key, value in members[0].items()
               if value.is_floating_point())  # two trainings, not one model twice
    onnx = kidneyct.load(tmp_path / "weights" / "default.onnx")
    assert len(onnx.checkpoint.members) == 2 and onnx.backend.segmenting
