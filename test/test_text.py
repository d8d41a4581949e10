"""Text normalisation, SentencePiece token dirs, subsampled lengths and the CTC-length filter."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from osoup.data.datadir import read_scp, write_scp
from osoup.data.filter import ctc_min_frames, filter_ctc, subsampled_length
from osoup.fileio import DataError
from osoup.text import normalize_asr, normalize_st
from osoup.text.spm import train_spm
from osoup.text.tokenizer import Tokenizer


@pytest.fixture(autouse=True)
def _drop_log_handlers():
    """Commands install a stderr log handler; remove it so it does not outlive pytest's capture."""
    yield
    root = logging.getLogger()
    for h in list(root.handlers):
        if type(h) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(h)


@pytest.mark.parametrize(
    "text,lang,expected",
    [
        ("L’Été, à Paris : « génial » !", "fr", "l'été à paris génial"),
        ("Aujourd'hui c'est  l'hiver...", "fr", "aujourd'hui c'est l'hiver"),
        ("'Quoted' words' and rock'n'roll", "en", "quoted words and rock'n'roll"),
        ("Peut-être 3,5 € (environ) ?", "fr", "peut être 3 5 environ"),
        ("Straße\tÜBER\u00a0Ñandú", "de", "straße über ñandú"),
        ("ＡＢＣ１２３ ﬁn", "en", "abc123 fin"),  # NFKC folds full-width and ligatures
        ("你好， 世界！ 我们 在 iPhone 上", "zh", "你好世界我们在iphone上"),
        ("?!…", "fr", ""),
    ],
)
def test_normalize_asr(text, lang, expected):
    assert normalize_asr(text, lang) == expected


def test_normalize_st_keeps_case_and_punctuation():
    assert normalize_st("  Hello,   World!\tIt's  “me”. ") == "Hello, World! It's “me”."


FR = [
    "Le chat est noir.",
    "Il fait beau aujourd'hui !",
    "Les enfants jouent dans le jardin.",
    "Nous allons à la plage demain.",
    "Elle a mangé une pomme.",
    "C'est l'été, enfin.",
]


def _text_file(path: Path, lines: list[str]) -> Path:
    write_scp(path, {f"u{i:03d}": t for i, t in enumerate(lines)})
    return path


def test_train_spm_caps_vocab_and_layout(tmp_path):
    from osoup.bin.train_spm import main

    text = _text_file(tmp_path / "text", FR)
    out = tmp_path / "asr_fr"
    assert main(["--kind", "asr", "--lang", "fr", "--out", str(out), "--vocab-size", "1000", str(text)]) == 0
    info = json.loads((out / "info.json").read_text(encoding="utf-8"))
    assert info["kind"] == "asr" and info["lang"] == "fr" and info["model_type"] == "unigram"
    assert 20 < info["vocab_size"] < 1000  # capped at what six sentences support
    tokens = (out / "tokens.txt").read_text(encoding="utf-8").splitlines()
    vocab = [line.split("\t")[0] for line in (out / "spm.vocab").read_text(encoding="utf-8").splitlines()]
    assert tokens[0] == "<blank>" and tokens[1] == "<unk>" and tokens[1:] == vocab
    assert len(tokens) == info["vocab_size"] + 1
    tok = Tokenizer(out)
    assert tok.vocab_size == len(tokens) and tok.kind == "asr" and tok.lang == "fr"
    for s in FR:
        ids = tok.encode(s)
        assert ids and 0 not in ids and max(ids) < tok.vocab_size
        assert tok.decode(ids) == normalize_asr(s, "fr")
        assert [tokens[i] for i in ids] == tok.sp.encode(normalize_asr(s, "fr"), out_type=str)
    # blanks are dropped; a character never seen maps to <unk> (index 1)
    ids = tok.encode("le chat")
    assert tok.decode([0] + ids[:1] + [0, 0] + ids[1:] + [0]) == "le chat"
    assert 1 in tok.encode("le chat ψ")
    # deterministic: retraining gives the same model bytes
    main(["--kind", "asr", "--lang", "fr", "--out", str(tmp_path / "again"), "--vocab-size", "1000", str(text)])
    assert (tmp_path / "again" / "spm.model").read_bytes() == (out / "spm.model").read_bytes()


def test_train_spm_small_vocab_is_kept(tmp_path):
    info = train_spm([normalize_asr(s, "fr") for s in FR], tmp_path / "t", "asr", "fr", vocab_size=30)
    assert info["vocab_size"] == 30


def test_st_tokenizer_keeps_case(tmp_path):
    en = ["Hello, World!", "It's a Test.", "The cat is black.", "We go to the beach tomorrow."]
    train_spm([normalize_st(s) for s in en], tmp_path / "st_en", "st", "en", vocab_size=1000)
    tok = Tokenizer(tmp_path / "st_en")
    assert tok.kind == "st"
    assert tok.decode(tok.encode("  It's   a Test. ")) == "It's a Test."


def test_zh_char_tokenizer(tmp_path):
    from osoup.bin.train_spm import main

    zh = ["我们 今天 去 公园。", "你好，世界！", "今天天气很好", "我们在公园里"]
    text = _text_file(tmp_path / "text", zh)
    assert main(["--kind", "asr", "--lang", "zh", "--out", str(tmp_path / "zh"), "--vocab-size", "5000", str(text)]) == 0
    tok = Tokenizer(tmp_path / "zh")
    info = json.loads((tmp_path / "zh" / "info.json").read_text(encoding="utf-8"))
    n_chars = len(set("".join(normalize_asr(s, "zh") for s in zh)))
    assert info["model_type"] == "char" and info["vocab_size"] == n_chars + 1  # + <unk>
    ids = tok.encode("我们 今天")
    assert len(ids) == 4  # one token per character, no word-boundary token
    assert tok.decode(ids) == "我们今天"


