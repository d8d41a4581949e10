"""Read-only and full output file systems: every command prints one ``ERROR:`` line that names
the path, exits 1, shows no traceback and leaves no half-written output.

The real-file-system variants mount a tmpfs in a private mount namespace (``unshare -rm``);
tests run as root, where ``chmod`` does not block writes. Where namespaces are not permitted
they are skipped and the in-process variants (a simulated ``OSError``) still run.
"""
from __future__ import annotations

import errno
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from osoup.fileio import DataError, os_error_message, run_command
from test_decode_long import HEAD, packed_model, write_wav

ENV = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "UTF-8"}


def _namespaces_work() -> bool:
    try:
        r = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


needs_mount_ns = pytest.mark.skipif(not _namespaces_work(),
                                    reason="no user+mount namespaces here (unshare -rm), cannot mount a test tmpfs")


def _run_on_tmpfs(mnt: Path, mode: str, argv: list[str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``argv`` with a 64 KiB tmpfs on ``mnt`` that is read-only (``ro``) or full (``full``);
    also returns what the tmpfs held afterwards (it vanishes with the namespace)."""
    m = shlex.quote(str(mnt))
    setup = f"mount -t tmpfs -o size=64k tmpfs {m}"
    if mode == "ro":
        setup += f" && mount -o remount,ro {m}"
    else:
        setup += f" && (dd if=/dev/zero of={m}/fill bs=1k count=128 2>/dev/null; true)"
    script = f"{setup} && {{ {shlex.join(argv)}; rc=$?; ls -A {m} | sed 's/^/LS: /' >&2; exit $rc; }}"
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                       timeout=300, env=ENV)
    return r, [ln[4:] for ln in r.stderr.splitlines() if ln.startswith("LS: ")]


def _one_error_line(r: subprocess.CompletedProcess, path: Path, reason: str) -> str:
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("ERROR:")]
    assert len(errors) == 1, r.stderr
    assert str(path) in errors[0] and reason in errors[0], errors[0]
    return errors[0]


# -- run_command -------------------------------------------------------------------------------
def test_run_command_turns_os_errors_into_one_error_line(capsys):
    def full():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/hyp.txt")

    def renamed():
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/a/.x.tmp", None, "/a/x")

    assert run_command(full) == 1
    assert capsys.readouterr().err == "ERROR: /data/out/hyp.txt: No space left on device\n"
    assert run_command(renamed) == 1
    assert capsys.readouterr().err == "ERROR: /a/.x.tmp -> /a/x: Read-only file system\n"
    assert os_error_message(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert run_command(lambda: None) == 0
    with pytest.raises(ValueError):  # programming errors still show their traceback
        run_command(lambda: (_ for _ in ()).throw(ValueError("bug")))
    assert run_command(lambda: (_ for _ in ()).throw(DataError("x.scp: bad"))) == 1
    assert capsys.readouterr().err == "ERROR: x.scp: bad\n"


def test_decode_full_disk_simulated_names_output(tmp_path, monkeypatch, capsys):
    """The in-process variant: the hypothesis write fails as on a full disk (no file name)."""
    import osoup.bin.decode as dec

    pack = packed_model(tmp_path)
    wav = write_wav(tmp_path / "a.wav", 0.5)
    out = tmp_path / "out" / "hyp.txt"
    real = dec.atomic_write

    class FullFile:
        def __init__(self, f):
            self.f = f

        def writelines(self, lines):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_atomic_write(path, mode="w"):
        import contextlib

        @contextlib.contextmanager
        def cm():
            with real(path, mode) as f:
                yield FullFile(f)
        return cm()

    monkeypatch.setattr(dec, "atomic_write", full_atomic_write)
    assert dec.main(["--packed", str(pack), "--head", HEAD, "--out", str(out), str(wav)]) == 1
    err = capsys.readouterr().err
    assert f"ERROR: {out}: No space left on device" in err and "Traceback" not in err
    assert not out.exists() and list(out.parent.iterdir()) == []


# -- real file systems -------------------------------------------------------------------------
@needs_mount_ns
@pytest.mark.parametrize("mode,reason", [("ro", "Read-only file system"), ("full", "No space left on device")])
def test_decode_on_readonly_or_full_fs(tmp_path, mode, reason):
    pack = packed_model(tmp_path)
    wav = write_wav(tmp_path / "a.wav", 0.5)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = mnt / "hyp.txt"
    r, left = _run_on_tmpfs(mnt, mode, [sys.executable, "-m", "osoup.bin.decode", "--packed", str(pack),
                                        "--head", HEAD, "--out", str(out), str(wav)])
    line = _one_error_line(r, out, reason)
    assert ".tmp" not in line  # the user's path, not the temporary file
    assert left == ([] if mode == "ro" else ["fill"])  # nothing half-written, no temp file left


@needs_mount_ns
def test_stage1_prep_on_readonly_fs(tmp_path):
    from corpus_fixtures import build_librispeech

    root = build_librispeech(tmp_path / "corpus")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r, left = _run_on_tmpfs(mnt, "ro", [sys.executable, "-m", "osoup.bin.prep_librispeech", "--root",
                                        str(root / "LibriSpeech"), "--parts", "dev-clean:dev",
                                        "--out", str(mnt / "data"), "--nj", "1"])
    _one_error_line(r, mnt / "data", "Read-only file system")
    assert left == []


@needs_mount_ns
def test_stage1_prep_on_full_fs_names_the_file(tmp_path):
    from corpus_fixtures import build_librispeech

    root = build_librispeech(tmp_path / "corpus")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r, _ = _run_on_tmpfs(mnt, "full", [sys.executable, "-m", "osoup.bin.prep_librispeech", "--root",
                                       str(root / "LibriSpeech"), "--parts", "dev-clean:dev",
                                       "--out", str(mnt / "data"), "--nj", "1"])
    _one_error_line(r, mnt / "data" / "dev_en", "No space left on device")


@needs_mount_ns
@pytest.mark.parametrize("mode, reason", [("ro", "Read-only file system"), ("full", "No space left on device")])
def test_train_on_readonly_or_full_fs(mini_recipe, tmp_path, mode, reason):
    """osoup-train whose experiment dir cannot be written: one ERROR line naming the path, and no
    half-written model or checkpoint (a full disk fails inside torch.save, which reports it as a
    RuntimeError; the command still names the file)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    exp = mnt / "exp"
    argv = [sys.executable, "-m", "osoup.bin.train", "--exp-dir", str(exp), "--method", "joint",
            "--asr-langs", "fr", "--st-langs", "fr", "--ssl", "none", "--dump-dir", str(mini_recipe / "dump"),
            "--token-dir", str(mini_recipe / "data" / "token"), "--epochs", "1", "--steps-per-epoch", "1",
            "--max-frames", "3000", "--max-utts", "8", "--threads", "1", "--verbose", "0"]
    cwd = os.getcwd()
    os.chdir(mini_recipe)  # feature paths in the scp files are relative to the recipe dir
    try:
        r, left = _run_on_tmpfs(mnt, mode, argv)
    finally:
        os.chdir(cwd)
    line = _one_error_line(r, exp, reason)
    assert ".tmp" not in line
    if mode == "full":
        assert not [n for n in left if n.endswith(".pt") or ".tmp" in n], left
