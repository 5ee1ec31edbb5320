"""The grad pre-pass of an update: the non-finite check and the clip norm
(``nonfinite="skip"/"raise"``, ``clip_norm``), in one read of the grads
before the kernel runs; and the hook that lets :mod:`fastopt.distributed`
reduce it across the shards of a larger layout.

A mixin of :class:`fastopt.Optimizer`.
"""

from __future__ import annotations

import math

from .errors import NonFiniteGradientError


class GradPrepassStep:
    """Runs the pre-pass of a plan and acts on its result."""

    def _prepass(self, plan) -> bool:
        """The non-finite check and the clip norm, in one read of the grads.
        False: skip this update."""
        prepass = self._runner.prepass(plan, plan.scalars)
        bad_key, total = prepass.run(self._clip_norm is not None)
        bad_key = plan.layout.keys[bad_key] if bad_key >= 0 else None
        if self._prepass_reduction is not None:
            bad_key, total = self._prepass_reduction(bad_key, prepass.block_sums, total)
        if bad_key is not None and self._nonfinite != "propagate":
            if self._nonfinite == "skip":
                self.skipped_steps += 1
                return False
            raise NonFiniteGradientError(
                f"grads[{bad_key!r}] holds a non-finite value (nan or inf); "
                "nothing was updated (nonfinite='raise')"
            )
        if self._clip_norm is not None:
            self.last_grad_norm = math.sqrt(total)
            plan.scalars.scale_for_norm(self.last_grad_norm, self._clip_norm, self._maximize)
        return True

    @property
    def needs_grad_prepass(self) -> bool:
        """Whether an update reads the grads once before the kernel runs (the
        non-finite check of ``nonfinite="skip"/"raise"``, the ``clip_norm`` norm)."""
        return self._needs_prepass

    def serve_as_shard(self, reduce_prepass) -> None:
        """Make this optimizer update one shard of a larger layout
        (:mod:`fastopt.distributed` calls it once, before the first update).

        ``reduce_prepass(bad_key, block_sums, total)`` turns this shard's
        pre-pass result into the whole layout's: the first key (by name, or
        None) holding a non-finite grad, and the sum of squares on the fixed
        grid (``block_sums``: this shard's per-block sums, in block order).
        Group patterns may then match none of a shard's keys.
        """
        self._prepass_reduction = reduce_prepass
        self._groups.partial_layout = True
