"""Reading plain and gzipped UTF-8 text, scanning inputs (nmt_cli/io.py)."""

from __future__ import annotations

import gzip
import hashlib
import os
import threading

import pytest
from conftest import write_lines

from nmt_cli import io as nio
from nmt_cli.errors import NmtError

LINES = ["erste Zeile", "", "schöne Grüße ✓", "  spaces kept  ", "last"]


@pytest.fixture(params=[False, True], ids=["plain", "gz"])
def gz(request) -> bool:
    return request.param


# --------------------------------------------------------------------------- paths


def test_input_path_prefers_plain_then_gz(tmp_path):
    write_lines(tmp_path / "a.de", ["x"], gz=True)
    assert nio.input_path(tmp_path / "a", "de") == tmp_path / "a.de.gz"
    write_lines(tmp_path / "a.de", ["x"])
    assert nio.input_path(tmp_path / "a", "de") == tmp_path / "a.de"


def test_input_path_missing_names_both(tmp_path):
    with pytest.raises(NmtError, match=rf"^{tmp_path}/a\.de: no such file \(nor {tmp_path}/a\.de\.gz\)$"):
        nio.input_path(tmp_path / "a", "de")


def test_input_path_directory(tmp_path):
    (tmp_path / "a.de").mkdir()
    with pytest.raises(NmtError, match="a.de: is a directory, not a text file"):
        nio.input_path(tmp_path / "a", "de")


# --------------------------------------------------------------------------- reading


def test_read_lines_plain_and_gz(tmp_path, gz):
    path = write_lines(tmp_path / "t", LINES, gz=gz)
    assert path.name.endswith(".gz") == gz
    assert list(nio.read_lines(path)) == LINES


def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(gzip.compress(b"a\nb\n"))
    assert list(nio.read_lines(path)) == ["a", "b"]


def test_last_line_without_newline(tmp_path, gz):
    data = b"a\nb"
    path = tmp_path / ("t.gz" if gz else "t")
    path.write_bytes(gzip.compress(data) if gz else data)
    assert list(nio.read_lines(path)) == ["a", "b"]
    assert nio.scan_file(path).lines == 2


def test_crlf_lines(tmp_path, gz):
    path = write_lines(tmp_path / "t", ["a b", "", "c"], gz=gz, newline="\r\n")
    assert list(nio.read_lines(path)) == ["a b", "", "c"]
    assert nio.scan_file(path).lines == 3


def test_bom_stripped_from_first_line_only(tmp_path, gz):
    path = write_lines(tmp_path / "t", ["\ufeffa", "\ufeffb"], gz=gz)
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf" or gz
    assert list(nio.read_lines(path)) == ["a", "\ufeffb"]


def test_invalid_utf8_error_names_file_line_and_byte(tmp_path, gz):
    path = write_lines(tmp_path / "t", ["ok", "ok", b"ab\xffc"], gz=gz)
    with pytest.raises(NmtError) as e:
        list(nio.read_lines(path, hint="; a hint"))
    assert str(e.value) == f"{path}:3: invalid UTF-8 (byte 0xff at byte 3); a hint"


def test_invalid_utf8_replace(tmp_path):
    path = write_lines(tmp_path / "t", [b"a\xc3b", "ok"])
    assert list(nio.read_lines(path, on_invalid="replace")) == ["a\ufffdb", "ok"]


def test_decode_line():
    assert nio.decode_line(b"x\r\n", "f", 2, "error") == ("x", False)
    assert nio.decode_line(b"\xef\xbb\xbfx\n", "f", 1, "error") == ("x", False)
    assert nio.decode_line(b"\xff\n", "f", 1, "replace") == ("\ufffd", True)


@pytest.mark.parametrize("reader", [lambda p: list(nio.read_lines(p)), nio.scan_file], ids=["read_lines", "scan_file"])
def test_missing_file(tmp_path, reader):
    with pytest.raises(NmtError, match="nope: no such file"):
        reader(tmp_path / "nope")


@pytest.mark.parametrize("reader", [lambda p: list(nio.read_lines(p)), nio.scan_file], ids=["read_lines", "scan_file"])
def test_truncated_gz(tmp_path, reader):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(("word " * 2000 + "\n").encode() * 10)[:-30])
    with pytest.raises(NmtError, match=r"t\.gz: cannot read: "):
        reader(path)


@pytest.mark.parametrize("reader", [lambda p: list(nio.read_lines(p)), nio.scan_file], ids=["read_lines", "scan_file"])
def test_corrupt_gz(tmp_path, reader):
    raw = gzip.compress(" ".join(str(i) for i in range(5000)).encode())
    path = tmp_path / "t.gz"
    path.write_bytes(raw[:20] + bytes(b ^ 0xFF for b in raw[20:60]) + raw[60:])
    with pytest.raises(NmtError, match="cannot read"):
        reader(path)


# --------------------------------------------------------------------------- scanning


def test_scan_file_hash_and_lines(tmp_path, gz):
    path = write_lines(tmp_path / "t", LINES, gz=gz)
    info = nio.scan_file(path)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()  # the .gz itself for .gz
    assert info.sha256 == nio.sha256_file(path)
    assert (info.path, info.lines, info.invalid_utf8_lines) == (str(path.resolve()), len(LINES), 0)


def test_scan_file_hashes_bytes_after_the_gzip_stream(tmp_path):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(b"a\nb\n") + b"\x00" * 16)  # zero padding after the stream
    info = nio.scan_file(path)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.lines == 2


def test_scan_file_large_plain_file(tmp_path):
    """More than one read chunk (1 MiB): hash and line count still cover every byte."""
    path = write_lines(tmp_path / "big", [f"line {i} " + "x" * 100 for i in range(12_000)])
    assert path.stat().st_size > 1 << 20
    info = nio.scan_file(path)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.lines == 12_000


def test_scan_file_invalid_utf8(tmp_path, capsys):
    path = write_lines(tmp_path / "t", ["ok", b"\xff"])
    with pytest.raises(NmtError, match=r":2: invalid UTF-8"):
        nio.scan_file(path)
    info = nio.scan_file(path, on_invalid="replace")
    assert (info.lines, info.invalid_utf8_lines) == (2, 1)
    assert capsys.readouterr().err == f"nmt: warning: {path}:2: invalid UTF-8 replaced with U+FFFD\n"


def test_scan_file_warns_about_five_lines_then_sums_up(tmp_path, capsys):
    path = write_lines(tmp_path / "t", [b"\xff"] * 8)
    assert nio.scan_file(path, on_invalid="replace").invalid_utf8_lines == 8
    err = capsys.readouterr().err.splitlines()
    assert err[:5] == [f"nmt: warning: {path}:{n}: invalid UTF-8 replaced with U+FFFD" for n in range(1, 6)]
    assert err[5:] == [f"nmt: warning: {path}: 8 lines in all had invalid UTF-8 replaced with U+FFFD"]


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gz"])
def test_a_pipe_is_read_once_and_whole(tmp_path, compressed):
    """A FIFO (what `nmt score -r <(zcat ref.gz)` hands over) can be read only once: telling
    gzip from plain text must not take its first bytes."""

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    text = b"ein Hund\nzwei Katzen\n"
    data = gzip.compress(text) if compressed else text

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=write)
    writer.start()
    assert list(nio.read_lines(fifo)) == ["ein Hund", "zwei Katzen"]
    writer.join()
