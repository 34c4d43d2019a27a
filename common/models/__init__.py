"""Models shared by the demos: DenseNet classifiers (Huang et al. 2017, https://arxiv.org/abs/1608.06993;
:mod:`common.models.densenet`, checkpoints in :mod:`common.models.weights`) and ENet segmenters
(:mod:`common.models.enet`)."""

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
    state_from,
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
    "state_from",
    "to_model_input",
]
