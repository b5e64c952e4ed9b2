"""``python -m smdbus`` is the ``smd`` command."""

import sys

from smdbus.cli import main

sys.exit(main())
