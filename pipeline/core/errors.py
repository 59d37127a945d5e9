"""Errors the command line turns into exit code 2 with one line naming the cause."""

from __future__ import annotations


class BundleError(ValueError):
    """A model bundle is missing, incomplete, altered or incompatible, or an input does not
    fit it."""
