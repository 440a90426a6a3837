"""Image classification data for accuracy work: an ImageFolder-style directory, an ``.npz``, or
the bundled offline dataset.

Sources (the ``--data`` argument):

``builtin:shapes[:n=24000,seed=0,size=32,classes=12]``
    the procedural proxy task of :mod:`.shapes` (rendered from a seed with numpy, nothing
    downloaded): **24,000 images, 12 classes, 32x32 RGB** by default; hard enough that subnets'
    accuracies spread far beyond their noise.
``builtin:digits``
    the fast smoke test: scikit-learn's handwritten digits (bundled with scikit-learn, nothing is downloaded):
    **1,797 images, 10 classes**, 8x8 grayscale with 17 grey levels, upsampled bilinearly to
    **32x32 RGB** (the grey value copied to all three channels).
``DIR``
    ImageFolder layout: ``DIR/<class name>/<image file>``; one sub-folder per class (hidden
    entries are ignored, as are files that are not images by their extension).  Every image
    must have the same size and the same number of channels (1 = grayscale or 3 = colour;
    an alpha channel is dropped).  Classes are the sorted folder names.
``FILE.npz``
    arrays ``images`` (``N,H,W`` grayscale, ``N,H,W,C`` or ``N,C,H,W`` with C in {1, 3};
    ``uint8`` 0-255 or float 0-1) and ``labels`` (``N`` integers or strings); optionally
    ``classes`` (the class names, indexed by integer labels).  Loaded with
    ``allow_pickle=False``: object arrays (e.g. a list of images of different sizes) are
    refused.

Problems (missing or corrupt files, mixed sizes or channels, an empty class folder, a single
class) raise :class:`~hwnas.errors.InputError` with a one-line message.

Images are held as ``uint8`` ``[N, 3, H, W]`` (grayscale copied to three channels, since the
networks of the space take RGB).  :meth:`ImageDataset.split` makes a seeded, stratified
train / validation split; :func:`input_size` maps an architecture's resolution to the input
size used for accuracy work on a dataset.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError, first_line
from .shapes import BUILTIN_SHAPES, parse_shapes_spec, render_shapes

BUILTIN_DIGITS = "builtin:digits"
BUILTINS = (BUILTIN_DIGITS, BUILTIN_SHAPES)
DIGITS_SIZE = 32
"""Side of the upsampled offline digits images (native 8x8)."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")

__all__ = [
    "BUILTIN_DIGITS",
    "BUILTIN_SHAPES",
    "DIGITS_SIZE",
    "ImageDataset",
    "input_size",
    "load_dataset",
    "load_digits_dataset",
    "load_shapes_dataset",
]


