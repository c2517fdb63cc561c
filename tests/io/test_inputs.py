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


def test_pipes_sockets_and_empty_files_are_skipped_with_a_reason_never_opened(tmp_path):
    import os
    import socket
    import threading

    import numpy as np
    from PIL import Image

    folder = tmp_path / "export"
    folder.mkdir()
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(folder / "good.png")
    os.mkfifo(folder / "slice.dcm")  # a reader would wait forever for a writer on either
    os.mkfifo(folder / "1.3.12.2.1107.5")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "listener"))
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "blank").write_bytes(b"")
    found = {}
    worker = threading.Thread(target=lambda: found.update(result=expand_inputs([folder, folder / "slice.dcm"])),
                              daemon=True)
    worker.start()
    worker.join(30)
    server.close()
    assert not worker.is_alive(), "expanding the inputs blocked on a named pipe"
    items, skipped = found["result"]
    assert [item.path.name for item in items] == ["good.png"]
    reasons = {os.path.basename(path): reason for path, reason in skipped}
    assert set(reasons) == {"slice.dcm", "1.3.12.2.1107.5", "listener", "empty.dcm", "blank"}
    assert "named pipe" in reasons["slice.dcm"] and "named pipe" in reasons["1.3.12.2.1107.5"]
    assert "socket" in reasons["listener"] and reasons["empty.dcm"] == reasons["blank"] == "file is empty (0 bytes)"
