import hashlib
import io
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sklcc.images.datasets as datasets
from sklcc.images.datasets import (
    CIFAR10_JPEG_SHA256,
    ImageDataset,
    default_cache_dir,
    load_cifar10,
    load_cifar100,
    load_dataset,
    load_digits_images,
    load_imagefolder,
)

# -- helpers writing files in the genuine formats ----------------------------------------------


def _cifar_rows(images):
    """Rows as in the CIFAR files: 1024 red, 1024 green, 1024 blue values, row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def _dump(path, record):
    # The genuine files are Python 2 pickles with byte-string keys; protocol 2 reads alike.
    with open(path, "wb") as f:
        pickle.dump(record, f, protocol=2)


def _write_cifar100(root, n_train=5, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    parts = {}
    for name, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n).tolist()
        coarse = rng.integers(0, 20, size=n).tolist()
        _dump(
            folder / name,
            {
                b"filenames": [f"img{i}.png".encode() for i in range(n)],
                b"batch_label": f"{name} batch".encode(),
                b"fine_labels": fine,
                b"coarse_labels": coarse,
                b"data": _cifar_rows(images),
            },
        )
        parts[name] = (images, fine, coarse)
    fine_names = [f"fine{i:02d}".encode() for i in range(100)]
    coarse_names = [f"coarse{i:02d}".encode() for i in range(20)]
    _dump(folder / "meta", {b"fine_label_names": fine_names, b"coarse_label_names": coarse_names})
    return parts


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _solid(color, size=(4, 4)):
    return np.broadcast_to(np.asarray(color, np.uint8), (*size, 3)).copy()


# -- CIFAR-100 ------------------------------------------------------------------------------------


def test_cifar100_reads_genuine_pickles_exactly(tmp_path):
    parts = _write_cifar100(tmp_path)
    train, test = load_cifar100(tmp_path, download=False)

    for got, (images, fine, _) in ((train, parts["train"]), (test, parts["test"])):
        assert got.images.dtype == np.uint8 and got.images.shape == (len(images), 32, 32, 3)
        np.testing.assert_array_equal(got.images, images)
        assert got.labels.dtype == np.int64
        np.testing.assert_array_equal(got.labels, fine)
    assert train.classes[:2] == ["fine00", "fine01"] and len(train.classes) == 100


def test_cifar100_pixel_layout_is_channel_planes_then_rows(tmp_path):
    _write_cifar100(tmp_path, n_train=1, n_test=1)
    rows = np.zeros((1, 3072), np.uint8)
    rows[0, 0 * 1024 + 2 * 32 + 5] = 200  # red, row 2, column 5
    rows[0, 1 * 1024 + 0] = 100  # green, top-left corner
    rows[0, 2 * 1024 + 31 * 32 + 30] = 50  # blue, last row, column 30
    train_file = tmp_path / "cifar-100-python" / "train"
    _dump(train_file, {b"data": rows, b"fine_labels": [7], b"coarse_labels": [3]})

    train, test = load_cifar100(tmp_path, download=False)
    image = train.images[0]
    assert image[2, 5, 0] == 200 and image[0, 0, 1] == 100 and image[31, 30, 2] == 50
    assert image.sum() == 350
    assert train.labels.tolist() == [7] and len(test) == 1


def test_cifar100_coarse_labels(tmp_path):
    parts = _write_cifar100(tmp_path)
    train, test = load_cifar100(tmp_path, label_type="coarse", download=False)
    np.testing.assert_array_equal(train.labels, parts["train"][2])
    np.testing.assert_array_equal(test.labels, parts["test"][2])
    assert len(train.classes) == 20 and train.classes[0] == "coarse00"


def test_cifar100_missing_without_download_says_where_to_put_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_cifar100(tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "cifar-100-python") in message
    assert "cifar-100-python.tar.gz" in message and "download=False" in message


def test_cifar100_offline_download_failure_is_explained(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(FileNotFoundError) as info:
        load_cifar100(tmp_path / "data")
    message = str(info.value)
    assert "URLError" in message and "Name or service not known" in message
    assert str(tmp_path / "data" / "cifar-100-python") in message


def test_cifar100_rejects_non_cifar_pickle(tmp_path):
    _write_cifar100(tmp_path)
    _dump(tmp_path / "cifar-100-python" / "train", {b"pixels": np.zeros((1, 3072), np.uint8)})
    with pytest.raises(ValueError, match="no 'data' entry"):
        load_cifar100(tmp_path, download=False)


def test_cifar100_bad_label_type():
    with pytest.raises(ValueError, match="'medium'"):
        load_cifar100(label_type="medium")


# -- CIFAR-10 -------------------------------------------------------------------------------------


def test_cifar10_reads_genuine_pickles_in_batch_order(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=2).tolist()
        _dump(folder / name, {b"data": _cifar_rows(images), b"labels": labels})
        batches[name] = (images, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer"]
    names += [b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(folder / "batches.meta", {b"label_names": names})

    train, test = load_cifar10(tmp_path, download=False)
    order = [f"data_batch_{i}" for i in range(1, 6)]
    np.testing.assert_array_equal(train.images, np.concatenate([batches[n][0] for n in order]))
    assert train.labels.tolist() == sum((batches[n][1] for n in order), [])
    np.testing.assert_array_equal(test.images, batches["test_batch"][0])
    assert train.classes[0] == "airplane" and train.classes[-1] == "truck"


def _write_archive(tmp_path):
    """A tiny CIFAR-10-like ImageFolder archive of PNG files; returns (path, images)."""
    src = tmp_path / "src"
    images = {
        ("train", "cat", "0000.png"): _solid((255, 0, 0)),
        ("train", "cat", "0001.png"): _solid((0, 255, 0)),
        ("train", "airplane", "0000.png"): _solid((0, 0, 255)),
        ("test", "airplane", "0000.png"): _solid((10, 20, 30)),
        ("test", "cat", "0000.png"): _solid((40, 50, 60)),
    }
    for (split, cls, name), array in images.items():
        _write_png(src / "tiny" / split / cls / name, array)
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "tiny", arcname="tiny")
    return archive, images


def test_cifar10_archive_unpacked_once_and_cached_as_npz(tmp_path, monkeypatch):
    archive, images = _write_archive(tmp_path)
    cache = tmp_path / "cache"
    train, test = load_cifar10(tmp_path / "none", archive=archive, sha256=None, cache_dir=cache)

    assert train.classes == ["airplane", "cat"]
    assert train.labels.tolist() == [0, 1, 1] and test.labels.tolist() == [0, 1]
    np.testing.assert_array_equal(train.images[0], images["train", "airplane", "0000.png"])
    np.testing.assert_array_equal(train.images[2], images["train", "cat", "0001.png"])
    np.testing.assert_array_equal(test.images[1], images["test", "cat", "0000.png"])
    unpacked = [p for p in cache.iterdir() if p.is_dir()]
    assert len(unpacked) == 1 and (unpacked[0] / "tiny" / "train" / "cat" / "0000.png").is_file()
    assert len(list(cache.glob("*.npz"))) == 1

    # A second load reads the .npz: decoding the folder again would fail now.
    def no_decoding(*args, **kwargs):
        raise AssertionError("images were decoded again")

    monkeypatch.setattr(datasets, "_read_imagefolder_split", no_decoding)
    train2, test2 = load_cifar10(archive=archive, sha256=None, cache_dir=cache)
    np.testing.assert_array_equal(train2.images, train.images)
    np.testing.assert_array_equal(test2.labels, test.labels)
    assert train2.classes == train.classes


def test_cifar10_archive_checksum(tmp_path):
    archive, _ = _write_archive(tmp_path)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    train, _ = load_cifar10(archive=archive, sha256=digest, cache_dir=tmp_path / "cache")
    assert len(train) == 3
    with pytest.raises(ValueError) as info:
        load_cifar10(archive=archive, cache_dir=tmp_path / "cache")  # expects the real archive
    assert digest in str(info.value) and CIFAR10_JPEG_SHA256 in str(info.value)


def test_cifar10_archive_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tar.gz"):
        load_cifar10(archive=tmp_path / "nope.tar.gz")


def test_cifar10_not_found_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_SHARED_DATA_DIR", tmp_path / "no-shared-data")
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path, download=False)
    message = str(info.value)
    assert "cifar-10-batches-py" in message and "cifar10-jpeg.tar.gz" in message
    assert "archive=" in message


def test_shared_cifar10_archive_matches_documented_checksum():
    archive = datasets._SHARED_DATA_DIR / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip("the project's shared CIFAR-10 archive is not on this machine")
    assert datasets._sha256(archive) == CIFAR10_JPEG_SHA256


# -- image folders --------------------------------------------------------------------------------


def test_imagefolder_order_labels_and_pixels(tmp_path):
    root = tmp_path / "folder"
    # torchvision's ImageFolder sorts class names by code point: upper case first.
    _write_png(root / "train" / "cat" / "b.png", _solid((1, 2, 3)))
    _write_png(root / "train" / "cat" / "a.png", _solid((4, 5, 6)))
    _write_png(root / "train" / "cat" / "nested" / "c.png", _solid((7, 8, 9)))
    _write_png(root / "train" / "ant" / "x.PNG", _solid((10, 11, 12)))
    grey = Image.fromarray(np.full((4, 4), 77, np.uint8))
    (root / "train" / "Bee").mkdir(parents=True)
    grey.save(root / "train" / "Bee" / "g.png")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    _write_png(root / "test" / "cat" / "t.png", _solid((13, 14, 15)))
    (root / "test" / "ant").mkdir()
    Image.fromarray(_solid((200, 100, 50))).save(root / "test" / "ant" / "j.jpg", quality=95)

    train, test = load_imagefolder(root)
    assert train.classes == ["Bee", "ant", "cat"]
    assert train.labels.tolist() == [0, 1, 2, 2, 2]
    expected = [(77, 77, 77), (10, 11, 12), (4, 5, 6), (1, 2, 3), (7, 8, 9)]
    assert [tuple(img[0, 0]) for img in train.images] == expected
    assert test.classes == train.classes and test.labels.tolist() == [1, 2]
    assert np.abs(test.images[0].astype(int) - (200, 100, 50)).max() <= 3  # JPEG
    assert tuple(test.images[1, 3, 3]) == (13, 14, 15)

    via_name = load_dataset("imagefolder:folder", data_dir=tmp_path)
    np.testing.assert_array_equal(via_name.train.images, train.images)


def test_imagefolder_sizes_must_agree_unless_resized(tmp_path):
    _write_png(tmp_path / "train" / "a" / "0.png", _solid((9, 9, 9), size=(4, 4)))
    _write_png(tmp_path / "train" / "a" / "1.png", _solid((9, 9, 9), size=(6, 5)))
    _write_png(tmp_path / "test" / "a" / "0.png", _solid((9, 9, 9), size=(4, 4)))
    with pytest.raises(ValueError, match="image_size"):
        load_imagefolder(tmp_path)
    train, test = load_imagefolder(tmp_path, image_size=8)
    assert train.images.shape == (2, 8, 8, 3) and test.images.shape == (1, 8, 8, 3)
    assert (train.images == 9).all()


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train"):
        load_imagefolder(tmp_path)
    _write_png(tmp_path / "train" / "a" / "0.png", _solid((1, 1, 1)))
    _write_png(tmp_path / "test" / "zebra" / "0.png", _solid((1, 1, 1)))
    with pytest.raises(ValueError, match="zebra"):
        load_imagefolder(tmp_path)
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image"):
        load_imagefolder(tmp_path)


# -- digits and the entry point -------------------------------------------------------------------


def test_digits_images():
    train, test = load_digits_images()
    assert train.images.shape == (1347, 8, 8, 3) and test.images.shape == (450, 8, 8, 3)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert train.images.min() == 0 and train.images.max() == 255
    allowed = set(np.rint(np.arange(17) * 255 / 16).astype(int).tolist())
    assert set(np.unique(train.images).tolist()) <= allowed
    assert (train.images[..., 0] == train.images[..., 2]).all()
    assert train.classes == [str(d) for d in range(10)]
    # stratified: every class has 25 % +- one image in the test part
    counts = np.bincount(test.labels, minlength=10) / (
        np.bincount(test.labels, minlength=10) + np.bincount(train.labels, minlength=10)
    )
    assert np.all(np.abs(counts - 0.25) < 0.02)
    again, _ = load_digits_images()
    np.testing.assert_array_equal(again.images, train.images)
    other, _ = load_digits_images(random_state=1)
    assert not np.array_equal(other.labels, train.labels)


def test_load_dataset_dispatch():
    train, test = load_dataset("digits", test_size=0.5)
    assert len(train) + len(test) == 1797 and abs(len(train) - len(test)) <= 1


@pytest.mark.parametrize("name", ["cifar", "CIFAR10", "mnist", "imagefolder:", "", 10])
def test_load_dataset_rejects_unknown_names(name):
    with pytest.raises(ValueError) as info:
        load_dataset(name)
    message = str(info.value)
    assert repr(name) in message or "imagefolder:PATH" in message
    assert "'cifar10'" in message or "train/<class>" in message


def test_image_dataset_validation():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(images.astype(np.float32), np.array([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        ImageDataset(images, np.array([0, 1, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="\\[0, 2\\)"):
        ImageDataset(images, np.array([0, 2]), ["a", "b"])
    data = ImageDataset(images, np.array([0, 1], dtype=np.int32), ("a", "b"))
    assert data.labels.dtype == np.int64 and data.classes == ["a", "b"]
    assert repr(data) == "ImageDataset(n_images=2, image_shape=(4, 4, 3), n_classes=2)"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SKLCC_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SKLCC_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "sklcc"


def test_archive_layout_is_checked(tmp_path):
    archive = tmp_path / "flat.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = io.BytesIO(b"hello")
        info = tarfile.TarInfo("readme.txt")
        info.size = 5
        tar.addfile(info, data)
    with pytest.raises(ValueError, match="train/<class>"):
        load_cifar10(archive=archive, sha256=None, cache_dir=tmp_path / "cache")
