"""Every rule, once: what tests, benchmarks and the bench command iterate over.

Adding a rule is a module in ``fastopt/rules/``, its reference class in
:mod:`fastopt.reference`, one :class:`Rule` line here and its public name in
``fastopt/__init__.py`` (public names are written out by hand); the test
suite, the bench and the asv suite pick it up from here with no other edit.
Test ranges of the hyperparameters come from their declared checks
(:data:`fastopt._hyper.TEST_RANGES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import reference
from ._hyper import TEST_RANGES
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


@dataclass(frozen=True)
class Rule:
    name: str
    fast: type[Optimizer]
    reference: type
    #: Named constructor settings that tests run besides the defaults
    #: (structure options such as amsgrad included).
    configs: dict[str, dict] = field(default_factory=dict)
    #: The PyTorch class with the same math, where there is one.
    torch_equivalent: str | None = None

    @property
    def math(self):
        return self.fast.math

    @property
    def kernel(self):
        return self.fast.math.kernel

    @property
    def hyperparameter_names(self) -> tuple[str, ...]:
        return self.fast.hyperparameter_names

    def test_range(self, name: str) -> tuple[float, float]:
        """Finite values a test may draw for ``name``, from its declared check."""
        return TEST_RANGES[getattr(self.fast, name).check]

    @property
    def factored(self) -> bool:
        """Whether the rule keeps state shaped otherwise than the params (Adafactor)."""
        return self.fast.math.state_shape is not None

    @property
    def state_dtypes(self) -> tuple[str, ...]:
        """The ``state_dtype`` values the rule accepts: "float32", then each
        compact format its math offers (none where it keeps no state)."""
        math = self.fast.math
        if not math.state_names:
            return ("float32",)
        return ("float32",) + tuple(f for f in ("bfloat16", "int8") if math.low_precision_error(f) is None)

    def bytes_per_element(self, itemsize: int = 4, **config) -> int:
        """Bytes one step reads and writes per element, summed over its passes
        (:attr:`fastopt._jit.RuleMath.passes`): Adam 7 arrays, LAMB 11,
        Adafactor 6 for matrices."""
        math = self.fast(**config)._math
        return itemsize * sum(read + written for read, written in math.passes)


RULES: tuple[Rule, ...] = (
    Rule("SGD", SGD, reference.SGD,
         {"default": {}, "decay": {"lr": 0.1, "weight_decay": 0.01},
          "momentum": {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
          "nesterov": {"lr": 0.05, "momentum": 0.8, "nesterov": True}}, "SGD"),
    Rule("Momentum", Momentum, reference.Momentum,
         {"default": {}, "decay": {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.001}}),
    Rule("Nesterov", Nesterov, reference.Nesterov,
         {"default": {}, "decay": {"lr": 0.03, "momentum": 0.95, "weight_decay": 0.002}}),
    Rule("AdaGrad", AdaGrad, reference.AdaGrad,
         {"default": {}, "decay": {"lr": 0.5, "eps": 1e-4, "weight_decay": 0.01}}),
    Rule("RMSprop", RMSprop, reference.RMSprop,
         {"default": {}, "decay": {"lr": 0.001, "decay_rate": 0.9, "eps": 1e-6, "weight_decay": 0.05}}),
    Rule("Adam", Adam, reference.Adam,
         {"default": {}, "decay": {"lr": 0.01, "beta1": 0.5, "beta2": 0.99, "eps": 1e-5, "weight_decay": 0.1},
          "amsgrad": {"lr": 0.01, "amsgrad": True}}),
    Rule("AdamW", AdamW, reference.AdamW,
         {"default": {}, "strong_decay": {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.5},
          "no_decay": {"weight_decay": 0.0}, "amsgrad": {"amsgrad": True, "weight_decay": 0.1}}, "AdamW"),
    Rule("NAdam", NAdam, reference.NAdam,
         {"default": {}, "decay": {"lr": 0.01, "beta1": 0.8, "weight_decay": 0.1, "momentum_decay": 0.01},
          "decoupled": {"weight_decay": 0.1, "decoupled_weight_decay": True}}, "NAdam"),
    Rule("RAdam", RAdam, reference.RAdam,
         {"default": {}, "decay": {"lr": 0.01, "beta2": 0.99, "weight_decay": 0.1},
          "decoupled": {"weight_decay": 0.1, "decoupled_weight_decay": True}}, "RAdam"),
    Rule("Adamax", Adamax, reference.Adamax,
         {"default": {}, "decay": {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.1}}, "Adamax"),
    Rule("Adadelta", Adadelta, reference.Adadelta,
         {"default": {}, "decay": {"lr": 0.5, "rho": 0.8, "eps": 1e-5, "weight_decay": 0.1}}, "Adadelta"),
    Rule("Rprop", Rprop, reference.Rprop,
         {"default": {}, "tight": {"lr": 0.1, "eta_minus": 0.3, "eta_plus": 1.5, "step_min": 0.01,
                                   "step_max": 0.5}}, "Rprop"),
    Rule("AdaBelief", AdaBelief, reference.AdaBelief,
         {"default": {}, "decay": {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8, "eps_root": 1e-12,
                                   "weight_decay": 0.1}}),
    Rule("Lion", Lion, reference.Lion,
         {"default": {}, "decay": {"lr": 0.001, "beta1": 0.8, "beta2": 0.95, "weight_decay": 0.5}}),
    Rule("LAMB", LAMB, reference.LAMB,
         {"default": {}, "decay": {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8, "eps_root": 1e-10,
                                   "weight_decay": 0.1}}),
    Rule("LARS", LARS, reference.LARS,
         {"default": {}, "decay": {"lr": 0.5, "momentum": 0.8, "trust_coefficient": 0.01, "eps": 1e-8,
                                   "weight_decay": 0.01},
          "nesterov": {"nesterov": True, "weight_decay": 0.001}}),
    Rule("Adafactor", Adafactor, reference.Adafactor,
         {"default": {}, "decay": {"lr": 0.05, "beta2_decay": -0.5, "eps1": 1e-3, "eps2": 0.01, "d": 2.0,
                                   "weight_decay": 0.1}}, "Adafactor"),
)

BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}
