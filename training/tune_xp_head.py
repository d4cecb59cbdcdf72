"""`python -m training.tune_xp_head ARGS` runs `python -m training.tune_head --survey gaia_xp
ARGS`. Kept because the cards of bundles trained before training/tune_head.py existed name
this command."""

from __future__ import annotations

import sys

from training.tune_head import main

if __name__ == "__main__":
    main(["--survey", "gaia_xp", *sys.argv[1:]])
