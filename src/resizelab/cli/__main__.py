"""`python -m resizelab.cli`: the command line, as the `resizelab` script runs it."""

import sys

from . import main

sys.exit(main())
