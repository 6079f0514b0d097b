"""``python -m native.servers``: start, stop and inspect the native test servers."""

import sys

from native.servers import main

sys.exit(main())
