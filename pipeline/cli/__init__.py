"""The `vaepipe` command line: the parser, the commands (thin calls into `pipeline.jobs`) and
the demo."""

from pipeline.cli.main import EXIT_BAD_INPUT, EXIT_VALIDATION, main
from pipeline.cli.parser import IMAGE_VARIABLE, build_parser, flex_template_argv

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_VALIDATION",
    "IMAGE_VARIABLE",
    "build_parser",
    "flex_template_argv",
    "main",
]
