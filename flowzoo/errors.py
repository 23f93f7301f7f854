"""Errors a user can fix.

Anything raised as a :class:`UserError` is a mistake in a config, a flag, a path or the data
on disk, not a bug.  The launcher prints its :meth:`~UserError.summary` (one to three lines:
the problem and the fix) without a traceback; ``--verbose_errors`` brings the traceback back.
The subclasses also derive from the built-in exception a caller would expect (``KeyError``
for an unknown config key, ``FileNotFoundError`` for missing data), so ``except`` clauses
written for those keep working.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message names the problem, then the fix."""

    def summary(self) -> str:
        """At most three lines for a console."""
        return "\n".join(str(self).strip().splitlines()[:3])


class ConfigError(UserError, ValueError):
    """A config value that cannot work (a batch size the devices do not divide, ...)."""


class ConfigKeyError(UserError, KeyError):
    """An unknown or missing config key; the message names the nearest valid key."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
