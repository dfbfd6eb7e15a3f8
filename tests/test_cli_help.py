"""Every subcommand's --help reads as plain text (no reST markup from docstrings)."""

import re

import pytest

from recall_theory.cli import main as cli

MARKUP = re.compile(r"``|:(?:func|mod|class|data|meth|attr):`")


def test_plain_text_strips_inline_markup():
  assert cli.plain_text("``recall-theory lm``: see :func:`~a.b` and :mod:`c`") == \
      "recall-theory lm: see a.b and c"
  assert cli.plain_text(None) is None


@pytest.mark.parametrize("command", sorted(cli.build_parser()._subparsers._group_actions[0].choices))
def test_help_has_no_rest_markup(command, capsys):
  with pytest.raises(SystemExit) as stop:
    cli.main([command, "--help"])
  assert stop.value.code == 0
  text = capsys.readouterr().out
  assert text and not MARKUP.search(text), MARKUP.search(text)


# `recall-theory --help` and a bad flag must answer at once: building the parser may not
# import JAX (11 s under load in issue 21). Checked in a fresh interpreter, by what was
# imported rather than by timing, so a busy machine cannot make it flaky.
JAX_FREE_PROBE = """
import sys
from recall_theory.cli.main import main
try:
  main(sys.argv[1:])
except SystemExit:
  pass
print('jax imported' if 'jax' in sys.modules else 'jax not imported')
"""


@pytest.mark.parametrize("argv", [["--help"], ["--no-such-flag"], ["lm", "--help"],
                                  ["smollm2", "--no-such-flag"], ["mog", "--seeds"]])
def test_help_and_bad_flags_do_not_import_jax(argv):
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run([sys.executable, "-c", JAX_FREE_PROBE, *argv], capture_output=True,
                        text=True, timeout=120, env=env)
  assert proc.stdout.strip().splitlines()[-1] == "jax not imported", (proc.stdout, proc.stderr)


def _options(parser):
  """(command, flag, action, parser) for every option of every subcommand and the top level."""
  import argparse
  for action in parser._actions:
    if isinstance(action, argparse._SubParsersAction):
      for name, sub in action.choices.items():
        for _, flag, act, owner in _options(sub):
          yield name, flag, act, owner
    elif action.option_strings and not isinstance(action, argparse._HelpAction):
      yield parser.prog, max(action.option_strings, key=len), action, parser


def test_every_flag_has_help_and_shows_its_default():
  """Issue 21: `mog --target/--label-noise/--dpo-pairs/--dtype` showed no default, `generate
  --seed` had no help. A flag that takes a value says in its help what happens without it
  (its help as --help renders it contains 'default'); switches (store_true) default to off."""
  missing_help, missing_default = [], []
  for command, flag, action, parser in _options(cli.build_parser()):
    if not action.help:
      missing_help.append(f"{command} {flag}")
      continue
    takes_value = action.nargs != 0
    rendered = parser._get_formatter()._expand_help(action)  # %(default)s filled in, as --help shows
    if takes_value and not action.required and "default" not in rendered.lower():
      missing_default.append(f"{command} {flag}: {rendered}")
  assert not missing_help, missing_help
  assert not missing_default, "\n".join(missing_default)
