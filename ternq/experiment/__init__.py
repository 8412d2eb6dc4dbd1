"""The experiment engine: settings -> a plan of units -> one executor -> one store -> one summary.

- :mod:`.units`: what a unit of work is, its digest, how one runs (``run_group``);
- :mod:`.plans`: settings -> a two-level design -> runs -> units;
- :mod:`.effects`: designs, generators, alias structure, effect estimates;
- :mod:`.execute`: the executor (serial, threads, Dask: one loop), Dask connection;
- :mod:`.store`: the content-addressed store of finished units, the folder lock;
- :mod:`.summary`: every figure of a results document (effects, verdicts, checklist, predictions);
- :mod:`.forecasting`: each model against the naive baselines (made once per task), free-running rollouts;
- :mod:`.run`: a whole experiment, with the gradient check and a reproducibility rerun beside it.

Presentation (tables, plots, files) lives in :mod:`ternq.report`; nothing here imports it.
"""
