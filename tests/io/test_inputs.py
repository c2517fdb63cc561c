from kidneyct.io import expand_inputs


def test_folders_expand_to_images_series_and_volumes(study_tree):
    root, series, volume = study_tree
    items, skipped = expand_inputs([root, root / "missing.png"])
    kinds = {item.path: item.kind for item in items}
    assert kinds[series.path] == "series" and kinds[volume.path] == "volume"
    images = [p for p, kind in kinds.items() if kind == "image"]
    assert len(images) == 4 and not any(".mask." in p.name for p in images)
    assert len(items) == 6  # no mask file, no notes.txt, and the DICOM files only as their series
    assert skipped == [(str(root / "missing.png"), "file not found")]
