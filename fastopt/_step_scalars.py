"""Each update's scalars: the hyperparameters resolved per scalars row
(the optimizer's own, then one per group; schedules evaluated and checked),
and the plan's scalars table filled from them.

A mixin of :class:`fastopt.Optimizer`.  The expensive path - resolving every
row in Python - runs when the hyperparameters change; between changes an
update only moves the step count (and evaluates its schedules) and lets the
rule's compiled scalars (:attr:`fastopt._jit.RuleMath.scalars_filler`) do
the rest.
"""

from __future__ import annotations

from ._hyper import is_schedule


class StepScalars:
    """Resolution of hyperparameter rows and the filling of a plan's scalars."""

    def _hyperparameters_changed(self) -> None:
        super()._hyperparameters_changed()
        if hasattr(self, "_groups"):
            self._refresh_time_dependence()

    def _refresh_time_dependence(self) -> None:
        scheduled = self.has_schedule() or any(
            is_schedule(v) for o in self._groups.overrides() for v in o.values()
        )
        self._scheduled = scheduled
        self._time_dependent = scheduled or self._math.depends_on_step
        self._needs_prepass = getattr(self, "_nonfinite", "propagate") != "propagate" or (
            getattr(self, "_clip_norm", None) is not None)
        self._rows_cache = None

    def _trust_ratios(self, plan, count: int) -> None:
        plan.norms.write_trust_ratios(plan.scalars_rows(self._resolved_rows(count)), self._math.trust_ratio,
                                      plan.norms.trust_ratio_column)

    def _fill_scalars(self, plan, count: int) -> None:
        scalars = plan.scalars
        if scalars.version != self.hyperparameter_version or (self._time_dependent and scalars.count != count):
            if scalars.version == self.hyperparameter_version and scalars.follow is not None:
                scalars.follow(scalars, count, self)  # only the step count moves (and the schedules)
                return
            rows = self._resolved_rows(count)  # raises before anything is written
            carried = None
            if self._math.carry is not None:
                carried = plan.scalars_rows(self._state.carried.for_update(count, rows, self._resolve_rows))
            source = rows
            rows = plan.scalars_rows(rows)
            scalars.fill(self.hyperparameter_version, rows, self._math, self._clip_value, self._maximize, count,
                         carried, source, self._scheduled)
            if self._scheduled and carried is None:
                slots = self._schedule_slots(plan)
                if not any(hyper.name in self.checks_read for hyper, _, _ in slots):
                    scalars.follow_schedules(slots, self._math.coupled_decay)

    def _schedule_slots(self, plan) -> list:
        """Per schedule: (its hyperparameter, the schedule, the scalars rows it feeds)."""
        overrides = self._groups.overrides()
        groups = [self._hyper, *({**self._hyper, **o} for o in overrides)]
        slots = {}
        for row, group in enumerate(plan.scalars_rows(list(range(len(groups))))):
            for name, value in groups[group].items():
                if is_schedule(value):
                    slots.setdefault((name, id(value)), (getattr(type(self), name), value, []))[2].append(row)
        return list(slots.values())

    def _resolved_rows(self, count: int) -> list:
        """Each scalars row's hyperparameters as floats (row 0: the optimizer's own)."""
        cached = self._rows_cache
        if cached is not None and cached[0] == self.hyperparameter_version:
            return cached[1]
        rows = self._resolve_rows(count)
        # Without schedules the rows depend only on the hyperparameters.
        self._rows_cache = None if self._scheduled else (self.hyperparameter_version, rows)
        return rows

    def _resolve_rows(self, count: int) -> list:
        own = self.resolved(count)
        rows = [own]
        for overrides in self._groups.overrides():
            values = dict(self._hyper)
            values.update(overrides)
            rows.append(self.resolved(count, values))
        self.check_resolved(rows)
        return rows

    def check_resolved(self, rows) -> None:
        """A rule's extra checks of resolved values (raise HyperparameterError);
        a rule that defines them names the hyperparameters they read in
        :attr:`checks_read` (a schedule of one of them is checked this way on
        every update)."""

    checks_read: tuple[str, ...] = ()
