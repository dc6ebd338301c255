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


class Group(TyperGroup):
    """The root command: sets the process up, then maps the errors a command raises to one
    line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        setup()
        debug = ctx.params.get("debug", False)  # the root's --debug, of this invocation only
        try:
            return super().invoke(ctx)
        except NmtError as e:
            if debug:
                raise
            typer.echo(f"nmt: error: {_rank_tag()}{e}", err=True)
            raise typer.Exit(2) from None
        except (EnvError, OSError) as e:
            message = _environment_failure(e)
            if debug or message is None:
                raise
            typer.echo(f"nmt: error: {_rank_tag()}{message}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            if debug:
                raise
            typer.echo("nmt: interrupted", err=True)
            raise typer.Exit(130) from None


def run(app: typer.Typer) -> NoReturn:
    """Run ``app`` as the ``nmt`` process: like ``app()``, but usage errors are one line too."""
    from nmt_cli.io import named_stdout

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
        if (message := _environment_failure(e)) is None:
            raise
        typer.echo(f"nmt: error: {message}", err=True)
        code = 1
    _exit(code or 0)


def _environment_failure(error: Exception) -> str | None:
    """The one line for a failure of the system, or ``None`` for a bug and for a reader
    gone (EPIPE, which typer ends quietly). An OSError that names a file (``<stdout>``
    too, see ``io.named_stdout``) is the system's refusal: reads of the user's files are
    checked where they happen."""
    if not isinstance(error, OSError):
        return str(error)
    if error.errno == errno.EPIPE:
        return None
    return f"{error.filename}: {os_reason(error)}" if error.filename is not None else None


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
