"""Image reading with clear errors, and atomic writes (write to a hidden temporary name, then rename).

Temporary names start with ``.tmp-`` so globs such as ``*.png`` or ``train-*.tfrecord`` never
match a file that is still being written.
"""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from hofam_tf.errors import HOFAMInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary sibling path with the same suffix; renames it to ``path`` on success.

    On any exception the temporary file (or folder) is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex[:8]}-{path.name}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def read_image(path: str | os.PathLike, mode: str = "RGB") -> np.ndarray:
    """Reads an image file fully. uint8 [H,W,3] for mode "RGB", [H,W] for "L".

    Raises HOFAMInputError naming the file when it is missing, not an image, or truncated.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # forces a full decode: truncated files fail here
            return np.asarray(im.convert(mode))
    except FileNotFoundError:
        raise HOFAMInputError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise HOFAMInputError(f"{path}: unreadable or truncated image ({err})") from None


def read_image_raw(path: str | os.PathLike) -> Image.Image:
    """Opens and fully decodes an image, keeping its mode (for colour-coded or palette masks)."""
    path = Path(path)
    try:
        im = Image.open(path)
        im.load()
        return im
    except FileNotFoundError:
        raise HOFAMInputError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise HOFAMInputError(f"{path}: unreadable or truncated image ({err})") from None


def write_png(path: str | os.PathLike, array: np.ndarray, compress_level: int = 1) -> None:
    """Writes uint8 [H,W], [H,W,1] or [H,W,3] (RGB) as PNG, atomically.

    Encoded with OpenCV, which releases the GIL, so writer threads run in parallel.
    """
    import cv2

    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"{path}: PNG data must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    # zlib level 1, RLE strategy and the "up" row filter: measured 40% faster than OpenCV's
    # defaults at level 1 on composites, for files of about the same size.
    params = [cv2.IMWRITE_PNG_COMPRESSION, compress_level, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, buf = cv2.imencode(".png", array, params)
    if not ok:
        raise HOFAMInputError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes pretty JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Visible image files of a folder (not recursive), sorted by name."""
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def safe_name(name: str, what: str = "name") -> str:
    """A name taken from data (a record's sequence or frame id, a sequence.json, a file name) that
    becomes one path component of an output file: refused with HOFAMInputError when it could
    place a file outside the output folder or is not a usable file name (empty, '.', '..', a
    path separator, a NUL byte)."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise HOFAMInputError(f"unsafe {what} {name!r}: names from data must be one plain path component")
    return name
