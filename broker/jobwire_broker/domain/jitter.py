"""The broker's source of jitter: a generator of its own, so nothing that seeds or reads
the global one (tests, libraries) shares or changes its sequence."""

import random

JITTER = random.Random()
