"""Decode-once cache: the uint8 [N, S, S] images of a sample list as a memory-mapped .npy file, and beside it
(`<key>.masks.npy`) their masks when the samples have mask files.

A cache is keyed by a hash of the samples (path, slice index, file size and mtime), of their mask files (path,
size and mtime) and of the preprocessing fields that shape the uint8 form, so any changed file, mask or setting
makes a new cache.
It is written atomically: the array goes to a temporary file that is renamed when full, and the JSON
sidecar, renamed into place last, marks it complete. A cache whose sidecar is missing, unreadable,
for another key, or disagrees with the array file (shape, size, fingerprint) is deleted and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kidneyct.data.catalogue import Sample
from kidneyct.data.masks import UNKNOWN
from kidneyct.io.atomic import atomic_write
from kidneyct.preprocess import Preprocessing

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
ENV_VAR = "KIDNEYCT_CACHE"
DEFAULT_FOLDER = ".cache/kidneyct"
FINGERPRINT_ROWS = 64  # rows hashed to tell a damaged array from the one the sidecar describes


@dataclass(frozen=True)
class CacheSettings:
    enabled: bool = True
    folder: str | None = None  # None: $KIDNEYCT_CACHE, else ./.cache/kidneyct

    def resolve(self) -> Path | None:
        if not self.enabled:
            return None
        return Path(self.folder or os.environ.get(ENV_VAR) or DEFAULT_FOLDER).expanduser()


def _stats(paths) -> dict[str, tuple[int, int]]:
    stats: dict[str, tuple[int, int]] = {}
    for path in paths:
        try:
            info = os.stat(path)
            stats[path] = (info.st_size, info.st_mtime_ns)
        except OSError:
            stats[path] = (-1, -1)  # unreadable now; decoding reports it as skipped
    return stats


def cache_key(samples: list[Sample], prep: Preprocessing, with_masks: bool = True) -> str:
    """Hash of the sorted sample keys with their file's size and mtime, their mask files' (when `with_masks`
    and there are any), the uint8 preprocessing and format."""
    stats = _stats({s.path for s in samples})
    entries = sorted((s.path, -1 if s.slice_index is None else s.slice_index, *stats[s.path]) for s in samples)
    prep_values = prep.cached_form()
    for name in ("body_crop", "kidney_crop"):  # left out when off: caches written before the option keep their keys
        if not prep_values[name]:
            del prep_values[name]
    content = {"format": CACHE_FORMAT, "preprocessing": prep_values, "samples": entries}
    masks = {s.mask for s in samples if s.mask} if with_masks else set()
    if masks:  # only then: caches of mask-less sample lists keep their keys
        mask_stats = _stats(masks)
        content["masks"] = sorted((s.key, s.mask, *mask_stats[s.mask]) for s in samples if s.mask)
    text = json.dumps(content, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def fingerprint(images: np.ndarray) -> int:
    """crc32 of up to FINGERPRINT_ROWS evenly spaced rows: O(1) in the cache size, unlike a full checksum."""
    rows = np.unique(np.linspace(0, len(images) - 1, num=min(len(images), FINGERPRINT_ROWS)).astype(np.int64))
    crc = 0
    for row in rows:
        crc = zlib.crc32(np.ascontiguousarray(images[row]).data, crc)
    return crc


@dataclass
class CacheHit:
    images: np.ndarray  # read-only memmap [N, S, S], one row per entry of `rows`
    rows: dict[str, int]  # sample key -> row
    skipped: list[tuple[str, str]]
    meta: dict
    masks: np.ndarray | None = None  # read-only memmap [N, S, S] when the cache holds masks


class DecodeCache:
    """One cache folder; entries `<key>.npy` (array) and `<key>.json` (sidecar, written last)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.folder / f"{key}.npy", self.folder / f"{key}.json"

    def masks_path(self, key: str) -> Path:
        return self.folder / f"{key}.masks.npy"

    def load(self, key: str) -> CacheHit | None:
        array_path, meta_path = self.paths(key)
        if not meta_path.exists():
            if array_path.exists():
                log.warning("cache %s has no sidecar (an interrupted write): rebuilding", array_path)
                self.remove(key)
            return None
        try:
            meta = json.loads(meta_path.read_text())
            problem = self._check(key, meta, array_path)
            images = masks = None
            if problem is None:
                images = np.load(array_path, mmap_mode="r")
                problem = self._check_array(meta, images, array_path)
            if problem is None and "masks" in meta:
                masks = np.load(self.masks_path(key), mmap_mode="r")
                problem = self._check_array({**meta, "fingerprint": meta["masks"]["fingerprint"]}, masks,
                                            self.masks_path(key))
        except (OSError, ValueError, KeyError, TypeError) as error:
            problem = f"unreadable ({type(error).__name__}: {error})"
        if problem is not None:
            log.warning("cache %s is unusable (%s): rebuilding", array_path, problem)
            self.remove(key)
            return None
        rows = {key_: row for row, key_ in enumerate(meta["samples"])}
        return CacheHit(images, rows, [tuple(item) for item in meta["skipped"]], meta, masks)

    @staticmethod
    def _check(key: str, meta: dict, array_path: Path) -> str | None:
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != key or not meta.get("complete"):
            return "sidecar is for another key or format, or not complete"
        if not array_path.exists():
            return "array file missing"
        return None

    @staticmethod
    def _check_array(meta: dict, images: np.ndarray, array_path: Path) -> str | None:
        if images.dtype != np.uint8 or list(images.shape) != list(meta["shape"]):
            return f"array is {images.dtype} {images.shape}, sidecar says uint8 {meta['shape']}"
        if images.offset + images.nbytes != array_path.stat().st_size:
            return "array file size does not match its header"
        if len(meta["samples"]) != len(images):
            return "sidecar lists another number of rows"
        if fingerprint(images) != meta["fingerprint"]:
            return "array content does not match the sidecar's fingerprint"
        return None

    def remove(self, key: str) -> None:
        for path in (*self.paths(key), self.masks_path(key)):
            path.unlink(missing_ok=True)

    def writer(self, key: str, shape: tuple[int, ...], masks: bool = False) -> "CacheWriter":
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_orphans(key)
        return CacheWriter(self, key, shape, masks)

    def _remove_orphans(self, key: str) -> None:
        """Temporary files of this key left by dead processes on this host (a crash mid-write)."""
        host = _host()
        for path in self.folder.glob(f".{key}.*.tmp"):
            parts = path.name.split(".")
            if len(parts) < 5 or parts[2] != host:
                continue
            try:
                os.kill(int(parts[3]), 0)
            except ProcessLookupError:
                path.unlink(missing_ok=True)
            except (ValueError, PermissionError):
                continue


