"""Sources: the sources file, the multi-source catalogue (groupings, masks, missing classes) and the
command line's repeatable --data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kidneyct.data.catalogue import build_catalogue, catalogue_of
from kidneyct.data.sources import Source, folder_source, read_sources_file, resolve_sources
from kidneyct.errors import DatasetError

REPOSITORY = Path(__file__).resolve().parents[2]


def test_sources_file_lists_sources_relative_to_itself(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "s.toml").write_text(
        '[[source]]\nname = "kits"\ndata = "../kits"\ngroups = "file"\nmasks = "masks"\nlicence = "CC BY 4.0"\n'
        '[[source]]\nname = "pan"\ndata = "../pan"\ngroups = "pattern"\npattern = \'^(P_\\d+)\'\n'
        'classes = { Healthy = "Normal" }\n')
    kits, pan = read_sources_file(tmp_path / "conf" / "s.toml")
    assert kits.root == (tmp_path / "kits").resolve() and kits.masks == (tmp_path / "kits" / "masks").resolve()
    assert (kits.grouping, kits.licence, pan.grouping, pan.pattern) == ("file", "CC BY 4.0", "pattern", r"^(P_\d+)")
    assert pan.folder_class("HEALTHY") == "normal" and Source.from_dict(pan.to_dict()) == pan


@pytest.mark.parametrize("text, problem", [
    ('[[source]]\nname = "a"\ndata = "x"\ncolour = "red"\n', "unknown key"),
    ('[[source]]\nname = "a"\ndata = "x"\ngroups = "scanner"\n', "unknown grouping"),
    ('[[source]]\nname = "a"\ndata = "x"\ngroups = "pattern"\npattern = "P_\\\\d+"\n', "needs a group"),
    ('[[source]]\nname = "a"\ndata = "x"\ngroups = "file"\npattern = "(P)"\n', "only with it"),
    ('[[source]]\nname = "a b"\ndata = "x"\n', "source name"),
    ('[[source]]\ndata = "x"\n', "needs a name"),
    ('name = "a"\n', "no \\[\\[source\\]\\]"),
    ('[[source]\n', "not valid TOML"),
])
def test_bad_sources_files_name_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DatasetError, match=f"bad.toml.*{problem}"):
        read_sources_file(path)


def test_folder_sources_are_named_after_the_folder_and_must_differ(tmp_path):
    (tmp_path / "a" / "data" / "masks").mkdir(parents=True)
    (tmp_path / "b" / "data").mkdir(parents=True)
    source = folder_source(tmp_path / "a" / "data")
    assert (source.name, source.grouping, source.masks) == ("data", "series", tmp_path / "a" / "data" / "masks")
    assert folder_source(tmp_path / "b" / "data").masks is None
    with pytest.raises(DatasetError, match="two sources are named 'data'"):
        resolve_sources([str(tmp_path / "a" / "data"), str(tmp_path / "b" / "data")])
    with pytest.raises(DatasetError, match="give --data"):
        resolve_sources("", None)


def test_committed_shared_sources_describe_the_three_datasets_and_their_licences():
    sources = {s.name: s for s in read_sources_file(REPOSITORY / "sources" / "shared.toml")}
    assert set(sources) == {"kaggle", "kits23", "pancreas-ct"}
    assert sources["kits23"].licence == "CC BY-NC-SA 4.0" and sources["pancreas-ct"].licence == "CC BY 3.0"
    assert "unconfirmed" in sources["kaggle"].licence
    assert sources["kits23"].masks.name == "masks" and sources["pancreas-ct"].grouping == "pattern"


def test_catalogue_of_several_sources(sources):
    catalogue = catalogue_of(sources, "tumor,normal")
    assert catalogue.classes == ["Tumor", "Normal"] and catalogue.several
    counts = Counter((s.source, catalogue.classes[s.label]) for s in catalogue.samples)
    assert counts == {("kaggle", "Tumor"): 12, ("kaggle", "Normal"): 18, ("kits", "Tumor"): 6,
                      ("kits", "Normal"): 6, ("pancreas", "Normal"): 12}  # NoKidney is not asked for
    kits = [s for s in catalogue.samples if s.source == "kits"]
    assert {s.group for s in kits} == {f"kits:c{i}" for i in range(12)}  # the manifest's case ids, prefixed
    assert all(s.mask and Path(s.mask).parent.name == "masks" for s in kits)
    pancreas = [s for s in catalogue.samples if s.source == "pancreas"]
    assert {s.group for s in pancreas} == {f"pancreas:PANCREAS_{i:04d}" for i in range(1, 5)}
    assert [Path(p).name for p, reason in catalogue.skipped] == ["stray.png"]
    assert "does not match" in catalogue.skipped[0][1]
    assert all(s.group is None and s.mask is None for s in catalogue.samples if s.source == "kaggle")
    assert catalogue.relative_key(kits[0]).startswith("kits:Tumor/case_")


def test_a_class_no_source_has_is_an_error_but_one_source_may_lack_it(sources):
    merged = catalogue_of(sources, "tumor,normal+nokidney")
    assert Counter(s.source for s in merged.samples if s.origin == "NoKidney") == {"kits": 2}
    assert merged.classes == ["Tumor", "Normal+NoKidney"]
    with pytest.raises(DatasetError, match="stone not found in any source"):
        catalogue_of(sources, "tumor,stone")


def test_one_folder_catalogue_is_the_one_source_catalogue(sources):
    catalogue = build_catalogue(sources[1].root, "tumor,normal")
    assert not catalogue.several and catalogue.root == sources[1].root
    assert all(s.source == "kits" and s.mask and s.group is None for s in catalogue.samples)  # series grouping


def test_repeated_data_option_lists_folders_and_one_stays_a_folder():
    from kidneyct.cli import build_parser
    from kidneyct.cli.options import train_config as _train_config

    one = build_parser().parse_args(["train", "--data", "a"])
    two = build_parser().parse_args(["train", "--data", "a", "--data", "b", "--test-source", "b",
                                     "--sources", "s.toml"])
    assert _train_config(one, "out").data == "a"
    config = _train_config(two, "out")
    assert (config.data, config.test_source, config.sources) == (["a", "b"], "b", "s.toml")


def test_shared_sources_when_present():
    sources = read_sources_file(REPOSITORY / "sources" / "shared.toml")
    if not all(source.root.is_dir() for source in sources):
        pytest.skip("../shared/data is not present")
    catalogue = catalogue_of([s for s in sources if s.name != "kaggle"], "tumor,normal")
    counts = Counter((s.source, catalogue.classes[s.label]) for s in catalogue.samples)
    assert counts == {("kits23", "Tumor"): 66, ("kits23", "Normal"): 100, ("pancreas-ct", "Normal"): 180}
    assert len({s.group for s in catalogue.samples if s.source == "pancreas-ct"}) == 39
    assert all(s.mask for s in catalogue.samples if s.source == "kits23")
