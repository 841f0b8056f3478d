"""Image datasets as uint8 arrays, loaded offline first.

Every loader returns a :class:`TrainTest` pair of :class:`ImageDataset` objects whose
``images`` are ``(N, H, W, 3)`` uint8 arrays, ready for
:class:`sklcc.images.embedding.ImageEmbedder`. :func:`load_dataset` picks a loader by name.

Files that are derived from downloads or archives (unpacked folders, decoded ``.npz``
arrays, torchvision downloads) go to a cache folder: the ``cache_dir`` argument, else the
environment variable ``SKLCC_CACHE``, else ``~/.cache/sklcc`` (see :func:`default_cache_dir`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

import numpy as np

__all__ = [
    "CIFAR10_JPEG_SHA256",
    "ImageDataset",
    "TrainTest",
    "default_cache_dir",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_digits_images",
    "load_imagefolder",
]

PathLike = str | os.PathLike

#: sha256 of ``cifar10-jpeg.tar.gz``, the JPEG ImageFolder copy of CIFAR-10 kept beside
#: the project (see ``../shared/data/README.md`` beside the repository).
CIFAR10_JPEG_SHA256 = "1f6eacae8cafbd2e54f53210888fddc9731f7d0142cbf118983cdad2f2c56bcd"
_CIFAR10_JPEG_NAME = "cifar10-jpeg.tar.gz"
# The project's machines cannot reach dataset hosts; their data is kept in ``shared/data``
# beside the repository (``$SKLCC_SHARED_DATA`` overrides it).
_SHARED_DATA_DIR = Path(
    os.environ.get("SKLCC_SHARED_DATA")
    or Path(__file__).resolve().parents[3] / "shared" / "data"
)

_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"

# torchvision.datasets.folder.IMG_EXTENSIONS, so folders load as ImageFolder reads them.
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_NPZ_FORMAT = 1  # bump when the layout of cached .npz files changes
_VALID_DATASETS = "expected one of 'cifar10', 'cifar100', 'digits' or 'imagefolder:PATH'"


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images with integer labels.

    What the loaders of this module return, as the two parts of a :class:`TrainTest`; the
    ``images`` are ready for :class:`~sklcc.images.ImageEmbedder`. The arrays are checked
    on construction: the images made C-contiguous, the labels cast to int64 and checked
    against ``classes``.

    Parameters
    ----------
    images : ndarray of shape (n_images, height, width, 3), dtype uint8
        RGB pixels.
    labels : ndarray of shape (n_images,), dtype int64
        Class index of each image, into ``classes``.
    classes : list of str
        Class names; ``classes[k]`` names label ``k``.

    See Also
    --------
    sklcc.images.datasets.TrainTest : The train and test pair the loaders return.
    sklcc.images.load_dataset : Loads a dataset by name.
    sklcc.images.ImageEmbedder : Maps the ``images`` to backbone features.

    Examples
    --------
    >>> import numpy as np
    >>> from sklcc.images.datasets import ImageDataset
    >>> data = ImageDataset(np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 1]), ["a", "b"])
    >>> len(data), data.labels.dtype
    (2, dtype('int64'))

    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        images = np.ascontiguousarray(self.images)
        labels = np.asarray(self.labels)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                "ImageDataset.images must be a uint8 array of shape (N, H, W, 3), got "
                f"{images.dtype} array of shape {images.shape}."
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"ImageDataset.labels must have shape ({len(images)},) to match the images, "
                f"got shape {labels.shape}."
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"ImageDataset.labels must be integers, got dtype {labels.dtype}.")
        classes = [str(c) for c in self.classes]
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise ValueError(
                f"ImageDataset.labels must lie in [0, {len(classes)}) to index the "
                f"{len(classes)} classes, got range [{labels.min()}, {labels.max()}]."
            )
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        # The default repr would print the whole pixel array.
        return (
            f"ImageDataset(n_images={len(self)}, image_shape={self.images.shape[1:]}, "
            f"n_classes={len(self.classes)})"
        )


class TrainTest(NamedTuple):
    """The train and test parts of a dataset; unpacks as ``train, test = ...``.

    Every loader of this module returns one (:func:`load_dataset` picks the loader by
    name). Both parts have the same ``classes``, so a label means the same class in each.

    Parameters
    ----------
    train : ImageDataset
        The training part.
    test : ImageDataset
        The held-out part, with the same ``classes`` as ``train``.

    See Also
    --------
    sklcc.images.datasets.ImageDataset : Each of the two parts.
    sklcc.images.load_dataset : Loads one by name.
    sklearn.model_selection.train_test_split : Splits arrays into train and test parts.

    Examples
    --------
    >>> from sklcc.images.datasets import load_digits_images
    >>> data = load_digits_images(test_size=0.5)
    >>> train, test = data
    >>> len(train), len(data.test), train.classes == test.classes
    (898, 899, True)

    """

    train: ImageDataset
    test: ImageDataset


def default_cache_dir() -> Path:
    """Folder for derived data files: ``$SKLCC_CACHE`` if set, else ``~/.cache/sklcc``.

    Returns
    -------
    Path
        The folder (not created here).

    Examples
    --------
    >>> from sklcc.images.datasets import default_cache_dir
    >>> default_cache_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/sklcc')

    """
    env = os.environ.get("SKLCC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sklcc"


def load_dataset(name: str, data_dir: PathLike | None = None, **kwargs: Any) -> TrainTest:
    """Load a dataset by name.

    Parameters
    ----------
    name : str
        One of

        - ``"cifar10"``: see :func:`load_cifar10`;
        - ``"cifar100"``: see :func:`load_cifar100`;
        - ``"digits"``: scikit-learn's digits as tiny RGB images, see
          :func:`load_digits_images`;
        - ``"imagefolder:PATH"``: ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``,
          see :func:`load_imagefolder`; a relative ``PATH`` is taken relative to
          ``data_dir`` when that is given.
    data_dir : str or path-like, optional
        Where the CIFAR files are or should be downloaded to (default
        ``<cache>/data``); ignored by ``"digits"``.
    **kwargs
        Passed on to the loader, e.g. ``cache_dir`` for CIFAR-10 or ``random_state``
        for digits.

    Returns
    -------
    TrainTest
        ``(train, test)`` :class:`ImageDataset` pair.

    Raises
    ------
    ValueError
        If ``name`` is not one of the names above.

    Examples
    --------
    >>> from sklcc.images.datasets import load_dataset
    >>> train, test = load_dataset("digits")
    >>> train.images.shape[1:], len(train.classes)
    ((8, 8, 3), 10)

    """
    if not isinstance(name, str):
        raise ValueError(f"dataset name must be a string, got {name!r}; {_VALID_DATASETS}.")
    if name.startswith("imagefolder:"):
        folder = name[len("imagefolder:") :]
        if not folder:
            raise ValueError(
                f"dataset name {name!r} lacks a folder; write 'imagefolder:PATH' where PATH "
                "holds train/<class>/ and test/<class>/ sub-folders."
            )
        path = Path(folder).expanduser()
        if data_dir is not None and not path.is_absolute():
            path = Path(data_dir) / path
        return load_imagefolder(path, **kwargs)
    loaders: dict[str, Callable[..., TrainTest]] = {
        "cifar10": load_cifar10,
        "cifar100": load_cifar100,
    }
    if name in loaders:
        return loaders[name](data_dir, **kwargs)
    if name == "digits":
        return load_digits_images(**kwargs)
    raise ValueError(f"Unknown dataset {name!r}; {_VALID_DATASETS}.")


def load_cifar10(
    data_dir: PathLike | None = None,
    *,
    archive: PathLike | None = None,
    sha256: str | None = CIFAR10_JPEG_SHA256,
    cache_dir: PathLike | None = None,
    download: bool = True,
) -> TrainTest:
    """Load CIFAR-10 (50,000 train and 10,000 test images of 32x32 pixels, 10 classes).

    Sources are tried in this order:

    1. the original pickle files in ``data_dir/cifar-10-batches-py/`` (as torchvision
       downloads them), read exactly;
    2. a JPEG ImageFolder archive ``cifar10-jpeg.tar.gz``: ``archive`` if given, else
       ``data_dir/cifar10-jpeg.tar.gz``, else the project's shared copy in
       ``../shared/data`` beside the repository (``$SKLCC_SHARED_DATA``). It is
       checked against ``sha256``, unpacked once into the
       cache folder, and its decoded arrays are cached there as ``.npz`` so later loads
       take about a second. Its pixels are close to, not identical with, the originals
       (JPEG quality about 75), and images within a class are in file-name order;
    3. ``torchvision.datasets.CIFAR10(data_dir, download=True)`` if ``download``.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Folder holding ``cifar-10-batches-py/`` or ``cifar10-jpeg.tar.gz``, and where a
        download goes. Default ``<cache>/data``.
    archive : str or path-like, optional
        A JPEG ImageFolder archive (``<top>/train/<class>/*.jpg``, ``<top>/test/...``)
        to use instead of searching for ``cifar10-jpeg.tar.gz``.
    sha256 : str or None, default=CIFAR10_JPEG_SHA256
        Expected sha256 of the archive; None skips the check (for other archives).
    cache_dir : str or path-like, optional
        Cache folder; default :func:`default_cache_dir`.
    download : bool, default=True
        Whether to try torchvision's download when no local copy is found.

    Returns
    -------
    TrainTest
        Images of shape (N, 32, 32, 3) uint8; classes ``airplane ... truck``.

    Raises
    ------
    FileNotFoundError
        If no local copy exists and the download fails or is disabled.
    ValueError
        If the archive's sha256 differs from ``sha256``.

    Examples
    --------
    >>> from sklcc.images.datasets import load_cifar10
    >>> train, test = load_cifar10()  # doctest: +SKIP
    >>> train.images.shape, test.classes[:2]  # doctest: +SKIP
    ((50000, 32, 32, 3), ['airplane', 'automobile'])

    """
    data_dir = _data_dir(data_dir, cache_dir)
    pickles = data_dir / "cifar-10-batches-py"
    if pickles.is_dir():
        return _read_cifar10_pickles(pickles)

    if archive is not None:
        archive = Path(archive).expanduser()
        if not archive.is_file():
            raise FileNotFoundError(f"CIFAR-10 archive {str(archive)!r} does not exist.")
        return _load_archive(archive, sha256, _cache_root(cache_dir))
    candidates = [data_dir / _CIFAR10_JPEG_NAME, _SHARED_DATA_DIR / _CIFAR10_JPEG_NAME]
    for candidate in candidates:
        if candidate.is_file():
            return _load_archive(candidate, sha256, _cache_root(cache_dir))

    reason = _torchvision_download("CIFAR10", data_dir) if download else "download=False"
    if pickles.is_dir():
        return _read_cifar10_pickles(pickles)
    reason = reason or "it finished without the expected files"
    searched = ", ".join(str(p) for p in [pickles, *candidates])
    raise FileNotFoundError(
        f"CIFAR-10 not found (looked for {searched}) and not downloaded ({reason}). Either "
        f"download {_CIFAR10_URL} and unpack it into {data_dir} so that "
        f"{pickles}/data_batch_1 exists, or pass archive='path/to/cifar10-jpeg.tar.gz' "
        "(an ImageFolder archive), or pass data_dir= pointing at a folder holding either."
    )


def load_cifar100(
    data_dir: PathLike | None = None,
    *,
    label_type: Literal["fine", "coarse"] = "fine",
    cache_dir: PathLike | None = None,
    download: bool = True,
) -> TrainTest:
    """Load CIFAR-100 (50,000 train and 10,000 test images of 32x32 pixels).

    Reads the original pickle files ``train``, ``test`` and ``meta`` from
    ``data_dir/cifar-100-python/``. If they are absent and ``download`` is True,
    ``torchvision.datasets.CIFAR100(data_dir, download=True)`` fetches them first.

    Parameters
    ----------
    data_dir : str or path-like, optional
        Folder holding ``cifar-100-python/``; default ``<cache>/data``.
    label_type : {"fine", "coarse"}, default="fine"
        The 100 fine classes or the 20 coarse superclasses.
    cache_dir : str or path-like, optional
        Cache folder, used only for the default ``data_dir``.
    download : bool, default=True
        Whether to try torchvision's download when the files are absent.

    Returns
    -------
    TrainTest
        Images of shape (N, 32, 32, 3) uint8, in the files' order.

    Raises
    ------
    FileNotFoundError
        If the files are absent and the download fails (e.g. offline) or is disabled;
        the message says where to put them.

    Examples
    --------
    >>> from sklcc.images.datasets import load_cifar100
    >>> train, test = load_cifar100("~/data")  # doctest: +SKIP
    >>> len(train.classes)  # doctest: +SKIP
    100

    """
    if label_type not in ("fine", "coarse"):
        raise ValueError(f"label_type must be 'fine' or 'coarse', got {label_type!r}.")
    data_dir = _data_dir(data_dir, cache_dir)
    folder = data_dir / "cifar-100-python"
    files = [folder / f for f in ("train", "test", "meta")]
    if not all(f.is_file() for f in files):
        reason = _torchvision_download("CIFAR100", data_dir) if download else "download=False"
        reason = reason or "it finished without the expected files"
        if not all(f.is_file() for f in files):
            raise FileNotFoundError(
                f"CIFAR-100 not found: expected the files train, test and meta in {folder}, "
                f"and the download failed ({reason}). On a machine with internet, download "
                f"{_CIFAR100_URL} (md5 eb9058c3a382ffc7106e4002c42a8d85) and unpack it into "
                f"{data_dir} (tar xzf cifar-100-python.tar.gz -C {data_dir}), or pass "
                "data_dir= pointing at the folder that contains cifar-100-python/."
            )
    meta = _unpickle(folder / "meta")
    classes = [_decode(c) for c in _field(meta, f"{label_type}_label_names", folder / "meta")]

    def split(file: Path) -> ImageDataset:
        batch = _unpickle(file)
        images = _cifar_rows_to_images(_field(batch, "data", file), file)
        labels = np.asarray(_field(batch, f"{label_type}_labels", file))
        return ImageDataset(images, labels, classes)

    return TrainTest(split(files[0]), split(files[1]))


def load_imagefolder(path: PathLike, *, image_size: int | None = None) -> TrainTest:
    """Load ``path/train/<class>/*`` and ``path/test/<class>/*`` image files.

    Class names are the train sub-folder names sorted as by
    ``torchvision.datasets.ImageFolder``, and files are read in its order (sorted walk
    of each class folder, extensions ``.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp``
    in any case). Images are converted to RGB. Test labels index the train classes.

    Parameters
    ----------
    path : str or path-like
        Folder with ``train/`` and ``test/`` sub-folders.
    image_size : int, optional
        If given, every image is resized (bilinear) to ``image_size`` x ``image_size``;
        needed when the images differ in size.

    Returns
    -------
    TrainTest
        ``(train, test)`` pair; files are decoded on every call (no cache).

    Raises
    ------
    FileNotFoundError
        If ``path/train`` or ``path/test`` is missing.
    ValueError
        If a class folder holds no image, test has a class train lacks, or images differ
        in size while ``image_size`` is None.

    Examples
    --------
    >>> from sklcc.images.datasets import load_imagefolder
    >>> train, test = load_imagefolder("~/data/flowers", image_size=64)  # doctest: +SKIP

    """
    root = Path(path).expanduser()
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise FileNotFoundError(
                f"Image folder {str(root)!r} has no {part!r} sub-folder; expected "
                f"{root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg."
            )
    train = _read_imagefolder_split(root / "train", None, image_size)
    test = _read_imagefolder_split(root / "test", train.classes, image_size)
    return TrainTest(train, test)


def load_digits_images(*, test_size: float = 0.25, random_state: int = 0) -> TrainTest:
    """Load scikit-learn's bundled 8x8 digits as tiny RGB uint8 images.

    Grey levels 0..16 are scaled to 0..255 and copied to the three channels. The split is
    stratified and seeded, so it is the same on every call with the same arguments.

    Parameters
    ----------
    test_size : float, default=0.25
        Fraction of the 1,797 images held out for testing.
    random_state : int, default=0
        Seed of the split.

    Returns
    -------
    TrainTest
        Images of shape (N, 8, 8, 3) uint8; classes ``"0"`` to ``"9"``.

    Examples
    --------
    >>> from sklcc.images.datasets import load_digits_images
    >>> train, test = load_digits_images()
    >>> len(train), len(test), int(train.images.max())
    (1347, 450, 255)

    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    grey = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)
    labels = digits.target.astype(np.int64)
    classes = [str(c) for c in digits.target_names]
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_size, random_state=random_state, stratify=labels
    )
    return TrainTest(ImageDataset(x_train, y_train, classes), ImageDataset(x_test, y_test, classes))


# -- CIFAR pickles ---------------------------------------------------------------------------


def _read_cifar10_pickles(folder: Path) -> TrainTest:
    meta = _unpickle(folder / "batches.meta")
    classes = [_decode(c) for c in _field(meta, "label_names", folder / "batches.meta")]

    def split(names: list[str]) -> ImageDataset:
        images, labels = [], []
        for file in (folder / name for name in names):
            batch = _unpickle(file)
            images.append(_cifar_rows_to_images(_field(batch, "data", file), file))
            labels.append(np.asarray(_field(batch, "labels", file)))
        return ImageDataset(np.concatenate(images), np.concatenate(labels), classes)

    return TrainTest(split([f"data_batch_{i}" for i in range(1, 6)]), split(["test_batch"]))


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file {str(path)!r} is missing; re-download the dataset.")
    with open(path, "rb") as f:
        # The files were written by Python 2; "bytes" keeps their byte-string keys intact.
        return pickle.load(f, encoding="bytes")


def _field(record: dict, key: str, path: Path) -> Any:
    for k in (key.encode(), key):
        if k in record:
            return record[k]
    raise ValueError(
        f"CIFAR file {str(path)!r} has no {key!r} entry (keys: {sorted(map(_decode, record))}); "
        "is it a genuine cifar-10-batches-py / cifar-100-python file?"
    )


def _decode(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _cifar_rows_to_images(data: Any, path: Path) -> np.ndarray:
    # Each row holds the 1024 red, then green, then blue values of a 32x32 image.
    rows = np.asarray(data, dtype=np.uint8)
    if rows.ndim != 2 or rows.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"CIFAR file {str(path)!r}: expected 'data' of shape (N, 3072), got {rows.shape}."
        )
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _torchvision_download(dataset: str, data_dir: Path) -> str | None:
    """Try torchvision's downloader; return why it failed, or None on success."""
    import torchvision.datasets

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            getattr(torchvision.datasets, dataset)(str(data_dir), train=train, download=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        return f"{type(err).__name__}: {err}"
    return None


# -- ImageFolder archives and folders --------------------------------------------------------


def _load_archive(archive: Path, sha256: str | None, cache_root: Path) -> TrainTest:
    digest = _sha256(archive)
    if sha256 is not None and digest != sha256.lower():
        raise ValueError(
            f"Archive {str(archive)!r} has sha256 {digest}, expected {sha256}; the file is "
            "corrupt or a different archive. Copy it again, or pass sha256=None to accept it."
        )
    stem = f"{archive.name.split('.')[0]}-{digest[:16]}"
    npz = cache_root / f"{stem}.v{_NPZ_FORMAT}.npz"
    if npz.is_file():
        return _read_npz(npz)
    folder = _unpack_once(archive, cache_root / stem)
    data = load_imagefolder(folder)
    _write_npz(npz, data)
    return data


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _unpack_once(archive: Path, target: Path) -> Path:
    """Unpack ``archive`` into ``target`` unless done before; return the train/test root."""
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Unpack beside the target and rename, so an interrupted run leaves no half folder.
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the cache may be shared
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            try:
                tmp.rename(target)
            except OSError:
                if not target.is_dir():  # not a concurrent unpack that finished first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if (target / "train").is_dir():
        return target
    subfolders = [p for p in target.iterdir() if (p / "train").is_dir()]
    if len(subfolders) != 1:
        raise ValueError(
            f"Archive {str(archive)!r} (unpacked in {target}) should hold one folder with "
            "train/<class>/ and test/<class>/ sub-folders; delete the unpacked folder if "
            "the archive was replaced."
        )
    return subfolders[0]


def _read_imagefolder_split(
    folder: Path, classes: list[str] | None, image_size: int | None
) -> ImageDataset:
    from PIL import Image

    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if classes is None:
        classes = found
        if not classes:
            raise ValueError(f"Image folder {str(folder)!r} has no class sub-folders.")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(
            f"Image folder {str(folder)!r} has classes {unknown} that the train folder lacks; "
            "give train and test the same class sub-folders."
        )
    index = {name: i for i, name in enumerate(classes)}
    images, labels = [], []
    for name in found:
        files = [
            Path(dirpath) / fname
            for dirpath, _, fnames in sorted(os.walk(folder / name, followlinks=True))
            for fname in sorted(fnames)
            if fname.lower().endswith(_IMAGE_EXTENSIONS)
        ]
        if not files:
            raise ValueError(f"Class folder {str(folder / name)!r} holds no image file.")
        for file in files:
            with Image.open(file) as img:
                img = img.convert("RGB")
                if image_size is not None:
                    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
                images.append(np.asarray(img, dtype=np.uint8))
            labels.append(index[name])
    shapes = {img.shape for img in images}
    if len(shapes) > 1:
        raise ValueError(
            f"Images in {str(folder)!r} differ in size ({sorted(shapes)[:3]}...); pass "
            "image_size=S to resize them all to S x S pixels."
        )
    return ImageDataset(np.stack(images), np.asarray(labels, dtype=np.int64), classes)


def _read_npz(path: Path) -> TrainTest:
    with np.load(path, allow_pickle=False) as f:
        classes = [str(c) for c in f["classes"]]
        return TrainTest(
            ImageDataset(f["train_images"], f["train_labels"], classes),
            ImageDataset(f["test_images"], f["test_labels"], classes),
        )


def _write_npz(path: Path, data: TrainTest) -> None:
    arrays = {
        "classes": np.asarray(data.train.classes, dtype=np.str_),
        "train_images": data.train.images,
        "train_labels": data.train.labels,
        "test_images": data.test.images,
        "test_labels": data.test.labels,
    }
    _write_atomically(path, lambda f: np.savez(f, **arrays))


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create ``path`` via ``write(file)`` so that readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the cache may be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cache_root(cache_dir: PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _data_dir(data_dir: PathLike | None, cache_dir: PathLike | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else _cache_root(cache_dir) / "data"
