"""``python -m tests.harness``: start, stop and inspect the native test servers."""

import sys

from tests.harness.servers import main

sys.exit(main())
