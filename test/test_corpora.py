"""Corpus parsers on tiny corpora in the real layouts (see corpus_fixtures.py): exact data dir
contents, counts of skipped items, and the errors a user gets for broken input."""
from __future__ import annotations

import logging
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus_fixtures as cf  # noqa: E402

from osoup.bin import prep_aishell, prep_covost2, prep_librispeech  # noqa: E402
from osoup.data.corpora import prepare_aishell, prepare_covost2, prepare_librispeech  # noqa: E402
from osoup.data.corpora.common import BadItems, probe_audio  # noqa: E402
from osoup.data.datadir import read_data_dir, read_scp  # noqa: E402
from osoup.fileio import DataError  # noqa: E402

try:
    from osoup.data.validate import validate_data_dir
except ImportError:  # pragma: no cover - the validator is written separately
    validate_data_dir = None


def assert_valid(data_dir: Path, need_text: bool = True) -> None:
    """Sorted keys everywhere, and the project's validator (when present) finds nothing."""
    for f in data_dir.iterdir():
        keys = [line.split(" ", 1)[0] for line in f.read_text(encoding="utf-8").splitlines()]
        assert keys == sorted(keys), f"{f} is not sorted"
    if validate_data_dir is not None:
        assert validate_data_dir(data_dir, need_text=need_text) == []


def durations(data_dir: Path) -> dict[str, float]:
    return {k: float(v) for k, v in read_scp(data_dir / "utt2dur").items()}


# ---------------------------------------------------------------------------------------------
# CoVoST 2 / Common Voice 4


@pytest.fixture(scope="module")
def covost(tmp_path_factory):
    return cf.build_covost(tmp_path_factory.mktemp("covost"))


def run_covost(covost, out, **kw):
    cv_root, covost_root = covost
    kw.setdefault("asr_langs", ["en", "fr"])
    kw.setdefault("st_langs", ["fr", "zh"])
    kw.setdefault("max_bad_frac", 0.6)
    return prepare_covost2(cv_root, covost_root, out, **kw)


def test_covost2_contents(covost, tmp_path, caplog):
    cv_root, _ = covost
    out = tmp_path / "data"
    with caplog.at_level(logging.INFO):
        counts = run_covost(covost, out, nj=4)
    assert counts == {"train_en": 2, "dev_en": 1, "test_en": 1, "train_fr": 2, "dev_fr": 1,
                      "test_fr": 1, "train_zh": 1, "dev_zh": 1, "test_zh": 1}

    fr = read_data_dir(out / "train_fr")
    # train and train_covost both go to train; the quote stays literally in text and text.en.
    assert fr["text"] == {"aa11-common_voice_fr_3": 'Il a dit "non".',
                          "bb22-common_voice_fr_1": "Bonjour à tous."}
    assert fr["text.en"] == {"aa11-common_voice_fr_3": 'He said "no".',
                             "bb22-common_voice_fr_1": "Hello everyone."}
    assert fr["utt2spk"] == {"aa11-common_voice_fr_3": "aa11", "bb22-common_voice_fr_1": "bb22"}
    assert fr["wav.scp"] == {"aa11-common_voice_fr_3": str(cv_root / "fr/clips/common_voice_fr_3.mp3"),
                             "bb22-common_voice_fr_1": str(cv_root / "fr/clips/common_voice_fr_1.mp3")}
    assert all(Path(p).is_absolute() for p in fr["wav.scp"].values())
    assert durations(out / "train_fr") == pytest.approx(
        {"aa11-common_voice_fr_3": 1.75, "bb22-common_voice_fr_1": 1.25}, abs=0.03)
    assert read_data_dir(out / "dev_fr")["text"] == {"aa11-common_voice_fr_2": "Merci."}
    assert read_data_dir(out / "test_fr")["text.en"] == {"cc33-common_voice_fr_4": "Goodbye."}

    # English: splits from covost_v2.en_de.tsv, no translation file.
    en = read_data_dir(out / "train_en")
    assert en["text"] == {"dd44-common_voice_en_1": 'It\'s "quoted" text.', "ee55-common_voice_en_2": "Hello there."}
    assert "text.en" not in en
    assert list(read_data_dir(out / "test_en")["text"]) == ["ee55-common_voice_en_4"]

    # zh-CN clips, data dirs named zh, columns in another order.
    zh = read_data_dir(out / "train_zh")
    assert zh["text"] == {"ff66-common_voice_zh-CN_1": "你好，世界。"}
    assert zh["text.en"] == {"ff66-common_voice_zh-CN_1": "Hello, world."}
    assert zh["wav.scp"]["ff66-common_voice_zh-CN_1"] == str(cv_root / "zh-CN/clips/common_voice_zh-CN_1.mp3")
    assert not (out / "train_zh-CN").exists()

    for d in sorted(out.iterdir()):
        assert_valid(d)
    # Skipped rows, counted per data dir and reason; the missing clip is named in the log.
    log = caplog.text
    assert "wrote {}: 2 utterances (5 rows, skipped 3 (empty sentence: 1, empty translation: 1, " \
           "missing audio file: 1))".format(out / "train_fr") in log
    assert "wrote {}: 1 utterances (2 rows, skipped 1 (unreadable or corrupt audio: 1))".format(out / "dev_fr") in log
    assert str(cv_root / "fr/clips/common_voice_fr_6.mp3") in log
    assert "other split values: 'extra': 1" in log
    assert "common_voice_fr_8" not in log  # not part of CoVoST: neither bad nor mentioned


