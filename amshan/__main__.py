"""Run the ``amshan`` command line as ``python -m amshan``."""

from __future__ import annotations

import sys

from amshan.cli import main

if __name__ == "__main__":
    sys.exit(main())
