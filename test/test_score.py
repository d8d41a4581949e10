"""WER/CER/BLEU against hand-computed values; RESULTS.md / results.json; osoup-results outputs."""
from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path

import pytest

from osoup.bin import results as results_cli
from osoup.bin import score as score_cli
from osoup.fileio import DataError
from osoup.score.comparison import gather
from osoup.score.langs import lang_label, sort_langs
from osoup.score.metrics import bleu, bleu_details, cer, wer
from osoup.score.plots import radar_plot
from osoup.score.resultfiles import exp_json, load_results
from osoup.score.scoring import score_texts
from osoup.score.tables import comparison_markdown

# ---------------------------------------------------------------------------- metrics


def test_wer_one_substitution():
    r = wer(["the cat sat"], ["the cat sit"])
    assert (r["errors"], r["ref_words"], r["sub"], r["del"], r["ins"]) == (1, 3, 1, 0, 0)
    assert r["wer"] == pytest.approx(100 / 3)


def test_wer_is_corpus_level_not_mean_of_utterances():
    refs, hyps = ["a b c d", "e f"], ["a b c d", "x"]
    r = wer(refs, hyps)
    assert r["errors"] == 2 and r["ref_words"] == 6
    assert r["wer"] == pytest.approx(100 * 2 / 6)
    per_utt = statistics.fmean(wer([a], [b])["wer"] for a, b in zip(refs, hyps))
    assert per_utt == pytest.approx(50.0) and per_utt != pytest.approx(r["wer"])


def test_wer_empty_hypothesis_insertions_and_empty_reference():
    r = wer(["a b", "c"], ["", "c d e"])
    assert (r["del"], r["ins"], r["errors"], r["ref_words"]) == (2, 2, 4, 3)
    assert r["wer"] == pytest.approx(400 / 3)
    with pytest.raises(ValueError, match="'u2'"):
        wer(["a", "  "], ["a", "b"], ids=["u1", "u2"])
    with pytest.raises(ValueError, match="#1"):
        wer(["a", ""], ["a", "b"])
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(["a", "b"], ["a"])


def test_cer_chinese_ignores_spaces():
    # ref chars 今天天气好 (5); hyp 今天天汽好啊: 气->汽 substitution + 啊 insertion.
    r = cer(["今天 天气 好"], ["今天天汽好啊"])
    assert (r["ref_chars"], r["sub"], r["ins"], r["del"]) == (5, 1, 1, 0)
    assert r["cer"] == pytest.approx(40.0)
    # Spaces in the hypothesis change nothing.
    assert cer(["今天天气好"], ["今 天 天 汽 好 啊"])["cer"] == pytest.approx(40.0)


def _hand_bleu(refs: list[str], hyps: list[str]) -> float:
    """Corpus BLEU-4 from its definition: clipped n-gram precisions summed over the corpus,
    geometric mean, brevity penalty exp(1 - r/c) when c < r. Inputs need no tokenisation."""
    match, total = [0] * 4, [0] * 4
    c_len = r_len = 0
    for ref, hyp in zip(refs, hyps):
        rt, ht = ref.split(), hyp.split()
        c_len, r_len = c_len + len(ht), r_len + len(rt)
        for n in range(1, 5):
            hc = Counter(tuple(ht[i:i + n]) for i in range(len(ht) - n + 1))
            rc = Counter(tuple(rt[i:i + n]) for i in range(len(rt) - n + 1))
            match[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            total[n - 1] += max(len(ht) - n + 1, 0)
    logp = sum(math.log(m / t) for m, t in zip(match, total)) / 4
    bp = 1.0 if c_len >= r_len else math.exp(1 - r_len / c_len)
    return 100 * bp * math.exp(logp)


def test_bleu_known_values_and_signature():
    score, sig = bleu(["the cat sat on the mat", "a b c d e"], ["the cat sat on the mat", "a b c d e"])
    assert score == pytest.approx(100.0)
    assert "tok:13a" in sig and "nrefs:1" in sig
    # Precisions 5/6, 3/5, 2/4, 1/3, no brevity penalty: (1/12) ** (1/4) = 53.728...
    score, _ = bleu(["the cat sat on a mat"], ["the cat sat on the mat"])
    assert score == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    assert score == pytest.approx(53.7285, abs=1e-3)
    # Corpus aggregation with a brevity penalty (hyp shorter than ref).
    refs = ["the quick brown fox jumps over the lazy dog", "we went to the market on monday morning"]
    hyps = ["the quick brown fox jumps over a dog", "we went to the market on monday"]
    d = bleu_details(refs, hyps)
    assert d["bp"] < 1.0 and (d["sys_len"], d["ref_len"]) == (15, 17)
    assert d["bleu"] == pytest.approx(_hand_bleu(refs, hyps), abs=1e-6)


# ---------------------------------------------------------------------------- score_texts


def test_score_texts_missing_and_unknown_ids(caplog):
    refs = {f"u{i:02d}": "a b" for i in range(20)}
    hyps = {u: "a b" for u in list(refs)[:19]}  # one missing: 2 deletions of 40 words
    r = score_texts(refs, hyps, "wer", "en", hyp_name="hyp.asr")
    assert r["missing_hyps"] == 1 and r["errors"] == 2 and r["ref_words"] == 40
    assert r["value"] == pytest.approx(5.0)
    assert "1 of 20 reference utterances have no hypothesis" in caplog.text
    with pytest.raises(DataError, match="'zzz'"):
        score_texts(refs, {**hyps, "zzz": "a"}, "wer", "en", hyp_name="hyp.asr")
    with pytest.raises(DataError, match="max-bad-frac"):
        score_texts(refs, dict(list(hyps.items())[:15]), "wer", "en")


# ---------------------------------------------------------------------------- recipe mode


def _write(path: Path, lines: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(lines.items())), encoding="utf-8")