def test_covost2_asr_only_language_keeps_translation(covost, tmp_path):
    counts = run_covost(covost, tmp_path, asr_langs=["fr"], st_langs=[])
    assert counts["train_fr"] == 2
    assert "text.en" in read_data_dir(tmp_path / "train_fr")
    assert not (tmp_path / "train_en").exists()


def test_covost2_too_many_bad_rows(covost, tmp_path):
    with pytest.raises(DataError, match=r"train_fr: 3 of 5 input items are bad .*empty translation: 1"):
        run_covost(covost, tmp_path, asr_langs=[], st_langs=["fr"], max_bad_frac=0.05)
    assert not (tmp_path / "train_fr").exists()


def test_covost2_missing_roots_and_languages(covost, tmp_path):
    cv_root, covost_root = covost
    with pytest.raises(DataError, match=r"nowhere does not exist; expected the Common Voice 4 root"):
        prepare_covost2(tmp_path / "nowhere", covost_root, tmp_path / "d", ["en"], [])
    with pytest.raises(DataError, match=r"nowhere does not exist; expected the CoVoST 2 root"):
        prepare_covost2(cv_root, tmp_path / "nowhere", tmp_path / "d", ["en"], [])
    with pytest.raises(DataError) as e:
        prepare_covost2(cv_root, covost_root, tmp_path / "d", ["en", "it"], [])
    assert f"requested language 'it' but {cv_root / 'it'} does not exist" in str(e.value)
    assert "languages found in" in str(e.value) and "en, fr, zh-CN" in str(e.value)
    assert not (tmp_path / "d").exists()  # checked before any output is written
    with pytest.raises(DataError, match=r"requested language 'de' but .*covost_v2.de_en.tsv does not exist"):
        (cv_root / "de").mkdir()
        (cv_root / "de" / "validated.tsv").write_text("\t".join(cf.CV_HEADER) + "\n", encoding="utf-8")
        try:
            prepare_covost2(cv_root, covost_root, tmp_path / "d", [], ["de"])
        finally:
            (cv_root / "de" / "validated.tsv").unlink()
            (cv_root / "de").rmdir()
    with pytest.raises(DataError, match="English is the translation target"):
        prepare_covost2(cv_root, covost_root, tmp_path / "d", [], ["en"])


def copy_covost(covost, dst: Path) -> tuple[Path, Path]:
    """A writable copy of the text files (clips are linked) to plant defects in."""
    import shutil

    cv_root, covost_root = covost
    shutil.copytree(covost_root, dst / "covost2")
    for lang in ("fr",):
        (dst / "cv4" / lang).mkdir(parents=True)
        shutil.copy(cv_root / lang / "validated.tsv", dst / "cv4" / lang)
        (dst / "cv4" / lang / "clips").symlink_to(cv_root / lang / "clips")
    return dst / "cv4", dst / "covost2"


