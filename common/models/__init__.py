"""Models shared by the demos. DenseNet (Huang et al. 2017, https://arxiv.org/abs/1608.06993) for the
interpretability demos; see :mod:`common.models.densenet`."""

from common.models.densenet import (
    ARCHS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_INPUT_SIZE,
    POOLINGS,
    DenseNetClassifier,
    block_layers,
    build_densenet,
    guess_arch,
    imagenet_weights_path,
    load_weights,
    read_checkpoint,
    to_model_input,
)

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
    "to_model_input",
]