def _fake_exp(root: Path, name: str = "vm", seed: int = 1, fr_err: bool = True) -> tuple[Path, Path]:
    data, exp = root / "dump" / "fbank", root / "exp" / name
    _write(data / "test_fr" / "text", {"fr1": "Bonjour, le monde!", "fr2": "C'est la vie.", "fr3": "Un deux trois"})
    _write(data / "test_fr" / "text.en", {"fr1": "Hello, world!", "fr2": "That is life.", "fr3": "One two three"})
    _write(data / "test_zh" / "text", {"zh1": "今天 天气 好", "zh2": "你好"})
    _write(data / "test_en" / "text", {"en1": "The cat sat", "en2": "On the mat"})
    dec = exp / "decode_beam10"
    _write(dec / "test_fr" / "hyp.asr", {"fr1": "bonjour le monde", "fr2": "c'est la vue" if fr_err else "c'est la vie"})
    _write(dec / "test_fr" / "hyp.st", {"fr1": "Hello, world!", "fr2": "That is life.", "fr3": "One two three"})
    _write(dec / "test_zh" / "hyp.asr", {"zh1": "今天天汽好啊", "zh2": "你好"})
    _write(dec / "test_en" / "hyp.asr", {"en1": "the cat sit", "en2": "on the mat"})
    (dec / "config.yaml").write_text("search: beam\nbeam: 10\n", encoding="utf-8")
    (exp / "config.yaml").write_text(f"seed: {seed}\nrecipe: vm\n", encoding="utf-8")
    return exp, data


