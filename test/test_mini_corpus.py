"""The offline mini corpus: grammar properties, synthesis, and the CV4 + CoVoST 2 layout."""
from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from osoup.data.mini import grammar, synth
from osoup.data.mini.corpus import COVOST_HEADER, VALIDATED_HEADER, make_mini_corpus, plan_language
from osoup.data.mini.grammar import NP, Frame, generate_sentences, render, sample_frames
from osoup.fileio import DataError

# --------------------------------------------------------------------------------------------
# Grammar

BASE = Frame(subj=NP(noun="woman", det="def"), verb="buy", obj=NP(noun="car", det="indef", adj="red"))


def test_same_frame_in_every_language():
    out = generate_sentences([BASE])
    assert out == {
        "en": ["The woman buys a red car."],
        "fr": ["La femme achète une voiture rouge."],
        "de": ["Die Frau kauft ein rotes Auto."],
        "es": ["La mujer compra un coche rojo."],
        "ca": ["La dona compra un cotxe vermell."],
        "zh": ["那个女人买一辆红色的汽车。"],
    }


def test_adjective_position_and_agreement():
    old_man = NP(noun="man", det="def", adj="old")
    f = Frame(subj=old_man, verb="see", obj=NP(noun="house", det="def", adj="white"))
    # French: BAGS adjective before the noun with its prevocalic form; colour after, feminine.
    assert render(f, "fr") == "Le vieil homme voit la maison blanche."
    assert render(f, "es") == "El hombre viejo ve la casa blanca."
    assert render(f, "ca") == "L'home vell veu la casa blanca."
    assert render(f, "en") == "The old man sees the white house."
    assert render(f, "zh") == "那个老男人看见那座白色的房子。"
    plural = Frame(subj=NP(noun="man", det="def", plural=True, adj="old"), verb="see",
                   obj=NP(noun="house", det="num", plural=True, count=2, adj="white"))
    assert render(plural, "fr") == "Les vieux hommes voient deux maisons blanches."
    assert render(plural, "ca") == "Els homes vells veuen dues cases blanques."
    assert render(plural, "es") == "Los hombres viejos ven dos casas blancas."
    assert render(plural, "de") == "Die alten Männer sehen zwei weiße Häuser."
    assert render(plural, "zh") == "那些老男人看见两座白色的房子。"


def test_german_case_gender_and_adjective_endings():
    dog = NP(noun="dog", det="indef", adj="big")
    assert render(Frame(subj=dog, verb="eat", obj=NP(noun="apple", det="def")), "de") == \
        "Ein großer Hund isst den Apfel."
    assert render(Frame(subj=NP(noun="child", det="def"), verb="see", obj=dog), "de") == \
        "Das Kind sieht einen großen Hund."
    book = NP(noun="book", det="def", adj="new")
    assert render(Frame(subj=NP(pronoun="1sg"), verb="read", obj=book), "de") == "Ich lese das neue Buch."
    lamp = NP(noun="lamp", det="indef", adj="old")
    assert render(Frame(subj=NP(pronoun="3pl_f"), verb="sell", obj=lamp), "de") == "Sie verkaufen eine alte Lampe."


def test_german_verb_second_and_verb_final():
    f = Frame(subj=NP(noun="man", det="def"), verb="buy", obj=NP(noun="book", det="indef"), tense="fut",
              time="tomorrow", front_time=True)
    assert render(f, "de") == "Morgen wird der Mann ein Buch kaufen."
    assert render(f, "en") == "Tomorrow, the man will buy a book."
    sub = Frame(subj=NP(noun="man", det="def"), verb="buy", obj=NP(noun="book", det="indef"), tense="past",
                mood="sub", matrix="think", place="market")
    assert render(sub, "de") == "Ich glaube, dass der Mann auf dem Markt ein Buch gekauft hat."
    assert render(sub, "fr") == "Je pense que l'homme a acheté un livre au marché."
    assert render(sub, "ca") == "Crec que l'home va comprar un llibre al mercat."
    assert render(sub, "es") == "Creo que el hombre compró un libro en el mercado."
    assert render(sub, "zh") == "我觉得那个男人在市场上买了一本书。"
    ques = Frame(subj=NP(noun="man", det="def"), verb="buy", obj=NP(noun="book", det="indef"), mood="ques")
    assert render(ques, "de") == "Kauft der Mann ein Buch?"
    assert render(ques, "en") == "Does the man buy a book?"
    assert render(ques, "es") == "¿El hombre compra un libro?"
    assert render(ques, "fr") == "Est-ce que l'homme achète un livre ?"
    assert render(ques, "zh") == "那个男人买一本书吗？"


