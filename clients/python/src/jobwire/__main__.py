"""`python -m jobwire ...` is the `jobwire` command."""

import sys

from .cli import main

sys.exit(main())
