"""``python -m recall_theory`` is the ``recall-theory`` command."""

import sys

from recall_theory.cli.main import main

sys.exit(main())
