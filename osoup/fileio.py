"""Small file helpers shared by every layer: atomic writes, strict UTF-8 reading, logging.

Everything that writes an output a later stage trusts goes through :func:`atomic_write`, so a
process killed midway never leaves a file that looks complete.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, TextIO


class DataError(Exception):
    """Bad user input (corpus, data dir, config). The message names the file/line and the problem."""


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (pytest swaps it between tests)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def run_command(body: Callable[[], None]) -> int:
    """Run a command's work: a DataError becomes one ``ERROR: <message>`` line on stderr and
    exit status 1 (no traceback); success is 0. An OSError (read-only file system, disk full,
    permission denied) does the same with the path and the system's reason."""
    try:
        body()
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ERROR: {os_error_message(e)}", file=sys.stderr)
        return 1
    return 0


def os_error_message(e: OSError) -> str:
    """``<path>: <reason>`` (``<path> -> <path2>`` for a rename) from an OSError."""
    reason = e.strerror or str(e)
    if e.filename is None:
        return reason
    paths = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else f"{e.filename}"
    return f"{paths}: {reason}"


def setup_logging(verbose: int = 1, log_file: str | Path | None = None) -> None:
    """Kaldi/ESPnet-like log lines: time, level, module:line, message."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    fmt = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
    handlers: list[logging.Handler] = [_StderrHandler()]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(level=level, format=fmt, handlers=handlers, force=True)
    # A log file that cannot be written (full disk) must not print a traceback per line: the
    # command reports the failed write itself, in one ERROR line naming the path.
    logging.raiseExceptions = False


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[TextIO]:
    """Open a temporary file next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if "b" in mode:
            f = os.fdopen(fd, mode)
        else:
            f = os.fdopen(fd, mode, encoding="utf-8", newline="\n")
        with f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is not None and (e.filename is None or e.filename == tmp):
            raise OSError(e.errno, e.strerror, str(path)) from e  # name the output, not the temp file
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)


def read_text_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file without their newline; non-UTF-8 bytes raise DataError
    naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for i, raw in enumerate(lines, 1):
        try:
            out.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{i}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    return out


def read_scp(path: str | Path, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a ``key value`` file (Kaldi scp/text style) into an ordered dict; duplicate keys and
    malformed lines raise DataError naming the file and line."""
    out: dict[str, str] = {}
    for i, line in enumerate(read_text_lines(path), 1):
        if not line.strip():
            raise DataError(f"{path}:{i}: empty line")
        key, _, value = line.partition(" ")
        value = value.strip()
        if not key:
            raise DataError(f"{path}:{i}: line starts with a space: {line!r}")
        if not value and not allow_empty_value:
            raise DataError(f"{path}:{i}: key {key!r} has no value")
        if key in out:
            raise DataError(f"{path}:{i}: duplicate key {key!r}")
        out[key] = value
    return out
