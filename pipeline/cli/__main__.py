"""`python -m pipeline.cli ...` runs the `vaepipe` command line."""

import sys

from pipeline.cli.main import main

sys.exit(main())
