"""`kidneyct data probe` over several sources: the source from the background and from a cv's scores."""

import csv

import pytest

from kidneyct.experiments.cv_report import PREDICTION_COLUMNS
from kidneyct.experiments.probe import run_probe
from kidneyct.synthetic.phantom import generate_dataset


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    for name, classes in (("tumors", ["Tumor", "Normal"]), ("healthy", ["Normal"])):
        generate_dataset(root / name, n=12, seed=len(name), size=64, classes=classes, progress=False)
    sources = root / "sources.toml"
    sources.write_text('[[source]]\nname = "tumors"\ndata = "tumors"\ngroups = "series"\n'
                       '[[source]]\nname = "healthy"\ndata = "healthy"\ngroups = "series"\n')
    return root, sources


def _predictions(folder, root, score_of):
    """A cv folder whose predictions.csv scores each phantom slice by `score_of(source, origin)`."""
    folder.mkdir()
    with open(folder / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS + ["p_Tumor", "p_Normal"])
        for source in ("tumors", "healthy"):
            for i, path in enumerate(sorted((root / source).glob("*/*.png"))):
                if path.name.endswith(".mask.png"):
                    continue
                origin = path.parent.name
                p = score_of(source, origin) + 0.001 * i
                writer.writerow([str(path), "", origin, source, f"{source}:{i // 3}", 0, i % 5, origin,
                                 "Tumor" if p > 0.5 else "Normal", f"{p:.6f}", f"{1 - p:.6f}"])


def test_the_source_probe_reports_a_model_that_scores_by_source(two_sources, tmp_path):
    root, sources = two_sources
    _predictions(tmp_path / "cv", root, lambda source, origin: 0.6 if source == "tumors" else 0.1)
    result = run_probe(None, tmp_path / "probe", cv_dir=tmp_path / "cv", sources_file=sources, folds=2, workers=1)
    assert result["source"]["background"]["sources"] == ["healthy", "tumors"]
    scores = result["source"]["scores"]
    assert scores["between_normals"][0]["higher"] == "tumors" and scores["between_normals"][0]["roc_auc"] > 0.99
    report = (tmp_path / "probe" / "probe.md").read_text()
    assert "## Source probe" in report and "tumors normals scored above healthy normals" in report
    assert result["occlusion"] is None  # the occlusion probe reads one dataset folder


def test_the_probe_over_one_folder_has_no_source_probe(two_sources, tmp_path):
    root, _ = two_sources
    result = run_probe(root / "tumors", tmp_path / "probe", folds=2, workers=1)
    assert result["source"] is None and result["background"]["classes"] == ["Tumor", "Normal"]
