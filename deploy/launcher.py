"""The Flex Template's program (FLEX_TEMPLATE_PYTHON_PY_FILE): `vaepipe run --no-wait`.

The launcher runs this file as `__main__` with the template's parameters as `--name=value`.
Beam pickles functions by module, and workers have no such `__main__`, so nothing of the
pipeline is defined here: it all lives in the installed package (no save_main_session).
The program returns right after `run()`: the job is submitted once it has exited.
"""

import os
import sys

from pipeline.cli import flex_template_argv, main

if __name__ == "__main__":
    sys.exit(main(flex_template_argv(sys.argv[1:], os.environ)))
