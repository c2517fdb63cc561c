"""The shipped model's packaging: a trained run measured on its held-out series and on a source it never saw,
stored with fp16 weights, a model card and its ONNX export, and described in a page."""

from dataclasses import replace
from pathlib import Path

import kidneyct
from kidneyct.checkpoint import Source, SourceValidation, read_checkpoint
from kidneyct.experiments.ship import ExternalSource, ShipSpec, TrainingSource, package, recard


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

    corrected = replace(spec, limitations=["a corrected limitation"])  # a card found wrong, its run maybe gone
    recard(path, corrected, tmp_path / "card.md")
    recarded = read_checkpoint(path)
    assert recarded.model_card.limitations == ["a corrected limitation"]
    assert recarded.model_card.validation == card.validation  # the measurements stay
    assert all(recarded.state_dict[k].equal(v) for k, v in shipped.state_dict.items())
    assert kidneyct.load(tmp_path / "weights" / "default.onnx").checkpoint.model_card == recarded.model_card
    assert "a corrected limitation" in (tmp_path / "card.md").read_text()



def test_several_seeds_train_on_the_first_ones_split_and_ship_their_ensemble(tmp_path, monkeypatch):
    """The orchestration of `ship` with seeds; the trainings, the ensemble run and the packaging are tested where
    they live (tests/experiments/test_cv_ensemble.py, above)."""
    import kidneyct.experiments.cv_ensemble as cv_ensemble
    import kidneyct.experiments.ship as ship_module
    import kidneyct.training.train as training
    from types import SimpleNamespace

    trained, packaged = [], []

    def fake_train(config):
        trained.append(config)
        return SimpleNamespace(best_checkpoint=Path(config.out) / "best.pt")

    monkeypatch.setattr(training, "train", fake_train)
    monkeypatch.setattr(cv_ensemble, "ensemble_run", lambda members, folder, sources, device: (members, folder))
    monkeypatch.setattr(ship_module, "package", lambda best, spec, weights, page: packaged.append(best) or best)
    spec = ShipSpec("phantom ensemble", "lite0-unet-zoom", TrainingSource(Source("phantoms"), str(tmp_path)),
                    "two seeds", "CC0", "made here", seeds=(3, 4))
    ship_module.ship(spec, tmp_path / "work", tmp_path / "weights")
    assert [(c.seed, Path(c.out).name) for c in trained] == [(3, "seed-3"), (4, "seed-4")]
    assert trained[0].split_file is None and trained[1].split_file == str(tmp_path / "work" / "seed-3" / "split.csv")
    assert packaged == [([tmp_path / "work" / "seed-3" / "best.pt", tmp_path / "work" / "seed-4" / "best.pt"],
                         tmp_path / "work" / "ensemble")]
