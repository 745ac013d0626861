"""Errors raised by the model package."""

from __future__ import annotations


class ModelFitError(RuntimeError):
    """Training produced a non-finite loss (NaN or infinity); the weights cannot be trusted."""


class SnapshotFormatError(ValueError):
    """A snapshot folder exists but its files do not match docs/CONTRACTS.md."""