def test_chinese_measure_words_numbers_and_no_spaces():
    f = Frame(subj=NP(pronoun="1pl"), verb="see", obj=NP(noun="cat", det="num", plural=True, count=2), tense="fut")
    assert render(f, "zh") == "我们会看见两只猫。"
    f12 = Frame(subj=NP(pronoun="1pl"), verb="read", obj=NP(noun="book", det="num", plural=True, count=12))
    assert render(f12, "zh") == "我们读十二本书。"
    assert render(f12, "en") == "We read twelve books."
    assert render(f12, "es") == "Leemos doce libros."  # pro-drop
    for s in generate_sentences(sample_frames(300, 5), ["zh"])["zh"]:
        assert " " not in s and s[-1] in "。？"


def test_translations_carry_the_same_numbers_and_tense():
    """For random frames, the count of a numeral NP appears as that number word in every language."""
    frames = sample_frames(400, 7)
    out = generate_sentences(frames)
    checked = 0
    for i, f in enumerate(frames):
        for np_ in (f.subj, f.obj):
            if np_.det == "num":
                checked += 1
                for lang in grammar.LANGS:
                    word = grammar._NUMBERS[lang].split()[np_.count - 1]
                    if lang == "zh":
                        word = "两" if np_.count == 2 else word
                        assert word in out[lang][i], (lang, out[lang][i])
                    elif np_.count > 2 or lang != "ca":  # ca "dues" for feminine two
                        assert re.search(rf"(^|\W){word}(\W|$)", out[lang][i], re.I), (lang, out[lang][i])
        if f.tense == "fut":
            assert " will " in f" {out['en'][i].lower()}", out["en"][i]
            assert "会" in out["zh"][i]
    assert checked > 50


def test_sentences_are_diverse_and_cased():
    frames = sample_frames(3000, 1)
    en = generate_sentences(frames, ["en"])["en"]
    assert len(set(en)) > 2900
    for s in en:
        assert s[0].isupper() and s[-1] in ".?" and "  " not in s
    assert grammar.lexicon_size("fr") >= 80


def test_plan_is_deterministic_and_split_by_speaker():
    a, b, c = plan_language("fr", 200, 1), plan_language("fr", 200, 1), plan_language("fr", 200, 2)
    assert a == b
    assert [u.sentence for u in a] != [u.sentence for u in c]
    assert len({u.sentence for u in a}) == 200
    by_split: dict[str, set[str]] = {}
    for u in a:
        by_split.setdefault(u.split.replace("train_covost", "train"), set()).add(u.speaker.client_id)
        assert u.sentence == render(u.frame, "fr") and u.translation == render(u.frame, "en")
    assert by_split["train"].isdisjoint(by_split["dev"]) and by_split["train"].isdisjoint(by_split["test"])
    assert by_split["dev"].isdisjoint(by_split["test"])
    counts = {s: sum(1 for u in a if u.split == s) for s in ("train", "train_covost", "dev", "test")}
    assert counts["dev"] == counts["test"] == 20 and counts["train_covost"] > 0
    train_words = {w for u in a if u.split.startswith("train") for w in u.sentence.split()}
    test_sents = [u.sentence for u in a if u.split == "test"]
    assert not set(test_sents) & {u.sentence for u in a if u.split.startswith("train")}
    assert all(set(s.split()) & train_words for s in test_sents)
    en = plan_language("en", 20, 1)
    assert all(u.translation == render(u.frame, "de") for u in en)
    ids = [u.speaker.client_id for u in a]
    assert all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids)


