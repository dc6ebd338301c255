"""nmt: a command-line neural machine translation toolkit.

The package is laid out along the data flow: ``prep`` (clean text, subwords, id store)
-> ``train`` -> ``translate`` -> ``score``. ``cli`` is the thin Typer layer on top.
"""

__version__ = "0.1.0"
