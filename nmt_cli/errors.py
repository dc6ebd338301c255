"""The exception types for failures that are not bugs.

Anything raised as :class:`NmtError` (a user's mistake) is shown as a single line on
stderr and exits with code 2, an :class:`EnvError` (the system failed: a full disk, a
read-only file system, a closed stdout) likewise with code 1 (see ``runtime.py``); every
other exception is a bug and keeps its traceback. Under the Python API (``api.py``) the
warnings go through Python's :mod:`warnings` instead of being printed.
"""

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar

_through_warnings = ContextVar("through_warnings", default=False)


class NmtError(Exception):
    """A user's mistake (bad input, bad option, bad file): one line, exit code 2."""


class EnvError(Exception):
    """The environment failed (disk full, read-only, closed stdout): one line, exit code 1."""


def os_reason(error: OSError) -> str:
    """The OS's words for an error, as the rest of a message: ``no space left on device``."""
    text = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
    return text[:1].lower() + text[1:]


def shown(value: object, limit: int = 200) -> str:
    """``repr(value)`` (an exception's first line) cut to ``limit`` characters, for error
    messages: a value from a file can be megabytes long."""
    if isinstance(value, BaseException):
        text = str(value).splitlines()[0] if str(value).strip() else type(value).__name__
    else:
        text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text):,} characters)"


class NmtWarning(UserWarning):
    """A warning of nmt's (a line truncated to the model's limit...) under the Python API."""


def warn(message: str) -> None:
    """A warning line on stderr (never stdout, which carries data in pipelines), or an
    :class:`NmtWarning` inside :func:`as_warnings`."""
    if _through_warnings.get():
        import warnings

        warnings.warn(message, NmtWarning, stacklevel=2)
        return
    import sys

    print(f"nmt: warning: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def as_warnings() -> Iterator[None]:
    """Within: :func:`warn` raises Python warnings, which a program filters or records as
    it does any, in place of lines on stderr (in this thread or task alone)."""
    token = _through_warnings.set(True)
    try:
        yield
    finally:
        _through_warnings.reset(token)
