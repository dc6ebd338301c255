"""Progress on stderr: a rich bar on a terminal, nothing in pipes and logs.

Commands print their own one-line summary when they finish, so a log file gets one
line per stage rather than thousands of bar redraws.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")

stderr = Console(stderr=True, highlight=False)


class Reporter:
    """Wraps iterables in progress bars when stderr is a terminal."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = stderr.is_terminal if enabled is None else enabled
        self._progress: Progress | None = None

    @contextlib.contextmanager
    def session(self) -> Iterator[Reporter]:
        if not self.enabled:
            yield self
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
        )
        with self._progress:
            yield self
        self._progress = None

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        if self._progress is None:
            yield from items
            return
        task = self._progress.add_task(description, total=total)
        for n, item in enumerate(items, 1):
            yield item
            if n % 1000 == 0:
                self._progress.update(task, completed=n)
        self._progress.remove_task(task)


class TrainDisplay:
    """Training output on stderr: permanent lines, plus a live status line on a terminal."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = stderr.is_terminal if enabled is None else enabled
        self._live = None

    def __enter__(self) -> TrainDisplay:
        if self.enabled:
            from rich.live import Live

            self._live = Live(console=stderr, transient=True, refresh_per_second=4)
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def line(self, text: str) -> None:
        stderr.print(text, markup=False, highlight=False, soft_wrap=True)

    def status(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(text, style="bold"))
