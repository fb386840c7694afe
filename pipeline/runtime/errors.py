"""Errors of the runtime: every one is a ``RuntimeError`` so callers that catch that (the job CLI does) report them."""

from __future__ import annotations


class EngineError(RuntimeError):
    """An engine cannot be built, loaded or run."""


class EngineNotBuiltError(EngineError):
    """The engine is not in the engines folder and building on first use was turned off."""


class EngineMismatchError(EngineError):
    """The engine on disk does not belong to the checkpoint (or machine) in use, or was changed after it was built."""


class BackendUnavailableError(EngineError):
    """The backend's library (or the hardware it needs) is not present on this machine."""
