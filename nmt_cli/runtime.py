"""The ``nmt`` process around a command: the settings torch must see before a command
imports it, and how the command ends: every failure as one line on stderr and an exit code.

A user's mistake (``NmtError``, or the parser's usage errors) is exit code 2, a failure of
the system (``EnvError``, or an ``OSError`` that names a file: a full disk, a read-only or
unwritable place, a closed stdout) exit code 1, Ctrl-C 130; ``--debug`` shows the
traceback instead. Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from nmt_cli import allocator
from nmt_cli.errors import EnvError, NmtError, os_reason


def setup() -> None:
    """What torch must see before a command imports it. torch's import looks for device
    backends through every installed package's entry points: nmt runs on cpu or cuda only.
    An explicit setting of the user's wins."""
    os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")
    allocator.limit_descriptor_cache()  # before torch's first matrix product (docs/performance.md)


def set_threads(count: int) -> int:
    """``--threads N``: torch's CPU threads, set as the flag is parsed (0: torch's default)."""
    if count < 0:  # torch would raise a RuntimeError, a traceback
        raise NmtError(f"--threads {count}: must be >= 0 (0: torch's default)")
    if count:
        import torch

        torch.set_num_threads(count)
    return count


class Group(TyperGroup):
    """The root command: sets the process up, then maps the errors a command raises to one
    line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        setup()
        previous = signal.signal(signal.SIGTERM, _interrupted)  # `nmt train` stops at its own
        try:
            return super().invoke(ctx)
        except (NmtError, EnvError, OSError, KeyboardInterrupt) as e:
            code, line = _failure(e)
            if line is None or ctx.params.get("debug"):  # the root's --debug, of this invocation only
                raise
            typer.echo(line, err=True)
            raise typer.Exit(code) from None
        finally:
            signal.signal(signal.SIGTERM, previous)


def _interrupted(signum: int, frame: Any) -> NoReturn:
    """SIGTERM ends a command as Ctrl-C does: its outputs' temporary files are removed, an
    output already in place stays as it was, and it exits with 130."""
    raise KeyboardInterrupt


def run(app: typer.Typer) -> NoReturn:
    """Run ``app`` as the ``nmt`` process: like ``app()``, but usage errors are one line too."""
    from nmt_cli.writing import named_stdout

    sys.stdout = named_stdout()  # a full device or a closed stdout is then one line, exit code 1
    try:
        code = app(prog_name="nmt", standalone_mode=False)
    except typer.TyperException as e:  # the parser's errors: bad option, missing value...
        if type(e).__name__ != "NoArgsIsHelpError":  # (that one has printed the help)
            where = getattr(getattr(e, "ctx", None), "command_path", "nmt")
            typer.echo(f"nmt: error: {e.format_message()} (see '{where} --help')", err=True)
        code = getattr(e, "exit_code", 2)
    except typer.Abort:
        code = 1
    except OSError as e:  # outside a command (--version, --help): stdout unwritable
        code, line = _failure(e)
        if line is None:
            raise
        typer.echo(line, err=True)
    _exit(code or 0)


def _failure(error: BaseException) -> tuple[int, str | None]:
    """The exit code and the line for ``error``; no line for a bug, nor for a reader gone
    (EPIPE, which typer ends quietly). An OSError that names a file (``<stdout>`` too, see
    ``writing.named_stdout``) is the system's refusal: reads of the user's files are checked
    where they happen."""
    if isinstance(error, KeyboardInterrupt):
        return 130, "nmt: interrupted"
    if isinstance(error, OSError) and (error.errno == errno.EPIPE or error.filename is None):
        return 1, None
    reason = f"{error.filename}: {os_reason(error)}" if isinstance(error, OSError) else str(error)
    return 2 if isinstance(error, NmtError) else 1, f"nmt: error: {_rank_tag()}{reason}"


def _rank_tag() -> str:
    """``[rank N] `` in a torchrun worker other than rank 0, so its errors say whose they are."""
    rank = os.environ.get("RANK", "0")
    return f"[rank {rank}] " if rank != "0" else ""


def _exit(code: int) -> NoReturn:
    """End the process without the interpreter's teardown, once the standard streams are
    flushed. With torch loaded, that teardown (freeing some 1,100 modules and their
    objects) is a large share of a short ``nmt translate`` (docs/performance.md);
    every file a command writes is closed, and renamed into place, before it returns.
    Under a profiler or tracer (cProfile, coverage) the usual exit lets it write its report."""
    code = _flush_stdout(code)
    if _observed():
        sys.exit(code)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)


def _flush_stdout(code: int) -> int:
    """The exit code once stdout is flushed: output that could not be written (a full
    device, a closed descriptor) is an error of the system, exit code 1."""
    try:
        sys.stdout.flush()
    except OSError as e:
        if code or e.errno == errno.EPIPE:  # reported already, or a reader gone (| head)
            return code
        typer.echo(f"nmt: error: {e.filename or '<stdout>'}: {os_reason(e)}", err=True)
        return 1
    except ValueError:  # a stream closed
        pass
    return code


def _observed() -> bool:
    """A profiler, tracer or debugger is attached: the old hooks, or (Python 3.12 on, where
    cProfile and coverage use them) a ``sys.monitoring`` tool."""
    monitoring = getattr(sys, "monitoring", None)
    tools = [monitoring.get_tool(i) for i in range(6)] if monitoring else []  # tool ids 0-5
    return bool(sys.getprofile() or sys.gettrace() or any(tools))
