"""``python -m example_host``."""

import sys

from .cli import main

sys.exit(main())