def test_covost2_non_utf8_and_duplicates(covost, tmp_path):
    cv_root, covost_root = copy_covost(covost, tmp_path)
    validated = cv_root / "fr" / "validated.tsv"
    original = validated.read_bytes()
    lines = original.split(b"\n")
    assert "à".encode() in lines[3]
    lines[3] = lines[3].replace("à".encode(), b"\xe0")  # a latin-1 byte on line 4
    validated.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError, match=r"fr/validated.tsv:4: not valid UTF-8"):
        prepare_covost2(cv_root, covost_root, tmp_path / "d", [], ["fr"])

    # common_voice_fr_3.mp3 again, once without .mp3: still the same clip.
    validated.write_bytes(original + b"zz99\tcommon_voice_fr_3\tEncore.\t1\t0\t\t\t\n")
    with pytest.raises(DataError, match=r"validated.tsv:12: duplicate path 'common_voice_fr_3' \(first on line 3\)"):
        prepare_covost2(cv_root, covost_root, tmp_path / "d", [], ["fr"])
    validated.write_bytes(original)

    tsv = covost_root / "covost_v2.fr_en.tsv"
    with open(tsv, "a", encoding="utf-8") as f:
        f.write("common_voice_fr_4.mp3\tx\tAgain.\ty\ttest\n")
    with pytest.raises(DataError, match=r"covost_v2.fr_en.tsv:11: duplicate path 'common_voice_fr_4.mp3'"):
        prepare_covost2(cv_root, covost_root, tmp_path / "d", [], ["fr"])


