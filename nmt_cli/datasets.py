"""Getting Multi30k (task 1, raw) for the demo and the recipes: verify, or download.

``make data`` and ``make demo`` call ``python -m nmt_cli.datasets``: a directory that
already holds the files (``MULTI30K_DIR``) is checked against the pinned sha256 sums and
used in place; otherwise the files are downloaded from the Multi30k repository into
``--download-to`` and checked the same way. The sums are those of the upstream files in
github.com/multi30k/dataset, data/task1/raw.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path

from nmt_cli import io as nio
from nmt_cli import writing
from nmt_cli.errors import NmtError

URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{name}"
MULTI30K_SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
}


def verify(directory: Path) -> list[str]:
    """Names of the pinned files that are missing from ``directory`` or differ."""
    return [
        name
        for name, digest in MULTI30K_SHA256.items()
        if not (directory / name).is_file() or nio.sha256_file(directory / name) != digest
    ]


def download(directory: Path, names: list[str]) -> None:
    """Fetch ``names`` into ``directory``, each checked before it is renamed into place."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        print(f"downloading {URL.format(name=name)}", file=sys.stderr)
        try:
            with urllib.request.urlopen(URL.format(name=name), timeout=60) as response:
                data = response.read()
        except OSError as e:
            raise NmtError(f"cannot download {name} ({e}); set MULTI30K_DIR to a copy of data/task1/raw") from None
        with writing.atomic_file(directory / name, "wb") as f:
            f.write(data)
        if nio.sha256_file(directory / name) != MULTI30K_SHA256[name]:
            (directory / name).unlink()
            raise NmtError(f"{name}: downloaded file does not match its pinned sha256")


def ensure(directory: Path | None, download_to: Path) -> Path:
    """A directory holding the verified Multi30k files: ``directory`` or ``download_to``."""
    if directory is not None and directory.is_dir():
        bad = verify(directory)
        if bad:
            raise NmtError(f"{directory}: missing or changed Multi30k files: {', '.join(bad)}")
        return directory
    bad = verify(download_to)
    if bad:
        download(download_to, bad)
    return download_to


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nmt_cli.datasets", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="an existing copy of data/task1/raw (MULTI30K_DIR)")
    parser.add_argument("--download-to", type=Path, default=Path("data/multi30k"))
    parser.add_argument("--print-dir", action="store_true", help="print the directory to use on stdout")
    args = parser.parse_args(argv)
    try:
        directory = ensure(args.dir if args.dir and str(args.dir) else None, args.download_to)
    except NmtError as e:
        print(f"nmt: error: {e}", file=sys.stderr)
        return 2
    if args.print_dir:
        print(directory)
    else:
        print(f"Multi30k: {len(MULTI30K_SHA256)} files verified in {directory}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
