"""The one error type for inputs that monai-bsnet cannot or must not score."""

from __future__ import annotations

import os

__all__ = ["CXRInputError"]


class CXRInputError(ValueError):
    """An input file that is unreadable or unsuitable (empty, truncated, not a frontal CXR, ...).

    The message names the file and the reason, so that a batch can report it and go on.

    Args:
        path: the offending file (or folder, or dataset entry).
        reason: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path or '<input>'}: {reason}")
