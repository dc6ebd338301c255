"""The one exception type for mistakes a user can make.

Anything raised as :class:`NmtError` is shown as a single line on stderr and exits
with code 2 (see ``cli.py``); every other exception is a bug and keeps its traceback.
"""


class NmtError(Exception):
    """A user's mistake (bad input, bad option, bad file): one line, exit code 2."""


def warn(message: str) -> None:
    """A warning line on stderr (never stdout, which carries data in pipelines)."""
    import sys

    print(f"nmt: warning: {message}", file=sys.stderr, flush=True)
