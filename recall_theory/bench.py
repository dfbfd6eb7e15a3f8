"""One record format for every benchmark, so ``experiments/bench_all.py`` can gather them.

Each benchmark measures a figure against a baseline **in the same run** and reports the
ratio, with compile and run time kept apart. Scripts under ``experiments/`` append
:func:`entry` dicts and, given ``--json PATH``, write them with :func:`write_report`.
"""

from __future__ import annotations

import os
import platform
import time


def machine() -> dict:
  info = {"system": f"{platform.system()} {platform.machine()}", "cpus": os.cpu_count(),
          "python": platform.python_version()}
  try:
    import jax
    devices = jax.devices()
    info["jax"] = jax.__version__
    info["device"] = f"{len(devices)} x {devices[0].device_kind} ({jax.default_backend()})"
  except Exception:  # pragma: no cover - benchmarks without jax
    pass
  return info


def entry(name: str, value: float, unit: str, *, baseline: str | None = None,
          baseline_value: float | None = None, higher_is_better: bool = False,
          compile_s: float | None = None, run_s: float | None = None, **extra) -> dict:
  """One measured figure; ``ratio`` is how many times better than the baseline it is."""
  ratio = None
  if baseline_value is not None and value:
    ratio = value / baseline_value if higher_is_better else baseline_value / value
  return {"name": name, "value": value, "unit": unit, "baseline": baseline,
          "baseline_value": baseline_value, "ratio": ratio, "higher_is_better": higher_is_better,
          "compile_s": compile_s, "run_s": run_s, **extra}


def load_average() -> list[float] | None:
  """1, 5 and 15 minute load averages (None where the OS has none): timings on a shared
  machine are read beside them."""
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except (AttributeError, OSError):  # pragma: no cover - e.g. Windows
    return None


def write_report(path, benchmark: str, entries: list[dict], **extra) -> None:
  """Write ``{benchmark, machine, date, load_average, entries, **extra}`` as JSON."""
  from recall_theory import io
  io.write_json(path, {"benchmark": benchmark, "machine": machine(),
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "load_average": load_average(), "entries": entries, **extra})
