"""Image tooling around the method: dataset loaders, pretrained backbones, embeddings.

Nothing here is part of LCC itself; it is what the benchmarks and the examples use
to turn images into inputs a classifier can be fine-tuned on:

- :mod:`~sklcc.images.datasets`: CIFAR-10/100, image folders and digits as arrays;
- :mod:`~sklcc.images.backbones`: ImageNet-pretrained networks and their split into a
  frozen prefix and a trainable tail;
- :mod:`~sklcc.images.preprocess`: pixels to the standardised tensors a backbone takes;
- :mod:`~sklcc.images.embedding`: :class:`ImageEmbedder`, a cached scikit-learn
  transformer from images to backbone features.
"""

from .backbones import load_backbone, split_backbone
from .datasets import default_cache_dir, load_dataset
from .embedding import ImageEmbedder
from .preprocess import ImagePreprocess

__all__ = ["ImageEmbedder", "ImagePreprocess", "default_cache_dir", "load_backbone",
           "load_dataset", "split_backbone"]
