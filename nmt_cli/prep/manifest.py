"""``manifest.json``: what a prep directory holds and exactly how it was made.

The manifest records the tool version, the resolved ``data`` options, every input
(path, sha256, line count), per split the lines read, pairs kept and drops per filter,
the vocabulary sizes, the special ids and every output file. Its ``fingerprint`` hashes
what determines the output (version, options, input contents), so re-running prep with
the same inputs and options is recognised as a no-op, and training can record which data
a model saw.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from nmt_cli import __version__
from nmt_cli.errors import NmtError

NAME = "manifest.json"
TOOL = "nmt prep"
# Where inputs live does not change the output (their contents are hashed instead).
PATH_OPTIONS = ("train", "valid", "test", "spm_model", "src_spm_model", "tgt_spm_model")


def fingerprint(options: dict[str, Any], inputs: list[dict[str, Any]], reused_models: dict[str, str]) -> str:
    """sha256 over the version, the options that shape the output and the input bytes."""
    key = {
        "version": __version__,
        "options": {k: v for k, v in options.items() if k not in PATH_OPTIONS},
        "inputs": [(i["split"], i["lang"], i["sha256"]) for i in inputs],
        "reused_models": reused_models,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def read(directory: Path) -> dict[str, Any] | None:
    """The manifest of a prep directory, or ``None`` when there is no (valid) one."""
    try:
        manifest = json.loads((directory / NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("tool") == TOOL else None


def load(directory: Path | str) -> dict[str, Any]:
    """The manifest of a prep directory that later stages read; a one-line error if absent."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NmtError(f"{directory}: no such prep directory (run `nmt prep` first)")
    manifest = read(directory)
    if manifest is None:
        raise NmtError(f"{directory}: not an nmt prep directory (no valid {NAME})")
    return manifest


def changed_files(directory: Path, manifest: dict[str, Any]) -> list[str]:
    """The files the manifest lists that are missing or differ from their recorded size
    and sha256 (a same-size change too: hashing a Multi30k prep takes milliseconds)."""
    from nmt_cli.io import sha256_file

    changed = []
    for name, info in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != info.get("bytes") or sha256_file(path) != info.get("sha256"):
            changed.append(name)
    return changed


def is_intact(directory: Path, manifest: dict[str, Any]) -> bool:
    """Every file the manifest lists is present with its recorded size and sha256."""
    return not changed_files(directory, manifest)


def write(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / NAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
