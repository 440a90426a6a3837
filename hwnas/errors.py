"""Errors whose message is meant for the user: one line, naming the problem.

The CLI prints ``error: <message>`` for any :class:`HwnasError` and exits with status 2;
anything else is a bug and keeps its traceback.
"""


class HwnasError(Exception):
    """A user-facing error with a one-line message."""


class InputError(HwnasError):
    """Bad input from the user: a file, an argument, an architecture string."""


class DeviceMismatchError(HwnasError):
    """A profile was made on another machine or with another device spec."""


class ProfileError(HwnasError):
    """A device profile is missing, incomplete or corrupt."""


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none), for
    one-line errors that wrap a library's multi-line ones."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
