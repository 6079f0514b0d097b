"""``python -m quotes_producer {poll,load}``; see :mod:`quotes_producer.cli`."""

import sys

from quotes_producer.cli import main

if __name__ == "__main__":
    sys.exit(main())
