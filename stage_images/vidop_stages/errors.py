"""The failure a stage reports as bad input, shared by every stage's pure code.

:class:`InvalidInput` is the one failure retrying cannot fix: the runtime
(:mod:`vidop_stages.runtime`) turns it into ``contract.EXIT_INVALID_INPUT``, so
the Job fails at once. Any other exception is retried by the Job controller.
Kept apart from the runtime so pure modules raise it without importing boto3.
"""

from __future__ import annotations


class InvalidInput(Exception):
    """The job's parameters or inputs are unusable; the message says why in
    words a user can act on (it ends up in the VideoJob's status)."""