class CacheWriter:
    """Rows are written into temporary memmaps (images, and masks when asked for, those starting as UNKNOWN);
    `commit` renames them into place and writes the sidecar."""

    def __init__(self, cache: DecodeCache, key: str, shape: tuple[int, ...], masks: bool = False):
        self.cache, self.key = cache, key
        self.temporary = self._temporary(".npy.tmp")
        self.images = np.lib.format.open_memmap(self.temporary, mode="w+", dtype=np.uint8, shape=shape)
        self.masks_temporary = self._temporary(".masks.npy.tmp") if masks else None
        self.masks = None
        if masks:
            self.masks = np.lib.format.open_memmap(self.masks_temporary, mode="w+", dtype=np.uint8, shape=shape)
            self.masks[:] = UNKNOWN

    def _temporary(self, suffix: str) -> Path:
        handle, name = tempfile.mkstemp(prefix=f".{self.key}.{_host()}.{os.getpid()}.", suffix=suffix,
                                        dir=self.cache.folder)
        os.close(handle)
        os.chmod(name, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        return Path(name)

    def commit(self, samples: list[Sample], skipped: list[tuple[str, str]], info: dict,
               mask_skipped: list[tuple[str, str]] = ()) -> tuple[np.ndarray, np.ndarray | None]:
        """Make the cache visible; returns its images and masks (None without) opened read-only."""
        array_path, meta_path = self.cache.paths(self.key)
        meta = {
            "format": CACHE_FORMAT, "key": self.key, "complete": True, "shape": list(self.images.shape),
            "dtype": "uint8", "fingerprint": fingerprint(self.images), **info,
            "samples": [s.key for s in samples], "skipped": [list(item) for item in skipped],
        }
        if self.masks is not None:
            meta["masks"] = {"fingerprint": fingerprint(self.masks), "skipped": [list(item) for item in mask_skipped]}
            _persist(self.masks, self.masks_temporary, self.cache.masks_path(self.key))
        del self.masks
        _persist(self.images, self.temporary, array_path)
        del self.images
        atomic_write(meta_path, lambda stream: stream.write(json.dumps(meta)), binary=False)
        masks = np.load(self.cache.masks_path(self.key), mmap_mode="r") if "masks" in meta else None
        return np.load(array_path, mmap_mode="r"), masks

    def abort(self) -> None:
        self.__dict__.pop("images", None)
        self.__dict__.pop("masks", None)
        self.temporary.unlink(missing_ok=True)
        if self.masks_temporary is not None:
            self.masks_temporary.unlink(missing_ok=True)


def _persist(array: np.memmap, temporary: Path, final: Path) -> None:
    """Flush a memmap to disk and rename its file into place."""
    array.flush()
    with open(temporary, "rb+") as stream:
        os.fsync(stream.fileno())
    os.replace(temporary, final)


def _host() -> str:
    return socket.gethostname().replace(".", "-")


