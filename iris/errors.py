"""The one exception tree of iris.

The CLI turns every :class:`IrisError` into one line on stderr and exit status 2;
anything else escaping a command is a bug and shows a traceback.

    IrisError
    ├── ConfigError        iris.toml, environment variables or flags are wrong
    ├── WorkdirError       no work directory, or one in an unexpected state
    │   └── WorkdirLockedError another iris command is writing to it
    ├── InputError         a manifest or image file that cannot be used as a whole
    │   └── ColumnError    a required column is missing
    ├── StageOrderError    a stage ran before the stage it needs
    ├── StoreError         the vector store refused or does not match
    │   └── DimensionError collection vector size / distance differ from the request
    ├── ModelError         backbone, weights, export or parity problems
    ├── CrowdError         a campaign spec or a crowd backend problem
    ├── PreflightError     a stage about to run lacks what it needs (weights, key, disk…)
    └── PoolExhaustedError fewer items than a request needs
"""

from __future__ import annotations


class IrisError(Exception):
    """Base of every error iris expects a user to be able to fix."""


class ConfigError(IrisError):
    """Settings are invalid: the message names the key, the value seen and what was expected."""


class WorkdirError(IrisError):
    """The work directory is missing or not initialised."""


class WorkdirLockedError(WorkdirError):
    """Another process holds the work directory's lock; the message names its PID and command."""


class InputError(IrisError):
    """An input file cannot be used as a whole (unreadable, empty, contradictory)."""


class ColumnError(InputError):
    """A manifest lacks a required column."""


class StageOrderError(IrisError):
    """A stage was run before the stage whose output it reads."""


class StoreError(IrisError):
    """The vector store failed or holds something other than what was asked."""


class DimensionError(StoreError):
    """A collection's vector size or distance does not match the request."""


class ModelError(IrisError):
    """Backbone weights, export or numerical parity problems."""


class CrowdError(IrisError):
    """A campaign spec is invalid or a crowd backend failed."""


class PreflightError(IrisError):
    """A stage still to run lacks what it needs; found before any stage starts."""


class PoolExhaustedError(IrisError):
    """Fewer items are available than a request needs."""
