"""Models shared by the demos: DenseNet classifiers (Huang et al. 2017, https://arxiv.org/abs/1608.06993;
:mod:`common.models.densenet`, checkpoints in :mod:`common.models.weights`) and ENet segmenters
(:mod:`common.models.enet`)."""

# DenseNet's names are imported on first use (PEP 562), so a worker that only needs ENet (common.models.enet) does not
# pay for torchvision's import
_DENSENET = {
    "ARCHS", "IMAGENET_MEAN", "IMAGENET_STD", "MIN_INPUT_SIZE", "POOLINGS", "DenseNetClassifier", "block_layers",
    "build_densenet", "guess_arch", "imagenet_weights_path", "load_weights", "read_checkpoint", "state_from",
    "to_model_input"
}


def __getattr__(name: str):
    if name in _DENSENET:
        from common.models import densenet

        return getattr(densenet, name)
    raise AttributeError(f"module 'common.models' has no attribute {name!r}")


__all__ = [
    "ARCHS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MIN_INPUT_SIZE",
    "POOLINGS",
    "DenseNetClassifier",
    "block_layers",
    "build_densenet",
    "guess_arch",
    "imagenet_weights_path",
    "load_weights",
    "read_checkpoint",
    "state_from",
    "to_model_input",
]