@dataclass
class ImageDataset:
    """Images ``uint8 [N, 3, H, W]``, integer labels ``[N]`` in ``range(len(classes))``."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: str
    description: str = ""
    _fingerprint: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        imgs = np.asarray(self.images)
        if imgs.ndim != 4 or imgs.shape[1] != 3 or imgs.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {imgs.dtype} {imgs.shape}")
        labels = np.asarray(self.labels, dtype=np.int64)
        if labels.shape != (imgs.shape[0],):
            raise ValueError(f"{imgs.shape[0]} images but {labels.shape} labels")
        self.images = np.ascontiguousarray(imgs)
        self.labels = labels
        _check_classes(self.labels, self.classes, self.source)

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) of the images, labels and class names."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(str(self.images.shape).encode())
            h.update(self.images.tobytes())
            h.update(self.labels.tobytes())
            h.update("\0".join(self.classes).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def split(self, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Seeded stratified split: ``(train_idx, val_idx)``, sorted.  Each class with at least
        two images puts ``round(val_fraction * n_c)`` (at least one) of them in validation."""
        if not 0.0 < val_fraction < 1.0:
            raise InputError(f"validation fraction must be between 0 and 1, got {val_fraction}")
        rng = np.random.default_rng(seed)
        train, val = [], []
        for c in range(self.n_classes):
            idx = np.flatnonzero(self.labels == c)
            idx = idx[rng.permutation(len(idx))]
            k = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, int(round(val_fraction * len(idx)))))
            val.append(idx[:k])
            train.append(idx[k:])
        return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))

    def channel_stats(self, idx: np.ndarray | None = None) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of pixel values scaled to [0, 1] (over ``idx`` if given)."""
        x = self.images if idx is None else self.images[idx]
        x = x.astype(np.float64) / 255.0
        mean = x.mean(axis=(0, 2, 3))
        std = np.maximum(x.std(axis=(0, 2, 3)), 1e-3)
        return [float(v) for v in mean], [float(v) for v in std]

    def describe(self) -> dict:
        h, w = self.hw
        return {"source": self.source, "n_images": self.n, "n_classes": self.n_classes, "height": h, "width": w,
                "classes": list(self.classes), "fingerprint": self.fingerprint, "description": self.description}


def _check_classes(labels: np.ndarray, classes: Sequence[str], source: str) -> None:
    if len(classes) < 2:
        only = f" ({classes[0]!r})" if classes else ""
        raise InputError(f"dataset {source} has a single class{only}; classification needs at least two")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise InputError(f"dataset {source}: labels must lie in 0..{len(classes) - 1}")
    counts = np.bincount(labels, minlength=len(classes))
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise InputError(f"dataset {source}: class {empty[0]!r} has no images"
                         + (f" (and {len(empty) - 1} more empty classes)" if len(empty) > 1 else ""))


def input_size(resolution: int, native_hw: tuple[int, int], max_resolution: int) -> tuple[int, int]:
    """Input size for an architecture's ``resolution`` on a dataset of ``native_hw`` images.

    The space's largest resolution maps to the dataset's native size and the others scale
    with it, rounded to a multiple of 4 (at least 8): on the 32x32 offline digits the space's
    resolutions 128 / 160 / 192 / 224 become 20 / 24 / 28 / 32 pixels.
    """
    out = []
    for n in native_hw:
        v = n * resolution / max_resolution
        out.append(max(8, int(np.floor(v / 4 + 0.5)) * 4))
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# the offline dataset


def load_digits_dataset(size: int = DIGITS_SIZE) -> ImageDataset:
    """scikit-learn's handwritten digits (1,797 images of 8x8, 10 classes) upsampled to ``size`` x ``size`` RGB."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8], 0..1
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
    u8 = (x * 255.0 + 0.5).to(torch.uint8).numpy()
    imgs = np.repeat(u8, 3, axis=1)
    return ImageDataset(imgs, d.target.astype(np.int64), [str(i) for i in range(10)], BUILTIN_DIGITS,
                        description=f"scikit-learn handwritten digits, 1,797 images, 10 classes, "
                                    f"8x8 grayscale upsampled to {size}x{size} RGB")


def load_shapes_dataset(spec: str = BUILTIN_SHAPES) -> ImageDataset:
    """The procedural proxy task ``builtin:shapes[:key=value,...]`` (:mod:`.shapes`)."""
    s = parse_shapes_spec(spec)
    images, labels, classes = render_shapes(s)
    return ImageDataset(images, labels, list(classes), s.spec, description=s.description)


# --------------------------------------------------------------------------------------------
# loading


def load_dataset(spec: str | os.PathLike) -> ImageDataset:
    """Load ``builtin:digits``, ``builtin:shapes[:...]``, an ImageFolder-style directory or an ``.npz`` file."""
    s = str(spec)
    if s == BUILTIN_DIGITS:
        return load_digits_dataset()
    if s == BUILTIN_SHAPES or s.startswith(BUILTIN_SHAPES + ":"):
        return load_shapes_dataset(s)
    if s.startswith("builtin:"):
        raise InputError(f"unknown built-in dataset {s!r}; available: {', '.join(BUILTINS)}")
    path = Path(s)
    if not path.exists():
        raise InputError(f"dataset not found: {path} (give an ImageFolder-style directory, an .npz file, "
                         f"or {BUILTIN_DIGITS})")
    if path.is_dir():
        return _load_folder(path)
    if path.suffix.lower() == ".npz":
        return _load_npz(path)
    raise InputError(f"dataset {path} is neither a directory nor an .npz file")


