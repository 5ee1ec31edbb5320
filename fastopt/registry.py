"""Every rule, once: what tests, benchmarks and the bench command iterate over.

Adding a rule is a module in ``fastopt/rules/``, its reference class in
:mod:`fastopt.reference`, and one :class:`Rule` line here; the test suite and
the benchmarks pick it up with no other edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import reference
from .optimizer import Optimizer
from .rules.adagrad import AdaGrad
from .rules.adam import Adam
from .rules.adamw import AdamW
from .rules.momentum import Momentum
from .rules.nesterov import Nesterov
from .rules.rmsprop import RMSprop
from .rules.sgd import SGD


@dataclass(frozen=True)
class Rule:
    name: str
    fast: type[Optimizer]
    reference: type
    #: Bytes read and written per float32 element by one step: params read and
    #: written, grads read, each state buffer read and written.
    bytes_per_element: int
    #: Named hyperparameter settings that tests run besides the defaults.
    configs: dict[str, dict] = field(default_factory=dict)

    @property
    def kernel(self):
        return self.fast.kernel


def _bytes(n_state: int) -> int:
    return 4 * (3 + 2 * n_state)


RULES: tuple[Rule, ...] = (
    Rule("SGD", SGD, reference.SGD, _bytes(0),
         {"default": {}, "decay": {"lr": 0.1, "weight_decay": 0.01}}),
    Rule("Momentum", Momentum, reference.Momentum, _bytes(1),
         {"default": {}, "decay": {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.001}}),
    Rule("Nesterov", Nesterov, reference.Nesterov, _bytes(1),
         {"default": {}, "decay": {"lr": 0.03, "momentum": 0.95, "weight_decay": 0.002}}),
    Rule("AdaGrad", AdaGrad, reference.AdaGrad, _bytes(1),
         {"default": {}, "decay": {"lr": 0.5, "eps": 1e-4, "weight_decay": 0.01}}),
    Rule("RMSprop", RMSprop, reference.RMSprop, _bytes(1),
         {"default": {}, "decay": {"lr": 0.001, "decay_rate": 0.9, "eps": 1e-6, "weight_decay": 0.05}}),
    Rule("Adam", Adam, reference.Adam, _bytes(2),
         {"default": {}, "decay": {"lr": 0.01, "beta1": 0.5, "beta2": 0.99, "eps": 1e-5, "weight_decay": 0.1}}),
    Rule("AdamW", AdamW, reference.AdamW, _bytes(2),
         {"default": {}, "strong_decay": {"lr": 0.01, "beta1": 0.8, "beta2": 0.95, "eps": 1e-6, "weight_decay": 0.5},
          "no_decay": {"weight_decay": 0.0}}),
)

BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}
