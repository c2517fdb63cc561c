"""Files in: readers that turn every supported file into CTSlice objects (pixels plus whether they are
Hounsfield units), the file-type sniffer, and the expansion of files and folders into inputs."""

from kidneyct.errors import ImageReadError
from kidneyct.io.dicom import list_series, read_dicom, read_series
from kidneyct.io.inputs import InputItem, expand_inputs, read_item, walk_folders
from kidneyct.io.nifti import count_slices, read_label_slices, read_nifti
from kidneyct.io.raster import read_label_png, read_raster
from kidneyct.io.read import read_slices
from kidneyct.io.slices import CTSlice
from kidneyct.io.sniff import (MASK_MARKER, SUPPORTED_SUFFIXES, content_format, file_format, file_kind, input_kind,
                               looks_like_dicom)

__all__ = [
    "CTSlice", "ImageReadError", "InputItem", "MASK_MARKER", "SUPPORTED_SUFFIXES", "content_format", "count_slices",
    "expand_inputs", "file_format", "file_kind", "input_kind", "list_series", "looks_like_dicom", "read_dicom", "read_item",
    "read_label_png", "read_label_slices", "read_nifti", "read_raster", "read_series", "read_slices", "walk_folders",
]
