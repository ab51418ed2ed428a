"""``python -m bids_enhance``."""

from __future__ import annotations

import sys

from bids_enhance.cli.run import main

if __name__ == "__main__":
    sys.argv[0] = "bids_enhance"
    sys.exit(main())