def test_plan_respects_length_and_snr_bounds():
    from osoup.data.mini.corpus import estimate_seconds

    short = plan_language("es", 120, 3, max_speech_sec=2.2, snr=(20.0, 25.0))
    default = plan_language("es", 120, 3)
    for u in short:
        assert 0.8 <= estimate_seconds(u.sentence, "es", u.speaker.rate) <= 2.2
        assert 20.0 <= u.params.snr_db <= 25.0
    longest = max(estimate_seconds(u.sentence, "es", u.speaker.rate) for u in default)
    assert longest > 2.2  # the bound is what made the difference
    assert min(u.params.snr_db for u in default) < 20.0
    with pytest.raises(DataError, match="max-speech-sec"):
        plan_language("es", 10, 3, max_speech_sec=0.5)
    with pytest.raises(DataError, match="snr"):
        plan_language("es", 10, 3, snr=(30.0, 10.0))


# --------------------------------------------------------------------------------------------
# Signal processing and synthesis


def test_resample_matches_band_limited_sine():
    # (rates, frequency, tolerance): the 16-tap-per-side window leaves <1% ripple near the cutoff
    for sr_in, sr_out, freq, tol in [(22050, 48000, 1000.0, 2e-3), (22050, 48000, 5000.0, 2e-3),
                                     (22050, 48000, 9000.0, 1e-2), (48000, 16000, 3000.0, 2e-3)]:
        t = np.arange(sr_in) / sr_in
        y = synth.resample(np.sin(2 * np.pi * freq * t), sr_in, sr_out)
        assert len(y) == sr_out
        ref = np.sin(2 * np.pi * freq * np.arange(sr_out) / sr_out)
        assert np.max(np.abs(y - ref)[200:-200]) < tol, (sr_in, sr_out, freq)
    # above the cutoff nothing passes (anti-aliasing when decimating)
    t = np.arange(48000) / 48000
    assert np.max(np.abs(synth.resample(np.sin(2 * np.pi * 12000 * t), 48000, 16000))[200:-200]) < 1e-2


def test_degrade_snr_gain_and_padding():
    sr = 22050
    rng = np.random.default_rng(0)
    speech = (np.sin(2 * np.pi * 220 * np.arange(sr) / sr) * 8000 * (1 + 0.3 * rng.standard_normal(sr))).astype(np.int16)
    p = synth.ClipParams(lead_s=0.3, trail_s=0.2, snr_db=15.0, noise_colour=0.5, peak_db=-6.0, noise_seed=5)
    x = synth.degrade(speech, sr, p, 1.0, 6.0)
    lead, trail = int(0.3 * sr), int(0.2 * sr)
    assert len(x) == sr + lead + trail
    assert abs(np.max(np.abs(x)) - 10 ** (-6 / 20)) < 1e-9
    s = np.concatenate([np.zeros(lead), speech / 32768.0, np.zeros(trail)])
    g = float(x @ s / (s @ s))
    noise = x / g - s
    snr = 10 * np.log10(np.mean((speech / 32768.0) ** 2) / np.mean(noise ** 2))
    assert abs(snr - 15.0) < 0.3
    # too short speech is padded up to the minimum duration
    assert len(synth.degrade(speech[:2000], sr, p, 1.0, 6.0)) >= sr


def test_synthesis_is_deterministic_and_fits_duration():
    utts = plan_language("de", 3, 4)
    u = utts[0]
    y1, _ = synth.render_clip(u.sentence, u.speaker, u.params)
    y2, _ = synth.render_clip(u.sentence, u.speaker, u.params)
    assert np.array_equal(y1, y2)
    other = plan_language("de", 3, 5)[0]
    y3, _ = synth.render_clip(other.sentence, other.speaker, other.params)
    assert len(y3) != len(y1) or not np.array_equal(y1, y3)
    slow = synth.Speaker(client_id="0" * 64, lang="en", voice="en", rate=120, pitch=50, pitch_range=50,
                         gender="", age="", accent="")
    long_text = " ".join(["The old farmer will paint seven green boats at the station tomorrow."] * 3)
    y, rate = synth.render_clip(long_text, slow, u.params)
    assert rate > 120 and 1.0 <= len(y) / synth.OUT_RATE <= 6.0


def test_espeak_voices_exist():
    eng = synth.engine()
    variants = synth.voice_variants()
    assert {"m1", "f1"} <= set(variants)
    for lang, voices in synth.LANG_VOICES.items():
        for name, _ in voices:
            assert len(eng.synth("un deux", f"{name}+{variants[0]}", 175, 50, 50)) > 1000, name


# --------------------------------------------------------------------------------------------
# Layout


