"""``python tools/bench ...`` or, from the repository root, ``python -m tools.bench ...``."""

import sys
from pathlib import Path

if not __package__:  # run as a directory: import the package from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from tools.bench.cli import main

# argparse's default prog would be "bench" or "__main__.py"
sys.exit(main(prog="python -m tools.bench" if __package__ else f"python {sys.argv[0]}"))
