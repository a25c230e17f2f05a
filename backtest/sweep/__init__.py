"""Parameter sweeps and walk-forward over many backtests (``stockbridge sweep``).

One job per module:

- :mod:`~backtest.sweep.spec`: the sweep file (grid, ranges, seeds, objective, walk-forward) and how
  a swept value is applied to the validated config;
- :mod:`~backtest.sweep.objective`: the objectives, from each run's summary and equity series;
- :mod:`~backtest.sweep.plan`: which runs a grid, random or Optuna search and a walk-forward want;
- :mod:`~backtest.sweep.worker`: one run in a worker process;
- :mod:`~backtest.sweep.executors`: this process, a local process pool, or Ray;
- :mod:`~backtest.sweep.store`: results.parquet and the per-run files, safe to kill and resume;
- :mod:`~backtest.sweep.driver`: carries a sweep out (:func:`run_sweep`);
- :mod:`~backtest.sweep.page`: the HTML page.
"""

from backtest.sweep.driver import SweepResult, run_sweep
from backtest.sweep.executors import make_executor
from backtest.sweep.spec import Sweep, load_sweep

__all__ = ["Sweep", "SweepResult", "load_sweep", "make_executor", "run_sweep"]