def test_score_exp_writes_results(tmp_path, capsys):
    pytest.importorskip("osoup.text.normalize")
    exp, data = _fake_exp(tmp_path)
    # fr3 has no ASR hypothesis: 1 of 3 utterances; allow it for this test.
    assert score_cli.main(["--exp", str(exp), "--data", str(data), "--max-bad-frac", "0.5"]) == 0
    res = json.loads((exp / "results.json").read_text(encoding="utf-8"))
    assert res["seed"] == 1
    sets = {(e["set"], e["task"]): e for e in res["decodes"]["beam10"]["sets"]}
    fr = sets[("test_fr", "asr")]
    # refs after normalisation: "bonjour le monde" / "c'est la vie" / "un deux trois" (9 words);
    # errors: vie->vue (1 sub) + fr3 missing (3 del).
    assert (fr["metric"], fr["errors"], fr["ref_words"], fr["missing_hyps"]) == ("wer", 4, 9, 1)
    assert fr["value"] == pytest.approx(100 * 4 / 9)
    zh = sets[("test_zh", "asr")]
    assert (zh["metric"], zh["errors"], zh["ref_chars"]) == ("cer", 2, 7)
    en = sets[("test_en", "asr")]
    assert en["value"] == pytest.approx(100 / 6)
    st = sets[("test_fr", "st")]
    assert st["metric"] == "bleu" and st["value"] == pytest.approx(100.0) and "tok:13a" in st["signature"]
    ave = res["decodes"]["beam10"]["averages"]["test"]
    assert ave["asr"]["value"] == pytest.approx((100 * 4 / 9 + 100 * 2 / 7 + 100 / 6) / 3)
    assert ave["st"]["value"] == pytest.approx(100.0)
    md = (exp / "RESULTS.md").read_text(encoding="utf-8")
    # CER of a word-scored language: the same normalised texts, whitespace removed.
    refs = ["bonjour le monde", "c'est la vie", "un deux trois"]
    hyps = ["bonjour le monde", "c'est la vue", ""]
    assert fr["cer"] == pytest.approx(cer(refs, hyps)["cer"])
    assert fr["cer"] == pytest.approx(100 * (1 + len("undeuxtrois")) / len("bonjourlemondec'estlavieundeuxtrois"))
    assert zh["cer"] == zh["value"]
    assert f"| fr | 3 | 9 | 4 | 1 | 3 | 0 | 44.44 (WER) | {fr['cer']:.2f} |" in md
    assert "| zh | 2 | 7 chars | 2 | 1 | 0 | 1 | 28.57 (CER) | 28.57 |" in md
    assert f"**{ave['asr']['value']:.2f}**" in md
    assert "| fr→en | 3 | 100.00 |" in md
    assert "BLEU signature: `nrefs:1|" in md and "beam: 10" in md
    assert "1 utterances without hypothesis" in md
    assert "1 of 3 reference utterances have no hypothesis" in capsys.readouterr().err  # the command's log


def test_score_cli_errors_and_single_mode(tmp_path, capsys):
    exp, data = _fake_exp(tmp_path)
    # Default --max-bad-frac 0.05: one missing of three fails, naming the utterance.
    assert score_cli.main(["--exp", str(exp), "--data", str(data), "--no-normalize"]) == 1
    err = capsys.readouterr().err
    assert "ERROR:" in err and "'fr3'" in err and "max-bad-frac" in err
    hyp = exp / "decode_beam10" / "test_en" / "hyp.asr"
    out = tmp_path / "s.json"
    assert score_cli.main(["--ref", str(data / "test_en"), "--hyp", str(hyp), "--metric", "wer",
                           "--lang", "en", "--no-normalize", "--out", str(out)]) == 0
    # Without normalisation "The"/"the" and "On"/"on" differ: 2 subs + sat->sit = 3 of 6.
    assert json.loads(out.read_text(encoding="utf-8"))["errors"] == 3
    assert "%WER 50.00 [ 3 / 6" in capsys.readouterr().out
    _write(hyp, {"en1": "x", "nope": "y"})
    assert score_cli.main(["--ref", str(data / "test_en"), "--hyp", str(hyp), "--metric", "wer",
                           "--lang", "en", "--no-normalize"]) == 1
    assert "'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------------------- osoup-results


def _results_json(path: Path, label: str, seed: int | None, asr: dict, st: dict, with_cer: bool = True) -> Path:
    # the CER of a word-scored language is made up as half its WER; files written before the
    # CER column (with_cer=False) have none
    sets = [{"set": f"test_{k}", "split": "test", "lang": k, "task": "asr",
             "metric": "cer" if k == "zh" else "wer", "value": v,
             **({"cer": v if k == "zh" else v / 2} if with_cer else {})}
            for k, v in asr.items()]
    sets += [{"set": f"test_{k}", "split": "test", "lang": k, "task": "st", "metric": "bleu", "value": v}
             for k, v in st.items()]
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(
        {"exp": str(path), "tag": path.name, "label": None, "seed": seed,
         "decodes": {"beam10": {"sets": sets}}}), encoding="utf-8")
    return path


