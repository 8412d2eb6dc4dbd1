"""The experiment engine: settings -> a plan of units -> one executor -> one store -> one summary.

- :mod:`.units`: what a unit of work is, its digest, how one runs (``run_group``);
- :mod:`.plans`: settings -> a two-level design -> runs -> units;
- :mod:`.effects`: designs, generators, alias structure, effect estimates;
- :mod:`.execute`: the executor (serial, threads, Dask: one loop), Dask connection;
- :mod:`.store`: the content-addressed store of finished units, the folder lock and its settings mark;
- :mod:`.results`: the result files (results.json, results.csv, timing.json, the models);
- :mod:`.summary`: every figure of a results document (effects, verdicts, checklist, predictions);
- :mod:`.forecasting`: each model against the naive baselines (made once per task), free-running rollouts;
- :mod:`.run`: the one runner: cells (a factorial is one, a sweep many) through one executor into one
  store, with the gradient check and a reproducibility rerun beside them; writes the result files.

Presentation (tables, plots) lives in :mod:`ternq.report`; nothing here imports it.
"""
