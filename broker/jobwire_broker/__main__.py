"""`python -m jobwire_broker serve` is `jobwire serve`."""

import sys

from .cli import main

sys.exit(main())
