"""Errors that carry the file and the item at fault, printed as one line by the CLI."""

from __future__ import annotations

from pathlib import Path


class HoloError(Exception):
    """Base class of holo's expected errors (bad data, bad input).

    ``str(err)`` is a single line ``"<file>: <item>: <message>"`` (the parts that are known).
    """

    def __init__(self, message: str, *, path: str | Path | None = None, item: str | None = None):
        self.message = " ".join(str(message).split())
        self.path = None if path is None else str(path)
        self.item = item
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = [p for p in (self.path, self.item) if p]
        parts.append(self.message)
        return ": ".join(parts)


class FormatError(HoloError):
    """A file is unreadable, not of the expected format, or violates its layout."""


class ValidationError(HoloError, ValueError):
    """Values are inconsistent or unphysical (shapes, NA > n_m, NaN, units)."""


class ResourceError(HoloError):
    """The work would need more memory (or another resource) than is available."""
