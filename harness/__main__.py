"""`python -m harness` = the `harness` console script."""

import sys

from harness.cli import main

sys.exit(main())