def _n_channels(mode: str) -> int | None:
    if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "La"):
        return 1
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
        return 3
    return None


def _read_image(path: Path) -> tuple[np.ndarray, int]:
    """(uint8 array [C, H, W], channels) of an image file; corrupt files raise InputError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            ch = _n_channels(mode)
            if ch is None:
                raise InputError(f"image {path} has unsupported mode {mode!r}")
            if ch == 1:
                if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    a = np.asarray(im, dtype=np.float64)
                    top = 65535.0 if mode.startswith("I") and a.max() > 255 else 255.0
                    arr = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
                else:
                    arr = np.asarray(im.convert("L"), dtype=np.uint8)
                arr = arr[None]
            else:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"cannot read image {path} (corrupt or not an image): {first_line(e)}") from None
    return arr, ch


def _folder_files(root: Path) -> tuple[list[Path], list[tuple[Path, int]]]:
    """The class folders of an ImageFolder-style ``root`` and its ``(image file, class index)``
    pairs, in the order every loader uses (sorted classes, sorted files)."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        hint = " (images must sit in one sub-folder per class: DIR/<class>/<image>)" if loose else ""
        raise InputError(f"dataset directory {root} has no class folders{hint}")
    if len(class_dirs) == 1:
        raise InputError(f"dataset {root} has a single class ({class_dirs[0].name!r}); classification needs at least two")
    files: list[tuple[Path, int]] = []
    for ci, d in enumerate(class_dirs):
        imgs = sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith(".")
                      and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not imgs:
            raise InputError(f"class folder {d} has no images (extensions {', '.join(IMAGE_EXTENSIONS)})")
        files += [(p, ci) for p in imgs]
    return class_dirs, files


def _load_folder(root: Path) -> ImageDataset:
    class_dirs, files = _folder_files(root)
    arrays = []
    first: tuple[Path, tuple[int, int], int] | None = None
    for p, _ in files:
        arr, ch = _read_image(p)
        hw = (arr.shape[1], arr.shape[2])
        if first is None:
            first = (p, hw, ch)
        else:
            _check_same_format(first, p, hw, ch)
        arrays.append(arr)
    x = np.stack(arrays)
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    labels = np.array([c for _, c in files], dtype=np.int64)
    return ImageDataset(x, labels, [d.name for d in class_dirs], str(root),
                        description=f"image folder {root}: {len(files)} images, {len(class_dirs)} classes, "
                                    f"{x.shape[3]}x{x.shape[2]}")


def _check_same_format(first: tuple[Path, tuple[int, int], int], p: Path, hw: tuple[int, int], ch: int) -> None:
    """InputError unless image ``p`` (``hw``, ``ch`` channels) has the size and channels of ``first``."""
    if hw != first[1]:
        raise InputError(f"images of mixed sizes: {first[0]} is {first[1][1]}x{first[1][0]}, {p} is "
                         f"{hw[1]}x{hw[0]} (width x height); resize them to one size")
    if ch != first[2]:
        names = {1: "grayscale", 3: "colour"}
        raise InputError(f"images with mixed channels: {first[0]} is {names[first[2]]} ({first[2]} channel"
                         f"{'s' if first[2] > 1 else ''}), {p} is {names[ch]} ({ch} channel"
                         f"{'s' if ch > 1 else ''}); convert them to one format")


