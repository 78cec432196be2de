"""lightning-zoo architectures: pure ``nn.Module``s behind one registry.

Importing ``zoo`` never imports Lightning; the LightningModules live in ``zoo.tasks``.
"""

from ._base import ZooModel
from ._registry import UnknownModelError, create_model, list_models, model_info, register_model
from .init import INIT_SCHEMES, init_weights

# Importing each family registers its variants (order: as in the README's model table).
from . import mlp, lenet  # noqa: E402,F401  isort: skip
from . import linear, perceptron  # noqa: E402,F401  isort: skip
from . import simple_convnet, vgg, resnet, rnn  # noqa: E402,F401  isort: skip
from . import autoencoder, rbm  # noqa: E402,F401  isort: skip
from . import gan  # noqa: E402,F401  isort: skip

__all__ = [
    "ZooModel",
    "UnknownModelError",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "init_weights",
    "INIT_SCHEMES",
]