def test_train_spm_no_text(tmp_path, capsys):
    from osoup.bin.train_spm import main

    text = _text_file(tmp_path / "text", ["?!", "..."])
    assert main(["--kind", "asr", "--lang", "fr", "--out", str(tmp_path / "o"), str(text)]) == 1
    assert "ERROR:" in capsys.readouterr().err


@pytest.mark.parametrize("factor", [1, 2, 4, 8])
def test_subsampled_length_matches_conv2d(factor):
    import torch

    convs = torch.nn.Sequential(*[torch.nn.Conv2d(1, 1, kernel_size=3, stride=2) for _ in range(factor.bit_length() - 1)])
    for t in list(range(2 * factor - 1, 70)) + [100, 1001, 2048]:  # from the shortest input with output
        with torch.no_grad():
            out = convs(torch.zeros(1, 1, t, 80)) if factor > 1 else torch.zeros(1, 1, t, 80)
        assert subsampled_length(t, factor) == out.shape[2], t
    assert subsampled_length(4, 4) == 0 and subsampled_length(0, 4) == 0
    assert subsampled_length(100, 4) == ((100 - 1) // 2 - 1) // 2 == 24


def test_subsampled_length_rejects_odd_factor():
    with pytest.raises(ValueError):
        subsampled_length(100, 6)


def test_ctc_min_frames():
    assert ctc_min_frames([]) == 0
    assert ctc_min_frames([3, 4, 5]) == 3
    assert ctc_min_frames([3, 3, 3, 4, 4]) == 5 + 3


class _CharTokenizer:
    """Stand-in tokenizer: one index per character (a=1, b=2, ...), ASR-normalised."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) - ord("a") + 1 for c in normalize_asr(text, "en").replace(" ", "")]


def _fbank_dir(tmp_path: Path, rows: dict[str, tuple[int, str]]) -> Path:
    d = tmp_path / "fbank"
    d.mkdir()
    write_scp(d / "utt2num_frames", {u: str(n) for u, (n, _) in rows.items()})
    write_scp(d / "feats.scp", {u: f"ark.{u}:1" for u in rows})
    write_scp(d / "text", {u: t for u, (_, t) in rows.items()})
    write_scp(d / "utt2spk", {u: u.split("-")[0] for u in rows})
    return d


def test_filter_ctc_keeps_what_fits(tmp_path):
    # 19..22 frames -> 4 outputs after x4 subsampling; 23..26 -> 5
    assert subsampled_length(22) == 4 and subsampled_length(23) == 5
    rows = {
        "s-a": (22, "abcd"),  # 4 tokens in 4 frames: fits
        "s-b": (22, "abcde"),  # 5 > 4: dropped
        "s-c": (23, "aabc"),  # 4 tokens + 1 repeat = 5 <= 5: fits
        "s-d": (22, "aabc"),  # 5 > 4: dropped (the repeat needs a blank)
        "s-e": (100, "?!"),  # empty target: dropped
    }
    d = _fbank_dir(tmp_path, rows)
    counts = filter_ctc(d, tmp_path / "asr", _CharTokenizer(), "asr", subsampling=4)
    assert counts == {"kept": 2, "too_many_tokens": 2, "empty_target": 1}
    out = tmp_path / "asr"
    for name in ("text", "feats.scp", "utt2num_frames", "utt2spk"):
        assert sorted(read_scp(out / name)) == ["s-a", "s-c"]
    assert read_scp(out / "spk2utt") == {"s": "s-a s-c"}


def test_filter_ctc_command_st(tmp_path):
    from osoup.bin.filter_ctc import main

    en = ["Hello there.", "A much longer English sentence about nothing at all."]
    train_spm([normalize_st(s) for s in en], tmp_path / "st_en", "st", "en", vocab_size=1000, model_type="char")
    tok = Tokenizer(tmp_path / "st_en")
    d = _fbank_dir(tmp_path, {"s-a": (60, "Bonjour."), "s-b": (60, "Phrase longue.")})
    write_scp(d / "text.en", {"s-a": en[0], "s-b": en[1]})
    assert len(tok.encode(en[0])) <= subsampled_length(60) < len(tok.encode(en[1]))
    assert main(["--in", str(d), "--out", str(tmp_path / "st"), "--token-dir", str(tmp_path / "st_en"),
                 "--task", "st", "--subsampling", "4"]) == 0
    assert list(read_scp(tmp_path / "st" / "text.en")) == ["s-a"]
    assert main(["--in", str(d), "--out", str(tmp_path / "x"), "--token-dir", str(tmp_path / "st_en"),
                 "--task", "asr"]) == 1


def test_filter_ctc_missing_target(tmp_path):
    d = _fbank_dir(tmp_path, {"s-a": (60, "abc")})
    with pytest.raises(DataError, match="text.en: missing"):
        filter_ctc(d, tmp_path / "st", _CharTokenizer(), "st")


def test_spm_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="smaller than required_chars"):
        train_spm([normalize_asr(s, "fr") for s in FR], tmp_path / "t", "asr", "fr", vocab_size=5)
    with pytest.raises(DataError, match="spm.model: missing"):
        Tokenizer(tmp_path / "nothing")
