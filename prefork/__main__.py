"""``python -m prefork``: the ``prefork`` command."""

import sys

from prefork.cli import main

sys.exit(main())
