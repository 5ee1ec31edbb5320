"""fastopt's benchmark harness: one place for the cases, the timing, the roof
and the reports of ``python -m fastopt bench`` and the asv suite.

It lives beside the ``fastopt`` package in a source checkout and is not
part of the installed wheel: asv measures old commits' installed fastopt
with this checkout's harness, so the harness must not come from the commit
measured.  ``python -m fastopt bench`` finds it from a checkout (run it from
the clone's root, or after an editable install).

- :mod:`.cases`: every case from the rule registry and its capabilities
- :mod:`.book`: the book's optimizers and its fresh-grads loop
- :mod:`.roofs`: same-traffic roof kernels
- :mod:`.timing`: interleaved rounds
- :mod:`.measure`: cases timed into results; :mod:`.report`: tables, markdown, plot
- :mod:`.cli`: the command line
"""
