"""The shared stage script egs/TEMPLATE/asr.sh: stage signatures, locks and option strings.

Stage 1 runs the real CoVoST 2 recipe on the tiny corpus of ``corpus_fixtures.build_covost``
(Common Voice 4 + CoVoST 2 layout, en fr zh only). Stage 6 and the lock run in a stand-in recipe
whose ``osoup-train`` and ``local/data.sh`` only record how they were called, so the tests check
the script's bookkeeping in seconds without training anything.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus_fixtures as cf  # noqa: E402
from conftest import REPO, recipe_env  # noqa: E402

from osoup.data.datadir import read_scp  # noqa: E402

ASR_SH = REPO / "egs" / "TEMPLATE" / "asr.sh"


def _run(cwd: Path, args: list[str], env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- stage 1 of egs/covost2


@pytest.fixture
def covost_recipe(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """A copy of egs/covost2 (next to TEMPLATE and utils) and the environment naming the tiny corpus."""
    cv_root, covost_root = cf.build_covost(tmp_path / "corpus")
    egs = tmp_path / "egs"
    shutil.copytree(REPO / "egs" / "TEMPLATE", egs / "TEMPLATE")
    shutil.copytree(REPO / "egs" / "covost2", egs / "covost2", symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp"))
    (tmp_path / "utils").symlink_to(REPO / "utils")
    env = dict(recipe_env(), COMMONVOICE=str(cv_root), COVOST2=str(covost_root))
    return egs / "covost2", env, cv_root


# The fixture plants bad rows on purpose (3 of train_fr's 5 are bad): allow them.
STAGE1 = ["run.sh", "--asr-langs", "en fr", "--st-langs", "fr", "--stage", "1", "--stop-stage", "1",
          "--local-data-opts", "--max-bad-frac 0.6"]


def test_covost2_language_subset_restricts_data_stage(covost_recipe) -> None:
    """--asr-langs/--st-langs reach local/data.sh: the corpus has no de, es or ca, and no one asks."""
    recipe, env, _ = covost_recipe
    r = _run(recipe, STAGE1, env)
    assert r.returncode == 0, r.stderr[-3000:]
    made = sorted(p.name for p in (recipe / "data").iterdir() if not p.name.startswith("."))
    assert made == ["dev_en", "dev_fr", "test_en", "test_fr", "train_en", "train_fr"]
    assert (recipe / "data" / "train_fr" / "text.en").is_file()
    assert not (recipe / "data" / "train_en" / "text.en").exists()


def test_stage1_reruns_when_the_corpus_changes(covost_recipe) -> None:
    recipe, env, cv_root = covost_recipe
    r = _run(recipe, STAGE1, env)
    assert r.returncode == 0, r.stderr[-3000:]
    text_fr = recipe / "data" / "train_fr" / "text"
    before = text_fr.stat().st_mtime_ns

    r = _run(recipe, STAGE1, env)  # nothing changed: skipped
    assert r.returncode == 0 and "Stage 1: data dirs already prepared" in r.stderr, r.stderr[-3000:]
    assert text_fr.stat().st_mtime_ns == before

    tsv = cv_root / "fr" / "validated.tsv"
    tsv.write_text(tsv.read_text(encoding="utf-8").replace('Il a dit "non".', 'Il a dit "oui".'), encoding="utf-8")
    r = _run(recipe, STAGE1, env)
    assert r.returncode == 0 and "Stage 1: data preparation" in r.stderr, r.stderr[-3000:]
    assert read_scp(text_fr)["aa11-common_voice_fr_3"] == 'Il a dit "oui".'

    (cv_root / "en" / "clips" / "common_voice_en_2.mp3").unlink()  # a deleted clip
    r = _run(recipe, STAGE1, env)
    assert r.returncode == 0 and "Stage 1: data preparation" in r.stderr, r.stderr[-3000:]
    assert sorted(read_scp(recipe / "data" / "train_en" / "text")) == ["dd44-common_voice_en_1"]

    r = _run(recipe, [*STAGE1[:-1], "--max-bad-frac 0.7"], env)  # another option of local/data.sh
    assert r.returncode == 0 and "Stage 1: data preparation" in r.stderr, r.stderr[-3000:]


def test_stage1_names_a_missing_corpus_root(covost_recipe) -> None:
    recipe, env, _ = covost_recipe
    del env["COVOST2"]
    r = _run(recipe, STAGE1, env)
    assert r.returncode == 1
    assert "COVOST2 is not set" in r.stderr
    assert not (recipe / "data" / ".stage1.done").exists()


# ------------------------------------------------- a stand-in recipe: lock, options, stage 6

FAKE_DATA_SH = """\
#!/usr/bin/env bash
# Stand-in stage 1: records its arguments; waits for ./go when asked to.
set -euo pipefail
list_inputs=false asr_langs="" st_langs="" ssl_sets="" nj=1 wait_for_go=false x=""
. utils/parse_options.sh
if [ "$list_inputs" = true ]; then exit 0; fi
printf '%s\\n' "$asr_langs" "$st_langs" "$x" > data_sh_args
if [ "$wait_for_go" = true ]; then while [ ! -e go ]; do sleep 0.05; done; fi
exit 3
"""

FAKE_TRAIN = """\
#!/usr/bin/env bash
# Stand-in osoup-train: records its arguments and leaves a checkpoint in --exp-dir.
# TRAIN_FAIL=DIR: the run of that --exp-dir fails. TRAIN_MEET=D: each run waits (up to 20 s,
# else fails) until another run has arrived too, which only runs side by side can do.
printf '%s\\n' "$*" >> "$TRAIN_CALLS"
args=("$@")
while [ $# -gt 0 ]; do
  if [ "$1" = --exp-dir ]; then
    if [ "$2" = "${TRAIN_FAIL:-}" ]; then echo "stand-in training of $2 fails" >&2; exit 5; fi
    mkdir -p "$2" && printf '%s\\n' "${args[*]}" > "$2/latest.pt"
  fi
  shift
done
if [ -n "${TRAIN_PIDS:-}" ]; then echo "$$" >> "$TRAIN_PIDS"; fi
if [ -n "${TRAIN_SLEEP:-}" ]; then
  echo "2026-12-03 08:00:00,000 (progress:110) INFO: epoch 1 step 5/10 | loss=1.0 | ETA 7s" >&2; sleep "$TRAIN_SLEEP"
fi
if [ -n "${TRAIN_MEET:-}" ]; then
  mkdir -p "$TRAIN_MEET" && touch "$TRAIN_MEET/$$"
  for _ in $(seq 200); do [ "$(ls "$TRAIN_MEET" | wc -l)" -ge 2 ] && exit 0; sleep 0.1; done
  echo "alone" >&2; exit 4
fi
"""

FAKE_LATER = """\
#!/usr/bin/env bash
# Stand-in osoup-decode, osoup-score and osoup-results: record the call; results writes --out/RESULTS.md.
printf '%s %s\\n' "${0##*/}" "$*" >> "$LATER_CALLS"
while [ $# -gt 0 ]; do
  if [ "$1" = --out ]; then mkdir -p "$2" && echo "| method |" > "$2/RESULTS.md"; fi
  shift
done
"""


@pytest.fixture
def fake_recipe(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A recipe dir whose local/data.sh and osoup-train (first on PATH via OSOUP_ROOT) are stand-ins,
    with the markers of stages 1-5 for ASR in English already in place."""
    root = tmp_path / "root"  # what path.sh takes for the repository: its venv is the stand-in's
    venv_bin = root / "tools" / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    (venv_bin / "osoup-train").write_text(FAKE_TRAIN, encoding="utf-8")
    (venv_bin / "osoup-train").chmod(0o755)
    for name in ("osoup-decode", "osoup-score", "osoup-results"):
        (venv_bin / name).write_text(FAKE_LATER, encoding="utf-8")
        (venv_bin / name).chmod(0o755)
    (root / "utils").symlink_to(REPO / "utils")
    recipe = tmp_path / "recipe"
    (recipe / "local").mkdir(parents=True)
    (recipe / "path.sh").symlink_to(REPO / "egs" / "TEMPLATE" / "path.sh")
    (recipe / "utils").symlink_to(REPO / "utils")
    (recipe / "db.sh").write_text("# shellcheck shell=bash\n", encoding="utf-8")
    (recipe / "local" / "data.sh").write_text(FAKE_DATA_SH, encoding="utf-8")
    (recipe / "local" / "data.sh").chmod(0o755)
    (recipe / "conf").mkdir()
    (recipe / "conf" / "train.yaml").write_text("epochs: 1\n", encoding="utf-8")
    for marker in ("dump/fbank/global_cmvn.json.done", "data/token/asr_en/.done", "dump/asr/train_en/.done",
                   "dump/asr/dev_en/.done", "dump/fbank/train_en/.done"):
        (recipe / marker).parent.mkdir(parents=True, exist_ok=True)
        (recipe / marker).write_text("sig\n", encoding="utf-8")
    env = dict(recipe_env(), OSOUP_ROOT=str(root), TRAIN_CALLS=str(tmp_path / "train_calls"),
               LATER_CALLS=str(tmp_path / "later_calls"))
    return recipe, env


def _calls(env: dict[str, str]) -> list[str]:
    path = Path(env["TRAIN_CALLS"])
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


STAGE6 = [str(ASR_SH), "--asr-langs", "en", "--stage", "6", "--stop-stage", "6", "--method", "vs", "--ngpu", "0"]


def test_stage6_signature(fake_recipe) -> None:
    recipe, env = fake_recipe
    exp = recipe / "exp" / "vs"
    r = _run(recipe, STAGE6, env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(_calls(env)) == 1 and "--method vs" in _calls(env)[0] and "--resume" in _calls(env)[0]
    assert (exp / ".train.done").is_file() and not (exp / ".train.progress").exists()

    r = _run(recipe, STAGE6, env)  # unchanged: skipped
    assert r.returncode == 0 and "Stage 6: exp/vs already trained" in r.stderr, r.stderr[-3000:]
    assert len(_calls(env)) == 1

    # another config: trained again, the old experiment kept aside
    (recipe / "conf" / "train.yaml").write_text("epochs: 2\n", encoding="utf-8")
    r = _run(recipe, STAGE6, env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(_calls(env)) == 2 and "moving it to exp/vs.old1" in r.stderr
    assert (recipe / "exp" / "vs.old1" / "latest.pt").is_file() and (exp / ".train.done").is_file()

    # other options, or changed inputs of stages 1-5, also retrain
    r = _run(recipe, [*STAGE6, "--train-opts", "--epochs 3"], env)
    assert r.returncode == 0 and len(_calls(env)) == 3, r.stderr[-3000:]
    assert _calls(env)[-1].endswith("--resume --epochs 3") and (recipe / "exp" / "vs.old2").is_dir()
    (recipe / "dump" / "asr" / "train_en" / ".done").write_text("other sig\n", encoding="utf-8")
    r = _run(recipe, [*STAGE6, "--train-opts", "--epochs 3"], env)
    assert r.returncode == 0 and len(_calls(env)) == 4 and (recipe / "exp" / "vs.old3").is_dir()


def test_stage6_killed_run_resumes_in_place(fake_recipe) -> None:
    recipe, env = fake_recipe
    exp = recipe / "exp" / "vs"
    assert _run(recipe, STAGE6, env).returncode == 0
    # Pretend the run was killed: its progress marker (same signature) instead of the done marker.
    (exp / ".train.done").rename(exp / ".train.progress")
    r = _run(recipe, STAGE6, env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(_calls(env)) == 2 and "moving" not in r.stderr and not (recipe / "exp" / "vs.old1").exists()
    assert (exp / "latest.pt").is_file() and (exp / ".train.done").is_file()


def test_stages_7_to_9_pass_options_as_words(fake_recipe) -> None:
    """Two methods trained (stand-in), then decoded with --decode-opts, scored and compared."""
    recipe, env = fake_recipe
    args = [str(ASR_SH), "--asr-langs", "en", "--stage", "6", "--stop-stage", "9", "--methods", "vs vm:asr>ssl",
            "--ngpu", "0", "--decode-opts", "--batch-frames 100 --device cpu"]
    r = _run(recipe, args, env)
    assert r.returncode == 0, r.stderr[-3000:]
    calls = Path(env["LATER_CALLS"]).read_text(encoding="utf-8").splitlines()
    assert [c.split()[0] for c in calls] == ["osoup-decode"] * 2 + ["osoup-score"] * 2 + ["osoup-results"]
    assert "--exp-dir exp/vm_asr-ssl " in calls[1] and calls[1].endswith("--tag greedy --batch-frames 100 --device cpu")
    assert "--label vm:asr>ssl" in calls[3]
    assert "--exps exp/vs exp/vm_asr-ssl --labels vs vm:asr>ssl --out exp/RESULTS_compare" in calls[4]
    assert "| method |" in r.stdout  # the comparison table is shown


def test_stage6_names_missing_inputs(fake_recipe) -> None:
    recipe, env = fake_recipe
    (recipe / "data" / "token" / "asr_en" / ".done").unlink()
    r = _run(recipe, STAGE6, env)
    assert r.returncode == 1
    assert "stage 6 needs data/token/asr_en/.done: run stages 1-5 first" in r.stderr
    assert _calls(env) == []


def test_option_strings_are_split_not_evaluated(fake_recipe) -> None:
    recipe, env = fake_recipe
    args = [str(ASR_SH), "--asr-langs", "en fr", "--stage", "1", "--stop-stage", "1"]
    r = _run(recipe, [*args, "--local-data-opts", "--x $(touch${IFS}pwned)"], env)
    assert r.returncode != 0  # the stand-in data.sh fails after recording its arguments
    assert (recipe / "data_sh_args").read_text(encoding="utf-8").splitlines() == ["en fr", "", "$(touch${IFS}pwned)"]
    assert not (recipe / "pwned").exists()
    r = _run(recipe, [*args, "--local-data-opts", "--x 'a b'"], env)
    assert r.returncode == 1
    assert "--local-data-opts '--x 'a b'': quotes and backslashes are not interpreted" in r.stderr


def test_second_run_of_a_stage_stops_at_once(fake_recipe) -> None:
    """Two concurrent invocations: the first holds stage 1 (its data.sh waits), the second says
    which PID holds the lock and exits 1 without waiting; the lock dies with its holder."""
    recipe, env = fake_recipe
    args = [str(ASR_SH), "--asr-langs", "en", "--stage", "1", "--stop-stage", "1", "--local-data-opts",
            "--wait-for-go true"]
    lock = recipe / "data" / ".lock" / "stage1"
    first = subprocess.Popen(["bash", *args], cwd=recipe, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (recipe / "data_sh_args").exists():  # the first run is inside stage 1
            assert time.time() < deadline and first.poll() is None, "the first run never reached local/data.sh"
            time.sleep(0.05)
        assert lock.read_text(encoding="utf-8").strip() == str(first.pid)
        start = time.time()
        second = _run(recipe, args, env, timeout=60)
        assert second.returncode == 1
        assert f"ERROR: another run (PID {first.pid}) holds the lock of stage 1 in {recipe}" in second.stderr
        assert time.time() - start < 30  # it did not wait for the first run
    finally:
        (recipe / "go").touch()
        first.wait(timeout=60)
    with open(lock, "a", encoding="utf-8") as f:  # free again once its holder has exited
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_lock_held_by_another_process(fake_recipe) -> None:
    """Any process holding the lock file with flock(2) blocks the stage, and its PID is named."""
    recipe, env = fake_recipe
    lock = recipe / "data" / ".lock" / "stage6.vs"
    lock.parent.mkdir(parents=True)
    with open(lock, "w", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_EX)
        r = _run(recipe, STAGE6, env)
    assert r.returncode == 1
    assert f"another run (PID {os.getpid()}) holds the lock of stage 6 of exp/vs" in r.stderr
    assert _calls(env) == []


def test_recipes_pass_languages_not_corpus_knowledge_to_template() -> None:
    """The template names no corpus: its corpus roots and files come from the recipes."""
    text = ASR_SH.read_text(encoding="utf-8")
    for name in ("COMMONVOICE", "COVOST2", "LIBRISPEECH", "AISHELL", "eval "):
        assert name not in text, name
    run_sh = (REPO / "egs" / "covost2" / "run.sh").read_text(encoding="utf-8")
    assert "--local-data-opts" not in run_sh


def test_librispeech_aishell_lists_its_inputs(tmp_path: Path) -> None:
    """local/data.sh --list-inputs of egs/librispeech_aishell: transcripts, SPEAKERS.TXT, the
    speaker/chapter dirs of the parts asked for, AISHELL's transcript and tarballs."""
    root = cf.build_librispeech(tmp_path / "ls")
    cf.build_aishell(tmp_path / "ai")
    env = dict(recipe_env(), LIBRISPEECH=str(root), AISHELL=str(tmp_path / "ai"))
    recipe = REPO / "egs" / "librispeech_aishell"
    r = _run(recipe, ["local/data.sh", "--list-inputs", "true", "--ssl-sets", "ssl_train-clean-360_en"], env)
    assert r.returncode == 0, r.stderr
    listed = set(r.stdout.splitlines())
    ls = root / "LibriSpeech"
    ai = tmp_path / "ai" / "data_aishell"
    expected = {ls / "SPEAKERS.TXT", ls / "train-clean-100" / "103" / "1240",
                ls / "train-clean-100" / "103" / "1240" / "103-1240.trans.txt", ls / "train-clean-360" / "14" / "208",
                ai / "transcript" / "aishell_transcript_v0.8.txt", ai / "wav" / "S0002.tar.gz",
                ai / "wav" / "test" / "S0764"}
    assert {str(p) for p in expected} <= listed
    assert not any(p.endswith(".flac") or p.endswith(".wav") for p in listed)  # audio files are not listed
    r = _run(recipe, ["local/data.sh", "--list-inputs", "true", "--asr-langs", "zh"], env)
    assert r.returncode == 0 and str(ls / "SPEAKERS.TXT") not in r.stdout
    r = _run(recipe, ["local/data.sh", "--list-inputs", "true", "--asr-langs", "en fr"], env)
    assert r.returncode == 1 and "'fr': this recipe has en (LibriSpeech) and zh (AISHELL-1)" in r.stderr


@pytest.mark.parametrize("recipe", ["covost2", "librispeech_aishell", "mini_soup"])
def test_recipe_help(recipe: str) -> None:
    r = _run(REPO / "egs" / recipe, ["run.sh", "--help"], recipe_env(), timeout=60)
    assert r.returncode == 0 and "--local-data-opts" in r.stdout and "--decode-opts" in r.stdout


def test_stage_lib_inputs_checksum(tmp_path: Path) -> None:
    """Size or mtime of a listed file, an entry added to a listed dir, a missing path: each changes it."""
    lib = REPO / "utils" / "stage_lib.sh"
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("abc", encoding="utf-8")
    listing = f"{tmp_path / 'f'}\n{tmp_path / 'd'}\n"

    def checksum() -> str:
        r = subprocess.run(["bash", "-c", f"log() {{ :; }}; . {lib}; inputs_checksum"], input=listing,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    seen = [checksum()]
    assert checksum() == seen[0]
    os.utime(tmp_path / "f", ns=(1, 1))
    seen.append(checksum())
    (tmp_path / "d" / "clip.mp3").write_bytes(b"x")
    seen.append(checksum())
    (tmp_path / "f").unlink()
    seen.append(checksum())
    assert len(set(seen)) == len(seen) and all(len(s) == 32 for s in seen)


def test_stage_lib_split_opts() -> None:
    lib = REPO / "utils" / "stage_lib.sh"
    script = textwrap.dedent(f"""\
        log() {{ echo "$*" >&2; }}
        . {lib}
        split_opts a some-opts "$1" || exit 1
        printf '<%s>' "${{a[@]}}"
        """)
    r = subprocess.run(["bash", "-c", script, "x", "  --a 1   --b * "], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout == "<--a><1><--b><*>"  # no glob expansion either
    r = subprocess.run(["bash", "-c", script, "x", '--a "1 2"'], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "--some-opts" in r.stderr


# ------------------------------------------- baselines, --init-from and stage 11 (stand-ins)
def _add_markers(recipe: Path, *markers: str) -> None:
    for marker in markers:
        (recipe / marker).parent.mkdir(parents=True, exist_ok=True)
        (recipe / marker).write_text("sig\n", encoding="utf-8")


def _later_calls(env: dict[str, str]) -> list[str]:
    return Path(env["LATER_CALLS"]).read_text(encoding="utf-8").splitlines()


def test_single_and_static_sweep_experiments(fake_recipe) -> None:
    """single: one experiment per supervised objective, trained alone, decoded on its own
    language's test sets, compared under one label; static_sweep: one joint experiment per grid
    point, compared with --sweep-labels; --resources reaches stage 9 unless turned off."""
    recipe, env = fake_recipe
    _add_markers(recipe, "data/token/asr_fr/.done", "dump/asr/train_fr/.done", "dump/asr/dev_fr/.done",
                 "dump/fbank/train_fr/.done", "data/token/st_en/.done", "dump/st/train_fr/.done",
                 "dump/st/dev_fr/.done")
    args = [str(ASR_SH), "--asr-langs", "en fr", "--st-langs", "fr", "--stage", "6", "--stop-stage", "9",
            "--methods", "single static_sweep", "--static-grid", "asr:0.7,st:0.3 asr:0.5,st:0.5", "--ngpu", "0"]
    r = _run(recipe, args, env)
    assert r.returncode == 0, r.stderr[-3000:]
    calls = _calls(env)
    dirs = [c.split("--exp-dir ")[1].split()[0] for c in calls]
    assert dirs == ["exp/single_asr_en", "exp/single_asr_fr", "exp/single_st_fr",
                    "exp/static_sweep_asr0.7-st0.3", "exp/static_sweep_asr0.5-st0.5"]
    assert "--method joint" in calls[0] and "--asr-langs en --st-langs  --dump-dir" in calls[0]
    assert "--asr-langs  --st-langs fr --dump-dir" in calls[2]
    assert "--asr-langs en fr --st-langs fr" in calls[3] and "--task-weights asr:0.7,st:0.3 --resume" in calls[3]
    later = _later_calls(env)
    decode = [c for c in later if c.startswith("osoup-decode")]
    assert "--sets test_en --search" in decode[0] and "--sets test_fr --search" in decode[2]
    assert "--sets test_en test_fr --search" in decode[3]
    score = [c for c in later if c.startswith("osoup-score")]
    assert "--label single" in score[0] and "--label static_sweep" in score[4]
    assert not any("--seed" in c for c in score)  # osoup-score takes the seed training used (config.yaml)
    (results,) = [c for c in later if c.startswith("osoup-results")]
    assert "--labels single single single static_sweep static_sweep --out exp/RESULTS_compare" in results
    assert results.endswith("--split test --sweep-labels static_sweep --resources --resources-data-dir dump/fbank")
    r = _run(recipe, [*args, "--stage", "9", "--methods", "single", "--resources", "false"], env)
    assert r.returncode == 0 and _later_calls(env)[-1].endswith("--split test"), r.stderr[-3000:]


def test_stage6_init_from_is_passed_and_signed(fake_recipe) -> None:
    recipe, env = fake_recipe
    pre = recipe / "pre.pt"
    pre.write_text("pretrained\n", encoding="utf-8")
    args = [*STAGE6, "--init-from", "pre.pt"]
    r = _run(recipe, args, env)
    assert r.returncode == 0 and _calls(env)[-1].endswith("--init-from pre.pt --resume"), r.stderr[-3000:]
    assert "already trained" in _run(recipe, args, env).stderr and len(_calls(env)) == 1
    pre.write_text("pre-trained again, longer\n", encoding="utf-8")  # another pre-training: train again
    r = _run(recipe, args, env)
    assert r.returncode == 0 and len(_calls(env)) == 2 and (recipe / "exp" / "vs.old1").is_dir()
    r = _run(recipe, [*STAGE6, "--init-from", "missing.pt"], env)
    assert r.returncode == 1 and "--init-from missing.pt: file not found" in r.stderr


def test_stage11_model_soups(fake_recipe) -> None:
    recipe, env = fake_recipe
    venv_bin = recipe.parent / "root" / "tools" / "venv" / "bin"
    shutil.copy(venv_bin / "osoup-results", venv_bin / "osoup-soup")
    args = [str(ASR_SH), "--asr-langs", "en", "--stage", "11", "--stop-stage", "11", "--ngpu", "0"]
    r = _run(recipe, args, env)
    assert r.returncode == 0 and "Stage 11: skipped (no --soup-methods)" in r.stderr, r.stderr[-3000:]
    soup = [*args, "--soup-methods", "vs vm:asr>ssl", "--decode-model", "latest.pt", "--exp-tag", "ft"]
    r = _run(recipe, soup, env)
    assert r.returncode == 1 and "stage 11 needs exp/ft_vs/latest.pt: train vs first (stage 6)" in r.stderr
    r = _run(recipe, [*STAGE6, "--methods", "vs vm:asr>ssl", "--method", "", "--exp-tag", "ft"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _run(recipe, soup, env)
    assert r.returncode == 0, r.stderr[-3000:]
    (call,) = _later_calls(env)
    assert call == ("osoup-soup --exps exp/ft_vs exp/ft_vm_asr-ssl --labels vs vm:asr>ssl --weights grid "
                    "--grid-step 0.1 --model latest.pt --data-dir dump/fbank --sets test_en --split test "
                    "--search greedy --beam 10 --tag greedy --out exp/soup_ft")
    r = _run(recipe, soup, env)
    assert r.returncode == 0 and "Stage 11: exp/soup_ft already done" in r.stderr and len(_later_calls(env)) == 1
    r = _run(recipe, [*args, "--soup-methods", "single vs"], env)
    assert r.returncode == 1 and "--soup-methods: single is several models, not one" in r.stderr


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_lock_left_by_a_killed_run_is_waited_for(fake_recipe, reaped) -> None:
    """The run that took the lock is dead but one of its children still holds it (a kill
    still being delivered): the next run waits for that child instead of failing. A dead run
    nobody has reaped yet (a zombie, as under a container's PID 1 that never reaps) counts as
    dead too, though kill -0 still reaches it."""
    recipe, env = fake_recipe
    lock = recipe / "data" / ".lock" / "stage6.vs"
    lock.parent.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    if reaped:
        dead.wait()  # a PID that no longer runs
    else:
        stat = Path(f"/proc/{dead.pid}/stat")
        deadline = time.time() + 10
        while stat.read_text().rsplit(") ", 1)[1][0] != "Z" and time.time() < deadline:
            time.sleep(0.01)
        assert stat.read_text().rsplit(") ", 1)[1][0] == "Z"
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time\n"
         f"f = open({str(lock)!r}, 'w'); f.write('{dead.pid}\\n'); f.flush()\n"
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(2)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        r = _run(recipe, STAGE6, env)
    finally:
        child.wait()
        dead.wait()
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"(PID {dead.pid}) is gone" in r.stderr


# ------------------------------------------------ --train-jobs and --st-units-phase2 (stand-ins)
def test_train_jobs_trains_experiments_side_by_side(fake_recipe, tmp_path) -> None:
    """--train-jobs 2: two trainings run at once (each stand-in waits for the other), each with
    --threads cores/2, its output in exp/log/ and its latest progress line shown; a failed one is named with the end of its log,
    and the rerun trains only what is missing."""
    recipe, env = fake_recipe
    args = [*STAGE6, "--method", "", "--methods", "vs joint", "--train-jobs", "2"]
    r = _run(recipe, args, dict(env, TRAIN_MEET=str(tmp_path / "meet"), TRAIN_SLEEP="3", OSOUP_PROGRESS_SEC="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Stage 6: exp/vs: epoch 1 step 5/10, ETA 7s" in r.stderr  # the progress of background trainings
    calls = _calls(env)
    threads = max(1, os.cpu_count() // 2)
    assert len(calls) == 2 and all(f"--threads {threads} --resume" in c for c in calls)
    assert "its output: exp/log/train.vs.log" in r.stderr and "Stage 6: exp/joint done" in r.stderr
    assert (recipe / "exp" / "log" / "train.joint.log").is_file()
    assert all((recipe / "exp" / m / ".train.done").is_file() for m in ("vs", "joint"))

    # six experiments, two at a time; the second fails: at most one more starts (if the first
    # ended before it), the rest never do, and the rerun trains exactly the ones not done
    args = [*STAGE6, "--method", "", "--methods", "vs vm:asr>ssl joint", "--train-jobs", "2", "--seeds", "2"]
    shutil.rmtree(recipe / "exp")
    r = _run(recipe, args, dict(env, TRAIN_FAIL="exp/vs_seed2"))
    assert r.returncode == 1
    assert "training exp/vs_seed2 failed (exit status 5)" in r.stderr and "stand-in training of exp/vs_seed2 fails" in r.stderr
    assert "1 training(s) failed: exp/vs_seed2" in r.stderr
    names = [f"{m}{s}" for m in ("vs", "vm_asr-ssl", "joint") for s in ("", "_seed2")]  # seed 1: no suffix
    done = {n for n in names if (recipe / "exp" / n / ".train.done").is_file()}
    assert "vs" in done and "vs_seed2" not in done and len(done) <= 2
    assert not (recipe / "exp" / "joint").exists() and not (recipe / "exp" / "joint_seed2").exists()
    n = len(_calls(env))
    r = _run(recipe, args, env)
    assert r.returncode == 0, r.stderr[-3000:]
    redone = [c.split("--exp-dir ")[1].split()[0] for c in _calls(env)[n:]]
    assert sorted(redone) == sorted(f"exp/{m}" for m in names if m not in done)

    r = _run(recipe, [*STAGE6, "--train-jobs", "2", "--ngpu", "0", "--nproc", "2"], env)
    assert r.returncode == 1 and "--train-jobs 2 trains whole experiments side by side" in r.stderr
    r = _run(recipe, [*STAGE6, "--train-jobs", "0"], env)
    assert r.returncode == 1 and "--train-jobs 0: give a positive integer" in r.stderr


ST_MARKERS = ("data/token/st_en/.done", "dump/st/train_en/.done", "dump/st/dev_en/.done")
UNIT_MARKERS = ("data/token/st_en_unigram300/.done", "dump/st_unigram300/train_en/.done",
                "dump/st_unigram300/dev_en/.done")


def test_st_units_phase2_trains_two_phases(fake_recipe) -> None:
    """--st-units-phase2 unigram:300: each experiment trains in DIR_phase1 on the first units,
    then DIR starts from phase 1's latest.pt with fresh translation heads over the new units and
    --phase2-train-opts last; a change of phase-2 options retrains phase 2 only."""
    recipe, env = fake_recipe
    (recipe / "conf" / "train.yaml").write_text("epochs: 1\nscheduler: step\n", encoding="utf-8")
    _add_markers(recipe, *ST_MARKERS)
    args = [str(ASR_SH), "--asr-langs", "en", "--st-langs", "en", "--stage", "6", "--stop-stage", "6", "--ngpu", "0",
            "--methods", "vs", "--st-units-phase2", "unigram:300", "--phase2-train-opts", "--epochs 4"]
    r = _run(recipe, args, env)
    assert r.returncode == 1 and "stage 6 needs dump/st_unigram300/train_en/.done" in r.stderr
    assert "(with --st-units-phase2 unigram:300)" in r.stderr and _calls(env) == []
    _add_markers(recipe, *UNIT_MARKERS)
    r = _run(recipe, [*args, "--train-opts", "--epochs 8"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = _calls(env)
    assert "--exp-dir exp/vs_phase1 " in one and "--st-units" not in one and "--init-from" not in one
    assert one.endswith("--resume --epochs 8")
    assert "--dev-every 0" in one and "--dev-every" not in two  # phase 1 passes latest.pt on
    assert "--exp-dir exp/vs " in two and "--init-heads true --init-new-heads st --init-from exp/vs_phase1/latest.pt" in two
    assert "--st-units unigram300" in two and two.endswith("--resume --epochs 8 --epochs 4")
    r = _run(recipe, [*args, "--train-opts", "--epochs 8"], env)
    assert "exp/vs_phase1 already trained" in r.stderr and "exp/vs already trained" in r.stderr
    assert len(_calls(env)) == 2
    r = _run(recipe, [*args[:-1], "--epochs 5", "--train-opts", "--epochs 8"], env)
    assert r.returncode == 0 and len(_calls(env)) == 3 and _calls(env)[-1].endswith("--epochs 5")
    assert "exp/vs_phase1 already trained" in r.stderr and (recipe / "exp" / "vs.old1").is_dir()

    # an ASR-only experiment (single) continues in phase 2 on its own head, no translation units
    r = _run(recipe, [*args, "--methods", "single"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    asr_two = [c for c in _calls(env) if "--exp-dir exp/single_asr_en " in c][0]
    assert "--init-heads true --init-from exp/single_asr_en_phase1/latest.pt" in asr_two and "--st-units" not in asr_two
    st_two = [c for c in _calls(env) if "--exp-dir exp/single_st_en " in c][0]
    assert "--init-new-heads st" in st_two and "--st-units unigram300" in st_two

    for bad, msg in ((["--st-units-phase2", "unigram300"], "give type:size"),
                     (["--st-units-phase2", "", "--phase2-train-opts", "--epochs 2"], "set --st-units-phase2 too")):
        r = _run(recipe, [*STAGE6, *bad], env)
        assert r.returncode == 1 and msg in r.stderr, r.stderr[-2000:]
    r = _run(recipe, [*STAGE6, "--st-units-phase2", "unigram:300"], env)
    assert r.returncode == 1 and "--st-units-phase2 needs translation languages" in r.stderr


def test_st_units_phase2_keeps_every_dev_evaluation_for_a_plateau_schedule(fake_recipe) -> None:
    """Phase 1 evaluates dev only at its end (--dev-every 0) unless its schedule is plateau,
    osoup-train's default, which reads every epoch's dev score: then it gets no --dev-every."""
    recipe, env = fake_recipe
    _add_markers(recipe, *ST_MARKERS, *UNIT_MARKERS)
    args = [str(ASR_SH), "--asr-langs", "en", "--st-langs", "en", "--stage", "6", "--stop-stage", "6", "--ngpu", "0",
            "--methods", "vs", "--st-units-phase2", "unigram:300"]
    r = _run(recipe, args, env)  # conf/train.yaml sets no scheduler: plateau
    assert r.returncode == 0, r.stderr[-3000:]
    (recipe / "conf" / "train.yaml").write_text("epochs: 1\nscheduler: step\n", encoding="utf-8")
    r = _run(recipe, [*args, "--train-opts", "--scheduler plateau"], env)  # the command line wins
    assert r.returncode == 0, r.stderr[-3000:]
    r = _run(recipe, args, env)
    assert r.returncode == 0, r.stderr[-3000:]
    phase1 = [c for c in _calls(env) if "--exp-dir exp/vs_phase1 " in c]
    assert len(phase1) == 3
    assert ["--dev-every 0" in c for c in phase1] == [False, False, True]
    assert not any("--dev-every" in c for c in _calls(env) if "--exp-dir exp/vs " in c)


def test_more_seeds_reuse_a_finished_run(fake_recipe) -> None:
    """Seed 1 lives in exp/<method> whatever --seeds is, so --seeds 3 after a one-seed run trains
    seeds 2 and 3 only, and stages 7-9 see all three."""
    recipe, env = fake_recipe
    assert _run(recipe, STAGE6, env).returncode == 0
    r = _run(recipe, [*STAGE6, "--stop-stage", "9", "--seeds", "3"], env)
    assert r.returncode == 0 and "Stage 6: exp/vs already trained" in r.stderr, r.stderr[-3000:]
    assert [c.split("--exp-dir ")[1].split()[0] for c in _calls(env)] == ["exp/vs", "exp/vs_seed2", "exp/vs_seed3"]
    (results,) = [c for c in _later_calls(env) if c.startswith("osoup-results")]
    assert "--exps exp/vs exp/vs_seed2 exp/vs_seed3 --labels vs vs vs" in results


def test_interrupt_stops_side_by_side_trainings(fake_recipe, tmp_path) -> None:
    """SIGTERM to the stage script (the trap also takes Ctrl-C's SIGINT, which a shell started in the
    background ignores, as CI may start us) stops every background training it started."""
    recipe, env = fake_recipe
    pids = tmp_path / "pids"
    args = ["bash", *[*STAGE6, "--method", "", "--methods", "vs joint", "--train-jobs", "2"]]
    proc = subprocess.Popen(args, cwd=recipe, env=dict(env, TRAIN_SLEEP="60", TRAIN_PIDS=str(pids)),
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.time() < deadline:
        time.sleep(0.1)
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted; stopping the trainings" in err, err[-2000:]
    def running(pid: int) -> bool:  # a zombie (nobody reaps orphans under some containers' PID 1) is gone
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] not in "ZX"
        except (FileNotFoundError, ProcessLookupError):
            return False

    deadline = time.time() + 10
    while any(running(p) for p in started) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(running(p) for p in started)
