"""nmt: a command-line neural machine translation toolkit.

The package is laid out along the data flow: ``prep`` (clean text, subwords, id store)
-> ``train`` -> ``translate`` -> ``score``. ``cli`` is the thin Typer layer on top, ``api``
the same for Python programs: ``from nmt_cli import Translator``. Importing the package
loads neither torch nor a stage, and changes nothing in the process.
"""

__version__ = "0.1.0"

# what ``from nmt_cli import NAME`` gives, from the module that defines it, imported at first use
_EXPORTS = {
    "Translator": "nmt_cli.api",
    "Translation": "nmt_cli.api",
    "NmtError": "nmt_cli.errors",
    "EnvError": "nmt_cli.errors",
}


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nmt_cli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