def test_covost2_missing_column_and_bad_field_count(covost, tmp_path):
    cv_root, covost_root = copy_covost(covost, tmp_path)
    tsv = covost_root / "covost_v2.fr_en.tsv"
    text = tsv.read_text(encoding="utf-8")
    tsv.write_text(text.replace("translation", "translatoin", 1), encoding="utf-8")
    with pytest.raises(DataError, match=r"covost_v2.fr_en.tsv:1: header lacks column\(s\) translation"):
        prepare_covost2(cv_root, covost_root, tmp_path / "d", [], ["fr"])
    tsv.write_text(text + "common_voice_fr_99.mp3\tonly three\tfields\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"covost_v2.fr_en.tsv:11: 3 tab-separated fields, the header has 5"):
        prepare_covost2(cv_root, covost_root, tmp_path / "d", [], ["fr"])


def test_prep_covost2_command(covost, tmp_path, capsys):
    cv_root, covost_root = covost
    rc = prep_covost2.main(["--cv-root", str(cv_root), "--covost-root", str(covost_root),
                            "--asr-langs", "en", "--st-langs", "", "--out", str(tmp_path / "data"),
                            "--nj", "2", "-v", "0"])
    assert rc == 0
    assert "train_en 2" in capsys.readouterr().out
    rc = prep_covost2.main(["--cv-root", str(cv_root), "--covost-root", str(covost_root),
                            "--asr-langs", "en fr", "--st-langs", "fr", "--out", str(tmp_path / "data"),
                            "-v", "0"])
    assert rc == 1
    err = capsys.readouterr().err
    assert any(line.startswith("ERROR: train_fr: 3 of 5 input items are bad") for line in err.splitlines())
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# LibriSpeech

LIBRI_PARTS = {"train-clean-100": "train", "dev-clean": "dev", "test-clean": "test"}


@pytest.fixture(scope="module")
def libri(tmp_path_factory):
    return cf.build_librispeech(tmp_path_factory.mktemp("libri"))


def test_librispeech_contents(libri, tmp_path, caplog):
    out = tmp_path / "data"
    with caplog.at_level(logging.INFO):
        counts = prepare_librispeech(libri, out, LIBRI_PARTS, ssl_parts=["train-clean-360"], max_bad_frac=0.5)
    assert counts == {"train_en": 3, "dev_en": 1, "test_en": 1, "ssl_train-clean-360_en": 2}
    train = read_data_dir(out / "train_en")
    assert train["text"] == {"103-1240-0000": "CHAPTER ONE MISSUS RACHEL", "103-1240-0001": "WHERE THE BROOK RAN",
                             "60-121082-0000": "THE SEA WAS CALM"}
    assert train["utt2spk"] == {"103-1240-0000": "103", "103-1240-0001": "103", "60-121082-0000": "60"}
    assert train["wav.scp"]["60-121082-0000"] == str(libri / "LibriSpeech/train-clean-100/60/121082/60-121082-0000.flac")
    assert durations(out / "train_en") == pytest.approx(
        {u: cf.libri_seconds(u) for u in train["text"]}, abs=1e-3)
    assert read_scp(out / "train_en" / "spk2gender") == {"103": "f", "60": "m"}  # '|' inside a name
    assert read_scp(out / "train_en" / "spk2utt") == {
        "103": "103-1240-0000 103-1240-0001", "60": "60-121082-0000"}
    assert read_data_dir(out / "dev_en")["text"] == {"1272-128104-0000": "MISTER QUILTER IS THE APOSTLE"}
    for d in ("train_en", "dev_en", "test_en"):
        assert_valid(out / d)
    # SSL part: audio only, no transcript file.
    ssl = read_data_dir(out / "ssl_train-clean-360_en")
    assert "text" not in ssl and set(ssl["wav.scp"]) == {"14-208-0000", "14-208-0001"}
    assert_valid(out / "ssl_train-clean-360_en", need_text=False)
    assert "skipped 2 (audio without transcript: 1, missing audio file: 1)" in caplog.text
    assert "60-121082.trans.txt:2" in caplog.text


def test_librispeech_parts_merge_and_errors(libri, tmp_path):
    counts = prepare_librispeech(libri, tmp_path / "d", {"dev-clean": "dev", "test-clean": "dev"})
    assert counts == {"dev_en": 2}
    assert set(read_data_dir(tmp_path / "d" / "dev_en")["text"]) == {"1272-128104-0000", "2830-3980-0000"}
    with pytest.raises(DataError, match=r"train_en: 2 of 5 input items are bad"):
        prepare_librispeech(libri, tmp_path / "d", {"train-clean-100": "train"})
    with pytest.raises(DataError, match=r"requested part 'dev-other' but .* does not exist; parts found: "
                                        r"dev-clean, test-clean, train-clean-100, train-clean-360"):
        prepare_librispeech(libri, tmp_path / "d", {"dev-other": "dev"})
    with pytest.raises(DataError, match=r"no LibriSpeech/ directory"):
        prepare_librispeech(tmp_path, tmp_path / "d", {"dev-clean": "dev"})


def test_librispeech_bad_transcript_id(tmp_path):
    root = cf.build_librispeech(tmp_path)
    trans = root / "LibriSpeech/dev-clean/1272/128104/1272-128104.trans.txt"
    trans.write_text("1272-128104-0000 OK\n1273-128104-0001 WRONG SPEAKER\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"1272-128104.trans.txt:2: utterance id '1273-128104-0001' "
                                        r"does not start with '1272-128104-'"):
        prepare_librispeech(root, tmp_path / "d", {"dev-clean": "dev"})


def test_prep_librispeech_command(libri, tmp_path, capsys):
    rc = prep_librispeech.main(["--root", str(libri), "--parts", "dev-clean:dev test-clean:test",
                                "--ssl-parts", "train-clean-360", "--out", str(tmp_path), "-v", "0"])
    assert rc == 0
    assert capsys.readouterr().out.split("\n")[:3] == ["dev_en 1", "ssl_train-clean-360_en 2", "test_en 1"]
    assert prep_librispeech.main(["--root", str(libri), "--parts", "dev-clean", "--out", str(tmp_path)]) == 1
    assert "ERROR: --parts: expected PART:SPLIT, got 'dev-clean'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# AISHELL-1


def test_aishell_contents_and_rerun(tmp_path, caplog):
    root = cf.build_aishell(tmp_path / "corpus")
    out = tmp_path / "data"
    with caplog.at_level(logging.INFO):
        counts = prepare_aishell(root, out)
    assert counts == {"train_zh": 2, "dev_zh": 1, "test_zh": 2}
    train = read_data_dir(out / "train_zh")
    assert train["text"] == {"S0002-BAC009S0002W0122": "而 对 楼市 成交 抑制 作用 最 大 的 限 购",
                             "S0002-BAC009S0002W0123": "也 成为 地方 政府 的 眼中 钉"}
    assert set(train["utt2spk"].values()) == {"S0002"}
    wav_dir = root / "data_aishell" / "wav"
    assert train["wav.scp"]["S0002-BAC009S0002W0123"] == str(wav_dir / "train/S0002/BAC009S0002W0123.wav")
    assert durations(out / "train_zh") == {"S0002-BAC009S0002W0122": 1.0, "S0002-BAC009S0002W0123": 1.5}
    # An id that already starts with its speaker keeps it; the unpacked test speaker is read as is.
    assert read_data_dir(out / "test_zh")["utt2spk"] == {"S0764-BAC009S0764W0121": "S0764", "S0764W0500": "S0764"}
    for d in out.iterdir():
        assert_valid(d)
    assert "train_zh: 1 wav file(s) have no transcript" in caplog.text
    assert "1 transcript line(s) have no wav file" in caplog.text
    assert sorted(p.name for p in wav_dir.glob("*.unpacked")) == ["S0002.tar.gz.unpacked", "S0724.tar.gz.unpacked"]

    # Rerun: marked tarballs are not touched again (a corrupted tarball would fail otherwise).
    (wav_dir / "S0002.tar.gz").write_bytes(b"garbage")
    assert prepare_aishell(root, tmp_path / "data2") == counts
    (wav_dir / "S0002.tar.gz.unpacked").unlink()
    with pytest.raises(DataError, match=r"S0002.tar.gz: cannot unpack"):
        prepare_aishell(root, tmp_path / "data3")


@pytest.mark.parametrize("member", ["../evil.wav", "/tmp/osoup_evil.wav", "train/../../evil.wav"])
def test_aishell_refuses_unsafe_tar_members(tmp_path, member):
    root = cf.build_aishell(tmp_path / "corpus")
    wav_dir = root / "data_aishell" / "wav"
    with tarfile.open(wav_dir / "S0666.tar.gz", "w:gz") as tf:
        cf.add_tar_member(tf, "train/S0666/ok.wav", cf.wav_bytes(0.5))
        cf.add_tar_member(tf, member, cf.wav_bytes(0.5))
    with pytest.raises(DataError, match=r"S0666.tar.gz: refusing to extract member"):
        prepare_aishell(root, tmp_path / "data")
    assert not (tmp_path / "corpus" / "data_aishell" / "evil.wav").exists()
    assert not Path("/tmp/osoup_evil.wav").exists()
    assert not (wav_dir / "S0666.tar.gz.unpacked").exists()


def test_aishell_corrupt_wav_counted(tmp_path):
    root = cf.build_aishell(tmp_path / "corpus")
    bad = root / "data_aishell/wav/test/S0764/S0764W0500.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(DataError, match=r"test_zh: 1 of 2 input items are bad .*unreadable or corrupt audio: 1"):
        prepare_aishell(root, tmp_path / "data")
    assert prepare_aishell(root, tmp_path / "data", max_bad_frac=0.5)["test_zh"] == 1


def test_aishell_errors(tmp_path, capsys):
    assert prep_aishell.main(["--root", str(tmp_path / "none"), "--out", str(tmp_path / "d")]) == 1
    assert "ERROR: " in capsys.readouterr().err
    root = cf.build_aishell(tmp_path / "corpus")
    transcript = root / "data_aishell/transcript/aishell_transcript_v0.8.txt"
    transcript.write_bytes(transcript.read_bytes() + b"BAC009S0002W0122 again\n")
    with pytest.raises(DataError, match=r"aishell_transcript_v0.8.txt:7: duplicate utterance id 'BAC009S0002W0122'"):
        prepare_aishell(root, tmp_path / "d")


# ---------------------------------------------------------------------------------------------
# Shared helpers


def test_bad_items_threshold():
    bad = BadItems("train_xx")
    for i in range(3):
        bad.add("missing audio file", f"clip{i}")
    bad.check(60, 0.05)  # 3/60 = 5% is allowed
    with pytest.raises(DataError, match=r"train_xx: 3 of 59 input items are bad \(5.1% > max_bad_frac 5.0%\)"):
        bad.check(59, 0.05)


def test_probe_audio_threads_keep_order(tmp_path):
    paths = []
    for i in range(70):
        p = tmp_path / f"{i}.flac"
        if i % 10 != 3:
            cf.write_audio(p, 0.1 + 0.01 * i, 16000, "FLAC")
        paths.append(str(p))
    probes = probe_audio(paths, nj=4)
    assert [p.path for p in probes] == paths
    for i, p in enumerate(probes):
        if i % 10 == 3:
            assert p.problem == "missing audio file" and p.dur is None
        else:
            assert p.problem is None and p.dur == pytest.approx(0.1 + 0.01 * i, abs=1e-4)
