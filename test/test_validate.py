"""Data-dir validator and fixer on hand-made dirs (Kaldi's validate/fix_data_dir.sh as the spec)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from osoup.bin import fix_data_dir as fix_cli
from osoup.bin import validate_data_dir as validate_cli
from osoup.data.datadir import Utterance, read_data_dir, read_scp, write_data_dir
from osoup.data.validate import check_data_dir, fix_data_dir, validate_data_dir
from osoup.fileio import DataError


def _audio(path: Path) -> str:
    """A non-empty stand-in audio file (the validator checks existence and size, not content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    return str(path)


def _utts(audio_dir: Path, n_spk: int = 3, per_spk: int = 4) -> list[Utterance]:
    out = []
    for s in range(n_spk):
        spk = f"spk{s}"
        for i in range(per_spk):
            utt = f"{spk}-u{i:02d}"
            out.append(Utterance(utt, spk, _audio(audio_dir / f"{utt}.wav"), f"bonjour {s} {i}",
                                 f"hello {s} {i}", 1.0 + i))
    return out


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    d = tmp_path / "train_fr"
    utts = _utts(tmp_path / "audio")
    write_data_dir(d, utts)
    (d / "utt2num_frames").write_text(
        "".join(f"{u.utt_id} {100 + i}\n" for i, u in enumerate(sorted(utts, key=lambda u: u.utt_id))),
        encoding="utf-8")
    return d


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_good_dir_is_valid(good_dir: Path) -> None:
    assert validate_data_dir(good_dir) == []
    assert validate_cli.main([str(good_dir)]) == 0


def test_unsorted_file(good_dir: Path) -> None:
    lines = _lines(good_dir / "text")
    lines[0], lines[1] = lines[1], lines[0]
    _write_lines(good_dir / "text", lines)
    problems = validate_data_dir(good_dir)
    assert len(problems) == 1
    assert "text" in problems[0] and "not sorted" in problems[0] and "spk0-u00" in problems[0]


def test_c_locale_order_is_byte_order(tmp_path: Path) -> None:
    # In C-locale order "A" (0x41) < "_" (0x5f) < "a" (0x61) < "é" (0xc3 0xa9); a locale-aware
    # sort would put these differently.
    d = tmp_path / "d"
    ids = ["s-A", "s-_", "s-a", "s-é"]
    assert ids == sorted(ids, key=lambda s: s.encode("utf-8"))
    wav = _audio(tmp_path / "a.wav")
    write_data_dir(d, [Utterance(u, "s", wav, "x") for u in ids])
    assert validate_data_dir(d) == []
    _write_lines(d / "wav.scp", [f"s-A {wav}", f"s-a {wav}", f"s-_ {wav}", f"s-é {wav}"])
    assert any("wav.scp" in p and "not sorted" in p for p in validate_data_dir(d))


def test_duplicate_key(good_dir: Path) -> None:
    lines = _lines(good_dir / "wav.scp")
    _write_lines(good_dir / "wav.scp", lines[:2] + [lines[1]] + lines[2:])
    problems = validate_data_dir(good_dir)
    assert any("wav.scp" in p and "duplicate key" in p and "line 3" in p for p in problems)


def test_missing_utterance_in_one_file(good_dir: Path) -> None:
    lines = _lines(good_dir / "utt2dur")
    _write_lines(good_dir / "utt2dur", [ln for ln in lines if not ln.startswith("spk1-u02 ")])
    problems = validate_data_dir(good_dir)
    assert problems == [f"{good_dir / 'utt2dur'}: utterance of utt2spk missing: 'spk1-u02'"]


def test_extra_utterance_not_in_utt2spk(good_dir: Path) -> None:
    _write_lines(good_dir / "text.en", _lines(good_dir / "text.en") + ["spk9-x hi"])
    problems = validate_data_dir(good_dir)
    assert any("text.en" in p and "not in utt2spk" in p and "spk9-x" in p for p in problems)


@pytest.mark.parametrize("name", ["text", "text.en"])
def test_empty_text(good_dir: Path, name: str) -> None:
    lines = _lines(good_dir / name)
    lines[3] = lines[3].split(" ")[0]
    lines[5] = lines[5].split(" ")[0] + " "
    _write_lines(good_dir / name, lines)
    problems = validate_data_dir(good_dir)
    assert len(problems) == 1
    assert f"{name}: empty transcript (2 times)" in problems[0]


def test_speaker_not_prefix(good_dir: Path) -> None:
    lines = _lines(good_dir / "utt2spk")
    lines[0] = lines[0].split(" ")[0] + " spk1"  # spk0-u00 claimed by spk1
    _write_lines(good_dir / "utt2spk", lines)
    problems = validate_data_dir(good_dir)
    assert any("not a prefix" in p and "spk0-u00" in p for p in problems)
    # spk2utt still lists the old assignment
    assert any("spk2utt" in p for p in problems)


def test_speaker_order_must_match_utterance_order(tmp_path: Path) -> None:
    # Both speakers are prefixes, but sorting by speaker ("a" < "a-") differs from sorting by
    # utterance ("a-x" < "a_z"), which Kaldi rejects.
    d = tmp_path / "d"
    write_data_dir(d, [Utterance("a_z", "a", "/x.wav", "t"), Utterance("a-x", "a-", "/y.wav", "t")])
    assert any("order by speaker" in p for p in validate_data_dir(d))


def test_non_utf8(good_dir: Path) -> None:
    data = (good_dir / "text").read_bytes().replace(b"bonjour 1 2", b"bonjour \xe9 2")
    (good_dir / "text").write_bytes(data)
    problems = validate_data_dir(good_dir)
    assert len(problems) == 1
    assert problems[0].startswith(f"{good_dir / 'text'}: not a valid UTF-8 text file: line 7:")


def test_bad_values_and_missing_files(good_dir: Path) -> None:
    _write_lines(good_dir / "utt2dur",
                 [ln if i not in (0, 1, 2) else ln.split()[0] + v
                  for i, (ln, v) in enumerate(zip(_lines(good_dir / "utt2dur"), [" -1", " abc", " nan"] + [""] * 99))])
    lines = _lines(good_dir / "utt2num_frames")
    lines[4] = lines[4].split()[0] + " 0"
    lines[5] = lines[5].split()[0] + " 12.5"
    _write_lines(good_dir / "utt2num_frames", lines)
    (good_dir / "spk2utt").unlink()
    problems = validate_data_dir(good_dir)
    text = "\n".join(problems)
    assert "utt2dur: duration is not a positive number (2 times)" in text  # -1 and nan
    assert "utt2dur: duration is not a number: line 2" in text
    assert "utt2num_frames: frame count is not a positive integer (2 times)" in text
    assert "spk2utt: required file is missing" in text


def test_need_text(good_dir: Path) -> None:
    (good_dir / "text").unlink()
    assert any("text: required file is missing" in p for p in validate_data_dir(good_dir))
    assert validate_data_dir(good_dir, need_text=False) == []
    assert validate_cli.main([str(good_dir), "--no-text"]) == 0


def test_validate_cli_lists_all_problems(good_dir: Path, capsys: pytest.CaptureFixture) -> None:
    _write_lines(good_dir / "text", _lines(good_dir / "text")[::-1])
    (good_dir / "utt2dur").write_text("", encoding="utf-8")
    assert validate_cli.main([str(good_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ERROR: {good_dir}: 2 problem(s):")
    assert "not sorted" in err and "utt2dur: utterance of utt2spk missing (12 times)" in err


# ---------------------------------------------------------------------------- audio files


def _wav_path(good_dir: Path, utt: str) -> Path:
    return Path(read_scp(good_dir / "wav.scp")[utt])


def test_missing_and_empty_audio_files(good_dir: Path, capsys: pytest.CaptureFixture) -> None:
    missing, empty = _wav_path(good_dir, "spk1-u02"), _wav_path(good_dir, "spk2-u00")
    missing.unlink()
    empty.write_bytes(b"")
    problems = validate_data_dir(good_dir)
    assert problems == [f"{good_dir / 'wav.scp'}: audio file does not exist: 'spk1-u02' {missing}",
                        f"{good_dir / 'wav.scp'}: audio file is empty (0 bytes): 'spk2-u00' {empty}"]
    assert validate_cli.main([str(good_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ERROR: {good_dir}: 2 problem(s):") and str(missing) in err and str(empty) in err
    # Nothing was written by the check; after restoring the audio the dir validates again.
    assert sorted(p.name for p in good_dir.iterdir()) == [
        "spk2utt", "text", "text.en", "utt2dur", "utt2num_frames", "utt2spk", "wav.scp"]
    _audio(missing)
    _audio(empty)
    assert validate_data_dir(good_dir) == []
    assert validate_cli.main([str(good_dir)]) == 0
    assert capsys.readouterr().err == f"{good_dir}: valid data dir\n"


def test_audio_dir_instead_of_file(good_dir: Path) -> None:
    wav = _wav_path(good_dir, "spk0-u01")
    wav.unlink()
    wav.mkdir()
    assert validate_data_dir(good_dir) == [
        f"{good_dir / 'wav.scp'}: audio path is not a regular file: 'spk0-u01' {wav}"]


def test_commands_and_specifiers_skipped_with_a_note(good_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    lines = _lines(good_dir / "wav.scp")
    ark = _audio(tmp_path / "audio.ark")
    # a piped command, two rspecifiers, an offset into an existing ark, an offset into a missing one
    values = ["sox /nowhere/a.wav -t wav - |", "ark:/nowhere/a.ark", "scp,p:/nowhere/b.scp", f"{ark}:1234",
              f"{tmp_path}/gone.ark:99"]
    for i, value in enumerate(values):
        lines[i] = lines[i].split(" ")[0] + " " + value
    _write_lines(good_dir / "wav.scp", lines)
    result = check_data_dir(good_dir)
    assert result.problems == [f"{good_dir / 'wav.scp'}: audio file does not exist: 'spk1-u00' "
                               f"{tmp_path}/gone.ark"]
    assert result.notes == [f"{good_dir / 'wav.scp'}: 3 entries are piped commands ('... |') or ark:/scp: "
                            f"specifiers; their audio was not checked"]
    lines[4] = lines[4].split(" ")[0] + f" {ark}:99"
    _write_lines(good_dir / "wav.scp", lines)
    assert validate_cli.main([str(good_dir)]) == 0
    err = capsys.readouterr().err
    assert f"{good_dir}: valid data dir" in err and "NOTE: " in err and "3 entries are piped commands" in err


def test_check_files_modes(good_dir: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture) -> None:
    import osoup.data.validate as validate_mod

    missing = _wav_path(good_dir, "spk0-u00")
    missing.unlink()
    assert validate_data_dir(good_dir, check_files="no") == []
    assert validate_cli.main([str(good_dir), "--check-files", "no"]) == 0
    assert len(validate_data_dir(good_dir, check_files="yes")) == 1
    # Above the size limit "auto" says that it did not check; "yes" still does.
    monkeypatch.setattr(validate_mod, "CHECK_FILES_MAX_UTTS", 10)
    result = check_data_dir(good_dir)
    assert result.problems == []
    assert result.notes == [f"{good_dir / 'wav.scp'}: 12 entries (more than 10): audio files not checked; "
                            f"check_files='yes' (--check-files yes) checks them"]
    assert validate_data_dir(good_dir, check_files="yes") == [
        f"{good_dir / 'wav.scp'}: audio file does not exist: 'spk0-u00' {missing}"]
    capsys.readouterr()
    assert validate_cli.main([str(good_dir), "--check-files", "yes"]) == 1
    assert str(missing) in capsys.readouterr().err
    with pytest.raises(DataError, match="check_files must be one of auto, yes, no, got 'maybe'"):
        validate_data_dir(good_dir, check_files="maybe")


# ---------------------------------------------------------------------------- fixing


def test_fix_repairs_everything(good_dir: Path) -> None:
    orig = {name: (good_dir / name).read_bytes() for name in ("text", "wav.scp", "utt2dur", "spk2utt")}
    # unsorted
    _write_lines(good_dir / "wav.scp", _lines(good_dir / "wav.scp")[::-1])
    # exact duplicate line (collapsed, the utterance stays)
    lines = _lines(good_dir / "text")
    _write_lines(good_dir / "text", lines + [lines[0]])
    # utterance missing from one file
    _write_lines(good_dir / "utt2dur", [ln for ln in _lines(good_dir / "utt2dur") if not ln.startswith("spk1-u02 ")])
    # empty translation
    lines = _lines(good_dir / "text.en")
    lines[4] = lines[4].split(" ")[0]
    _write_lines(good_dir / "text.en", lines)
    before = validate_data_dir(good_dir)
    assert len(before) == 4

    result = fix_data_dir(good_dir, max_bad_frac=0.5)
    assert validate_data_dir(good_dir) == []
    assert result["utts_in"] == 12 and result["utts_kept"] == 10
    assert result["removed"] == {"empty transcript in text.en": 1, "missing from utt2dur": 1}
    assert result["duplicate_lines"] == 1
    kept = set(read_scp(good_dir / "utt2spk"))
    assert "spk1-u02" not in kept and "spk1-u00" not in kept and len(kept) == 10
    data = read_data_dir(good_dir)
    assert all(set(v) == kept for v in data.values())
    # spk2utt regenerated from utt2spk
    assert read_scp(good_dir / "spk2utt")["spk1"] == "spk1-u01 spk1-u03"
    # originals backed up verbatim
    assert (good_dir / ".backup" / "spk2utt").read_bytes() == orig["spk2utt"]
    assert (good_dir / ".backup" / "wav.scp").read_bytes() != orig["wav.scp"]  # the reversed one
    assert sorted(_lines(good_dir / ".backup" / "wav.scp")) == orig["wav.scp"].decode().splitlines()


def test_fix_removes_conflicts_and_non_prefix_speakers(good_dir: Path) -> None:
    _write_lines(good_dir / "wav.scp", _lines(good_dir / "wav.scp") + ["spk0-u01 /other.wav"])
    lines = _lines(good_dir / "utt2spk")
    lines[5] = lines[5].split(" ")[0] + " spk0"
    _write_lines(good_dir / "utt2spk", lines)
    result = fix_data_dir(good_dir, max_bad_frac=None)
    assert result["removed"] == {"conflicting duplicate lines in wav.scp": 1,
                                 "speaker id not a prefix of utterance id": 1}
    assert validate_data_dir(good_dir) == []


def test_fix_refuses_above_max_bad_frac(good_dir: Path) -> None:
    _write_lines(good_dir / "utt2dur", _lines(good_dir / "utt2dur")[:6])
    before = {p.name: p.read_bytes() for p in good_dir.iterdir()}
    with pytest.raises(DataError, match=r"remove 6 of 12 utterances.*nothing was changed"):
        fix_data_dir(good_dir, max_bad_frac=0.05)
    assert {p.name: p.read_bytes() for p in good_dir.iterdir()} == before


def test_fix_non_utf8_is_an_error(good_dir: Path) -> None:
    (good_dir / "text").write_bytes((good_dir / "text").read_bytes() + b"spk2-zz \xff\n")
    with pytest.raises(DataError, match=r"text:13: not valid UTF-8"):
        fix_data_dir(good_dir)


def test_fix_cli(good_dir: Path, capsys: pytest.CaptureFixture) -> None:
    _write_lines(good_dir / "text", _lines(good_dir / "text")[::-1])
    assert fix_cli.main([str(good_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["utts_kept"] == 12
    assert validate_data_dir(good_dir) == []
    _write_lines(good_dir / "utt2dur", _lines(good_dir / "utt2dur")[:3])
    assert fix_cli.main([str(good_dir)]) == 1
    assert "ERROR:" in capsys.readouterr().err


def test_spk2gender_checked_and_fixed(good_dir: Path) -> None:
    _write_lines(good_dir / "spk2gender", ["spk0 m", "spk1 x", "spk9 f"])
    problems = "\n".join(validate_data_dir(good_dir))
    assert "spk2gender: speaker of utt2spk missing: 'spk2'" in problems
    assert "spk2gender: speaker not in utt2spk: 'spk9'" in problems
    assert "spk2gender: gender is not m or f: 'spk1' 'x'" in problems
    _write_lines(good_dir / "spk2gender", ["spk0 m", "spk1 f", "spk2 f", "spk9 f"])
    # dropping every utterance of spk2 must drop it from spk2gender too
    _write_lines(good_dir / "text", [ln for ln in _lines(good_dir / "text") if not ln.startswith("spk2-")])
    fix_data_dir(good_dir, max_bad_frac=None)
    assert _lines(good_dir / "spk2gender") == ["spk0 m", "spk1 f"]
    assert validate_data_dir(good_dir) == []