def test_results_tables_and_plots(tmp_path):
    a = _results_json(tmp_path / "vs", "vs", 1, {"en": 30.0, "fr": 20.0}, {"fr": 10.0})
    b1 = _results_json(tmp_path / "vm_seed1", "vm", 1, {"en": 26.0, "fr": 18.0}, {"fr": 13.0})
    b2 = _results_json(tmp_path / "vm_seed2", "vm", 2, {"en": 24.0, "fr": 19.0}, {"fr": 14.0})
    out = tmp_path / "cmp"
    assert results_cli.main(["--exps", str(a), str(b1), str(b2), "--out", str(out)]) == 0
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "| Lang | vs | vm |" in md
    sd_en = statistics.stdev([26.0, 24.0])  # 1.414
    assert f"| En | 30.0 | 25.0 ± {sd_en:.1f} |" in md
    # vm averages per replica: 22.0 and 21.5 -> 21.75 ± 0.35; vs: 25.0
    assert f"| Ave. | **25.0** | **21.8 ± {statistics.stdev([22.0, 21.5]):.1f}** |" in md
    assert "| Fr→En | 10.0 | 13.5 ± 0.7 |" in md
    cer_table = md[md.index("## ASR CER (%)"):md.index("## S2TT")]
    assert f"| En | 15.0 | 12.5 ± {sd_en / 2:.1f} |" in cer_table
    assert f"| Ave. | **12.5** | **10.9 ± {statistics.stdev([11.0, 10.75]):.1f}** |" in cer_table
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    vm = summary["methods"][1]
    assert vm["label"] == "vm" and vm["seeds"] == [1, 2]
    assert vm["asr_ave"]["mean"] == pytest.approx(21.75)
    assert vm["asr_cer"]["en"]["values"] == [13.0, 12.0]
    for name in ("radar.png", "tradeoff.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_radar_polygons_and_bars(tmp_path, monkeypatch):
    """Three or more languages: a polar panel; fewer: grouped bars (a polygon needs 3 axes)."""
    a = load_results(_results_json(tmp_path / "a", "a", 1, {"en": 30.0, "fr": 20.0, "de": 25.0}, {"fr": 10.0}))
    b = load_results(_results_json(tmp_path / "b", "b", 1, {"en": 26.0, "fr": 18.0, "de": 21.0}, {"fr": 13.0}))
    methods = gather([a, b])
    import matplotlib.figure

    made = []
    orig = matplotlib.figure.Figure.add_subplot

    def spy(self, *args, **kw):
        ax = orig(self, *args, **kw)
        made.append(ax.name)
        return ax

    monkeypatch.setattr(matplotlib.figure.Figure, "add_subplot", spy)
    assert radar_plot(methods, tmp_path / "r.png").stat().st_size > 5000
    assert made == ["polar", "rectilinear"]  # ASR: 3 languages; S2TT: 1


def test_results_grouping_errors(tmp_path):
    a = _results_json(tmp_path / "a", "x", 1, {"en": 30.0}, {})
    b = _results_json(tmp_path / "b", "x", 1, {"en": 20.0}, {})
    with pytest.raises(DataError, match="same seed"):
        gather([load_results(a), load_results(b)], labels=["x", "x"])
    methods = gather([load_results(a), load_results(b)], labels=["A", "B"])
    assert [m.label for m in methods] == ["A", "B"] and methods[1].asr["en"] == [20.0]
    # ASR only: the trade-off plot is skipped, the radar plot and tables are still written.
    out = tmp_path / "cmp"
    assert results_cli.main(["--exps", str(a), str(b), "--labels", "A B", "--out", str(out)]) == 0
    assert (out / "radar.png").stat().st_size > 0 and not (out / "tradeoff.png").exists()
    assert results_cli.main(["--exps", str(tmp_path / "missing"), "--out", str(out)]) == 1


COMPARISON_MD = """# Comparison (test sets)

## ASR CER/WER (%), lower is better

| Lang | vs | vm | old |
|---|---:|---:|---:|
| En | 30.0 | 25.0 ± 1.4 | 27.0 |
| Ca | – | – | 17.0 |
| Zh (CER) | 9.0 | 7.5 ± 0.7 | – |
| Ave. | **19.5** † | **16.2 ± 1.1** † | **22.0** † |

## ASR CER (%), every language by character, lower is better

| Lang | vs | vm | old |
|---|---:|---:|---:|
| En | 15.0 | 13.0 | – |
| Zh | 9.0 | 8.0 | – |
| Ave. | **12.0** | **10.5** | – |

## S2TT BLEU, higher is better

| Lang→En | vs | vm | old |
|---|---:|---:|---:|
| Fr→En | 10.0 | 13.5 ± 0.7 | – |
| Ave. | **10.0** | **13.5 ± 0.7** | – |

Ave.: unweighted mean over languages; with seed replicas, mean ± sample std over seeds of each replica's value.
†: average over fewer languages than the table rows.

Experiments:

- vs (seed 1): `R/vs/results.json`
- vm (seeds 1, 2): `R/vm_seed1/results.json`, `R/vm_seed2/results.json`
- old: `R/old/results.json`
"""


def test_comparison_markdown_in_full(tmp_path):
    """The whole text: paper's languages first, CER-scored rows marked, '–' for absent numbers,
    † on averages over fewer languages than the rows; results.json files written before the CER
    column (vm's second seed, old) count in no CER cell or average."""
    paths = [_results_json(tmp_path / "vs", "vs", 1, {"en": 30.0, "zh": 9.0}, {"fr": 10.0}),
             _results_json(tmp_path / "vm_seed1", "vm", 1, {"en": 26.0, "zh": 8.0}, {"fr": 13.0}),
             _results_json(tmp_path / "vm_seed2", "vm", 2, {"zh": 7.0, "en": 24.0}, {"fr": 14.0}, with_cer=False),
             _results_json(tmp_path / "old", "old", None, {"ca": 17.0, "en": 27.0}, {}, with_cer=False)]
    methods = gather([load_results(p) for p in paths])
    assert comparison_markdown(methods).replace(str(tmp_path), "R") == COMPARISON_MD
    vm = methods[1]
    assert vm.asr == {"en": [26.0, 24.0], "zh": [8.0, 7.0]} and vm.asr_cer == {"en": [13.0], "zh": [8.0]}
    assert vm.averages("asr") == [17.0, 15.5] and vm.averages("asr_cer") == [10.5]


def test_averages_are_derived_not_read(tmp_path):
    """A stale stored "Ave." is ignored on reading and recomputed from the entries on writing."""
    path = _results_json(tmp_path / "a", "a", 1, {"en": 30.0, "fr": 20.0}, {"fr": 10.0})
    data = json.loads((path / "results.json").read_text(encoding="utf-8"))
    data["decodes"]["beam10"]["averages"] = {"test": {"asr": {"value": 99.0, "langs": ["en"]}}}
    (path / "results.json").write_text(json.dumps(data), encoding="utf-8")
    loaded = load_results(path)
    assert "averages" not in loaded["decodes"]["beam10"]
    assert gather([loaded])[0].averages("asr") == [25.0]
    out = exp_json(data)["decodes"]["beam10"]
    assert out["averages"] == {"test": {"asr": {"value": 25.0, "langs": ["en", "fr"]},
                                        "st": {"value": 10.0, "langs": ["fr"]}}}
    assert list(out) == ["sets", "averages"] and data["decodes"]["beam10"]["averages"]["test"]["asr"]["value"] == 99.0


def test_malformed_results_json_names_the_file(tmp_path):
    path = _results_json(tmp_path / "a", "a", 1, {"en": 30.0}, {})
    data = json.loads((path / "results.json").read_text(encoding="utf-8"))
    del data["decodes"]["beam10"]["sets"][0]["metric"]
    (path / "results.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match=r"a/results.json: decode 'beam10': an entry lacks metric"):
        gather([load_results(path)])
    data["decodes"]["beam10"] = {}
    (path / "results.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match=r"a/results.json: decode 'beam10' has no 'sets' list"):
        load_results(path)


def test_language_order_and_labels():
    assert sort_langs(["zh", "it", "en", "ca", "ja", "en"]) == ["en", "ca", "zh", "it", "ja"]
    assert [lang_label("zh", m) for m in ("asr", "asr_cer", "st")] == ["Zh (CER)", "Zh", "Zh→En"]
    assert lang_label("fr", "asr") == "Fr" and lang_label("ja", "asr") == "Ja (CER)"
    assert lang_label("fr", "st", title=False) == "fr→en" and lang_label("zh", "asr", title=False) == "zh"


def test_score_package_imports_no_upper_layer():
    """score/ sits below data/, train/, conflict/ and bin/ (docs/design.md layering); the
    data-dir reader it needs lives in osoup.fileio and data/ re-exports it."""
    import ast

    from osoup.data import datadir
    from osoup.fileio import read_scp

    assert datadir.read_scp is read_scp
    pkg = Path(__file__).resolve().parents[1] / "osoup" / "score"
    imported = set()
    for path in pkg.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
    assert {"osoup.fileio", "osoup.score.langs"} <= imported  # the walk sees the package's imports
    upper = ("osoup.data", "osoup.train", "osoup.conflict", "osoup.bin", "osoup.nets", "osoup.moo")
    assert sorted(m for m in imported if m.startswith(upper)) == []
