"""How a run's non-default options read in its summaries and notes.

The command line collects the options a user changed (``{"--target": "two", "--betas":
[0.03, 0.3]}``); the tracks print them in their summaries. The text lives here, below both, so a
track never imports the command line.

Example::

  >>> describe_options({"--target": "two", "--betas": [0.03, 0.3], "--quick": True})
  '--target two --betas 0.03,0.3 --quick'
  >>> describe_options({})
  'defaults'
"""

from __future__ import annotations

from typing import Any


def describe_options(options: dict[str, Any]) -> str:
  """``--target two --betas 0.03,0.3`` (or ``defaults``), for summaries and notes."""
  if not options:
    return "defaults"
  parts = []
  for flag, value in options.items():
    if value is True:
      parts.append(flag)
    elif isinstance(value, list):
      parts.append(f"{flag} {','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in value)}")
    else:
      parts.append(f"{flag} {value}")
  return " ".join(parts)
