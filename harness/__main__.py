"""`python -m harness` = the `harness` console script."""

import sys

from harness.cli.main import main

sys.exit(main())
