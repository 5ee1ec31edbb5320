"""fastopt: the update rules of "Deep Learning from Scratch" as Numba kernels.

    from fastopt import Adam
    optimizer = Adam(lr=0.001)
    optimizer.update(params, grads)   # dicts of arrays, updated in place

Every rule has a pure NumPy twin in :mod:`fastopt.reference`; the kernels
reproduce it bit for bit.
"""

from . import reference, schedules
from ._layout import flatten, zeros_like
from ._reduce import global_norm
from ._warmup import warmup
from .errors import (
    AliasingError,
    DTypeMismatchError,
    EmptyParamsError,
    FastoptInputError,
    HyperparameterError,
    HyperparameterTypeError,
    KeyMismatchError,
    KeyTypeError,
    LayoutError,
    NonFiniteGradientError,
    ShapeMismatchError,
    StateFileError,
)
from .optimizer import Optimizer
from .rules.adabelief import AdaBelief
from .rules.adafactor import Adafactor
from .rules.adadelta import Adadelta
from .rules.adagrad import AdaGrad
from .rules.adam import Adam
from .rules.adamax import Adamax
from .rules.adamw import AdamW
from .rules.lamb import LAMB
from .rules.lars import LARS
from .rules.lion import Lion
from .rules.momentum import Momentum
from .rules.nadam import NAdam
from .rules.nesterov import Nesterov
from .rules.radam import RAdam
from .rules.rmsprop import RMSprop
from .rules.rprop import Rprop
from .rules.sgd import SGD

__version__ = "0.1.0"

__all__ = [
    "SGD",
    "Momentum",
    "Nesterov",
    "AdaGrad",
    "RMSprop",
    "Adam",
    "AdamW",
    "NAdam",
    "RAdam",
    "Adamax",
    "Adadelta",
    "Rprop",
    "AdaBelief",
    "Lion",
    "LAMB",
    "LARS",
    "Adafactor",
    "Optimizer",
    "reference",
    "schedules",
    "global_norm",
    "flatten",
    "zeros_like",
    "warmup",
    "FastoptInputError",
    "KeyMismatchError",
    "KeyTypeError",
    "ShapeMismatchError",
    "DTypeMismatchError",
    "LayoutError",
    "AliasingError",
    "HyperparameterError",
    "HyperparameterTypeError",
    "EmptyParamsError",
    "NonFiniteGradientError",
    "StateFileError",
]
