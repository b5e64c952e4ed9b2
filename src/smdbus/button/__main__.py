"""``python -m smdbus.button``: run button sources live (see :mod:`smdbus.button._runner`)."""

from __future__ import annotations

import argparse
import sys

from smdbus.button._runner import configure_live, run_live


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m smdbus.button", description="classify real button presses live"
    )
    configure_live(parser)
    return run_live(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