def _read_tsv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:] if len(r) == len(rows[0])] + \
        [{"_bad": "\t".join(r)} for r in rows[1:] if len(r) != len(rows[0])]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".done"}


def test_corpus_layout_rerun_and_partial(tmp_path):
    import soundfile as sf

    out = tmp_path / "mini"
    t0 = time.time()
    summary = make_mini_corpus(out, ["en", "fr", "zh"], utts_per_lang=6, seed=3, nj=2)
    assert time.time() - t0 < 30
    assert not summary["skipped"] and summary["langs"]["zh"]["clips"] == 6
    for lang, cv, pair in (("en", "en", "en_de"), ("fr", "fr", "fr_en"), ("zh", "zh-CN", "zh-CN_en")):
        header, rows = _read_tsv(out / cv / "validated.tsv")
        assert header == VALIDATED_HEADER and len(rows) == 6
        header2, rows2 = _read_tsv(out / f"covost_v2.{pair}.tsv")
        assert header2 == COVOST_HEADER and len(rows2) == 6
        assert [r["path"] for r in rows] == [r["path"] for r in rows2]
        assert {r["split"] for r in rows2} <= {"train", "train_covost", "dev", "test"}
        assert {"dev", "test"} <= {r["split"] for r in rows2}
        for r in rows:
            assert re.fullmatch(rf"common_voice_{re.escape(cv)}_\d+\.mp3", r["path"])
            assert re.fullmatch(r"[0-9a-f]{64}", r["client_id"])
            info = sf.info(str(out / cv / "clips" / r["path"]))
            assert info.samplerate == 48000 and info.channels == 1
            audio, sr = sf.read(str(out / cv / "clips" / r["path"]))
            assert 1.0 <= len(audio) / sr <= 6.0 and np.max(np.abs(audio)) > 0.05
        for r in rows2:
            if lang == "en":
                assert r["translation"] != r["sentence"] and r["translation"][-1] in ".?"
            else:
                assert r["translation"][0].isupper() and r["translation"][-1] in ".?"
    assert not (out / "covost_v2.de_en.tsv").exists()
    assert not (out / ".in_progress").exists()
    before = _digest(out)

    # a complete corpus is not regenerated
    t0 = time.time()
    again = make_mini_corpus(out, ["en", "fr", "zh"], utts_per_lang=6, seed=3, nj=1)
    assert again["skipped"] and time.time() - t0 < 2

    # a killed run: no .done, a clip and a TSV missing -> completed, identical content (nj=1 now)
    params = json.loads((out / ".done").read_text(encoding="utf-8"))["params"]
    (out / ".done").unlink()
    (out / ".in_progress").write_text(json.dumps(params), encoding="utf-8")
    victim = sorted((out / "fr" / "clips").iterdir())[2]
    victim.unlink()
    (out / "covost_v2.fr_en.tsv").unlink()
    redo = make_mini_corpus(out, ["en", "fr", "zh"], utts_per_lang=6, seed=3, nj=1)
    assert not redo["skipped"]
    assert _digest(out) == before

    # other parameters: old clips are replaced, not mixed in
    make_mini_corpus(out, ["en", "fr", "zh"], utts_per_lang=4, seed=9, nj=2)
    _, rows = _read_tsv(out / "fr" / "validated.tsv")
    assert sorted(r["path"] for r in rows) == sorted(p.name for p in (out / "fr" / "clips").iterdir())


def test_refuses_to_overwrite_a_foreign_corpus(tmp_path):
    clips = tmp_path / "cv" / "fr" / "clips"
    clips.mkdir(parents=True)
    (clips / "common_voice_fr_17299399.mp3").write_bytes(b"real data")
    with pytest.raises(DataError, match="refusing to overwrite"):
        make_mini_corpus(tmp_path / "cv", ["fr"], utts_per_lang=3, seed=0, nj=1)
    assert (clips / "common_voice_fr_17299399.mp3").read_bytes() == b"real data"


def test_cli_reports_bad_input(tmp_path, capsys):
    from osoup.bin.make_mini_corpus import main

    assert main(["--out", str(tmp_path / "x"), "--langs", "en xx", "--utts-per-lang", "6"]) == 1
    assert "ERROR: unknown language(s) xx" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "x"), "--langs", "en", "--utts-per-lang", "2"]) == 1
    assert "at least 3" in capsys.readouterr().err
