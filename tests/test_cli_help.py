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