def _load_npz(path: Path) -> ImageDataset:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    if magic != b"PK\x03\x04":
        what = "empty" if not magic else "not a zip archive"
        raise InputError(f"cannot read {path} (corrupt .npz: {what}); save it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if "images" not in keys or "labels" not in keys:
                raise InputError(f"{path} must hold arrays 'images' and 'labels'; it has {', '.join(keys) or 'none'}")
            images = z["images"]
            labels = z["labels"]
            classes = z["classes"] if "classes" in keys else None
    except InputError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise InputError(f"{path} holds object arrays (images of mixed sizes?); store the images as one "
                             f"uint8 array N,H,W[,C] of a single size") from None
        raise InputError(f"cannot read {path} (corrupt .npz?): {first_line(e)}") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise InputError(f"cannot read {path} (corrupt or truncated .npz): {first_line(e)}") from None
    x = _npz_images(images, path)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise InputError(f"{path}: 'labels' must be a 1-D array of {x.shape[0]} entries (one per image), "
                         f"got shape {labels.shape}")
    if x.shape[0] == 0:
        raise InputError(f"{path}: no images")
    if labels.dtype.kind in "US":
        names, lab = np.unique(labels.astype(str), return_inverse=True)
        class_names = [str(n) for n in names]
        if classes is not None:
            raise InputError(f"{path}: give 'classes' only with integer labels")
    elif labels.dtype.kind in "iub":
        lab = labels.astype(np.int64)
        if lab.min() < 0:
            raise InputError(f"{path}: labels must be non-negative integers, found {int(lab.min())}")
        if classes is not None:
            classes = np.asarray(classes)
            if classes.ndim != 1 or classes.dtype.kind not in "US":
                raise InputError(f"{path}: 'classes' must be a 1-D array of names")
            class_names = [str(c) for c in classes]
            if lab.max() >= len(class_names):
                raise InputError(f"{path}: label {int(lab.max())} has no entry in 'classes' ({len(class_names)} names)")
        else:
            class_names = [str(i) for i in range(int(lab.max()) + 1)]
    else:
        raise InputError(f"{path}: 'labels' must be integers or strings, got dtype {labels.dtype}")
    return ImageDataset(x, lab, class_names, str(path),
                        description=f"{path.name}: {x.shape[0]} images, {len(class_names)} classes, "
                                    f"{x.shape[3]}x{x.shape[2]}")


def _npz_images(images: np.ndarray, path: Path) -> np.ndarray:
    a = np.asarray(images)
    if a.dtype.kind not in "uif" and a.dtype != np.bool_:
        raise InputError(f"{path}: 'images' must be numeric, got dtype {a.dtype}")
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4:
        if a.shape[-1] in (1, 3, 4) and a.shape[1] not in (1, 3, 4):
            a = a.transpose(0, 3, 1, 2)
        elif a.shape[1] in (1, 3, 4):
            pass
        elif a.shape[-1] in (1, 3, 4):
            a = a.transpose(0, 3, 1, 2)
        else:
            raise InputError(f"{path}: 'images' of shape {a.shape} has no channel axis of size 1 or 3 "
                             f"(expected N,H,W or N,H,W,C or N,C,H,W)")
        if a.shape[1] == 4:  # drop alpha
            a = a[:, :3]
    else:
        raise InputError(f"{path}: 'images' must be N,H,W or N,H,W,C or N,C,H,W, got shape {a.shape}")
    if min(a.shape[2:]) < 4:
        raise InputError(f"{path}: images of {a.shape[3]}x{a.shape[2]} pixels are too small (at least 4x4)")
    if a.dtype == np.uint8:
        u8 = a
    else:
        f = a.astype(np.float64)
        if not np.isfinite(f).all():
            raise InputError(f"{path}: 'images' contains NaN or infinite values")
        lo, hi = float(f.min()), float(f.max())
        if lo < 0 or hi > 255:
            raise InputError(f"{path}: pixel values must lie in 0..1 (float) or 0..255, found {lo:g}..{hi:g}")
        scale = 255.0 if (a.dtype.kind == "f" and hi <= 1.0) or a.dtype == np.bool_ else 1.0
        u8 = np.clip(f * scale + 0.5, 0, 255).astype(np.uint8)
    if u8.shape[1] == 1:
        u8 = np.repeat(u8, 3, axis=1)
    return np.ascontiguousarray(u8)
