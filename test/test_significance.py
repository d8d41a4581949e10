"""Paired bootstrap significance of the method comparison (osoup.score.bootstrap,
osoup.score.significance) and its marks in osoup-results' RESULTS.md, results.json and plots."""
from __future__ import annotations

import json
import random
from pathlib import Path

import jiwer
import numpy as np
import pytest
import sacrebleu

from osoup.bin import results as results_cli
from osoup.bin import score as score_cli
from osoup.fileio import DataError
from osoup.score import plots
from osoup.score.bootstrap import (bleu_stats, corpus_values, draw_counts, edit_stats, make_delta, observed_value,
                                   resampled_values)
from osoup.score.comparison import gather
from osoup.score.metrics import bleu, cer, wer
from osoup.score.resultfiles import load_results
from osoup.score.significance import AVE, Significance, paired_significance

WORDS = [f"w{i}" for i in range(40)]


def _corpus(n: int, seed: int = 0) -> list[str]:
    rnd = random.Random(seed)
    return [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 9))) for _ in range(n)]


def _garble(refs: list[str], frac_wrong: float, seed: int) -> list[str]:
    """Hypotheses equal to the references except a fraction of utterances whose words are
    mostly replaced."""
    rnd = random.Random(seed)
    out = []
    for r in refs:
        if rnd.random() < frac_wrong:
            out.append(" ".join(w if rnd.random() < 0.3 else rnd.choice(WORDS) for w in r.split()[:-1]))
        else:
            out.append(r)
    return out


def _resampled(items: list[str], counts: np.ndarray) -> list[str]:
    return [items[i] for i in np.repeat(np.arange(len(items)), counts)]


# ---------------------------------------------------------------------------- statistics vs direct computation


def test_wer_and_cer_of_a_resample_match_a_direct_computation():
    refs, hyps = _corpus(25), _garble(_corpus(25), 0.6, 1)
    stats = edit_stats(refs, hyps, "wer")
    assert (stats[:, 0].sum(), stats[:, 1].sum()) == (wer(refs, hyps)["errors"], wer(refs, hyps)["ref_words"])
    cstats = edit_stats(refs, hyps, "cer")
    for counts in next(draw_counts(len(refs), 5, np.random.default_rng(3))):
        r, h = _resampled(refs, counts), _resampled(hyps, counts)
        assert corpus_values("wer", counts @ stats)[0] == pytest.approx(100 * jiwer.wer(r, h))
        assert corpus_values("cer", counts @ cstats)[0] == pytest.approx(cer(r, h)["cer"])
    assert counts.sum() == len(refs)


def test_bleu_of_the_identity_and_of_a_resample_equal_sacrebleu():
    refs = ["The cat sat on the mat.", "Hello, world!", "One two three four.", "That is life."]
    hyps = ["The cat sat on a mat.", "Hello world!", "One two three.", "That is my life."]
    stats = bleu_stats(refs, hyps)
    identity = corpus_values("bleu", stats.sum(axis=0))[0]
    assert identity == pytest.approx(sacrebleu.BLEU(tokenize="13a").corpus_score(hyps, [refs]).score)
    assert identity == pytest.approx(bleu(refs, hyps)[0])
    counts = np.array([2, 0, 1, 1])
    assert corpus_values("bleu", counts @ stats)[0] == pytest.approx(
        bleu(_resampled(refs, counts), _resampled(hyps, counts))[0])


def test_seed_replicas_are_averaged_inside_every_resample():
    refs = _corpus(20, 5)
    seeds = [_garble(refs, 0.5, 11), _garble(refs, 0.3, 12)]
    systems = {"m": [edit_stats(refs, h, "wer") for h in seeds]}
    blocks = list(draw_counts(len(refs), 7, np.random.default_rng(0), rows=3))
    assert [b.shape for b in blocks] == [(3, 20), (3, 20), (1, 20)]
    got = resampled_values("wer", systems, blocks)["m"]
    direct = [np.mean([wer(_resampled(refs, c), _resampled(h, c))["wer"] for h in seeds])
              for block in blocks for c in block]
    assert got == pytest.approx(direct)
    assert observed_value("wer", systems["m"]) == pytest.approx(np.mean([wer(refs, h)["wer"] for h in seeds]))


# ---------------------------------------------------------------------------- the test's verdicts


def _delta(metric: str, ref_hyps: list[str], sys_hyps: list[str], refs: list[str], n: int = 500):
    stats = bleu_stats if metric == "bleu" else (lambda r, h: edit_stats(r, h, metric))
    systems = {"ref": [stats(refs, ref_hyps)], "sys": [stats(refs, sys_hyps)]}
    values = resampled_values(metric, systems, draw_counts(len(refs), n, np.random.default_rng(12345)))
    observed = observed_value(metric, systems["sys"]) - observed_value(metric, systems["ref"])
    return make_delta(values["sys"] - values["ref"], observed, metric != "bleu")


def test_identical_systems_are_not_significant():
    refs = _corpus(40, 2)
    hyps = _garble(refs, 0.5, 3)
    for metric in ("wer", "cer", "bleu"):
        d = _delta(metric, hyps, list(hyps), refs)
        assert d.low <= 0.0 <= d.high and d.observed == 0.0
        assert not d.significant and not d.better and d.mark == ""


def test_a_clearly_better_system_is_significant_with_the_right_sign():
    refs = _corpus(60, 4)
    good, bad = _garble(refs, 0.1, 5), _garble(refs, 0.9, 6)
    d = _delta("wer", bad, good, refs)  # good − bad: fewer errors
    assert d.high < 0 and d.observed < 0 and d.significant and d.better and d.mark == "*"
    d = _delta("wer", good, bad, refs)
    assert d.low > 0 and d.significant and not d.better and d.mark == "‡"
    d = _delta("bleu", bad, good, refs)  # BLEU: higher is better
    assert d.low > 0 and d.observed > 0 and d.better and d.mark == "*"
    assert d.low <= d.mean <= d.high


# ---------------------------------------------------------------------------- osoup-results on a fake exp tree


def _write(path: Path, lines: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v}\n" for k, v in sorted(lines.items())), encoding="utf-8")


N_UTTS = 40


def _data(root: Path, n: int = N_UTTS) -> Path:
    """Reference data dirs: test_en (ASR), test_fr (ASR and translation into English)."""
    data = root / "dump" / "fbank"
    for lang, seed in (("en", 1), ("fr", 2)):
        ids = [f"{lang}{i:03d}" for i in range(n)]
        _write(data / f"test_{lang}" / "text", dict(zip(ids, _corpus(n, seed))))
    _write(data / "test_fr" / "text.en", dict(zip([f"fr{i:03d}" for i in range(n)], _corpus(n, 3))))
    return data


def _exp(root: Path, data: Path, name: str, label: str, seed: int, asr_wrong: float, st_wrong: float) -> Path:
    """An experiment decoded and scored by osoup-score: hypotheses wrong on the given fractions."""
    exp = root / "exp" / name
    for set_name, task, text in (("test_en", "asr", "text"), ("test_fr", "asr", "text"),
                                 ("test_fr", "st", "text.en")):
        refs = dict(line.split(" ", 1) for line in (data / set_name / text).read_text(encoding="utf-8").splitlines())
        ids = sorted(refs)
        wrong = asr_wrong if task == "asr" else st_wrong
        hyps = _garble([refs[u].strip() for u in ids], wrong, sum(map(ord, set_name + task)) + seed)
        _write(exp / "decode_greedy" / set_name / f"hyp.{task}", dict(zip(ids, hyps)))
    assert score_cli.main(["--exp", str(exp), "--data", str(data), "--label", label, "--seed", str(seed)]) == 0
    return exp


def _tree(root: Path) -> list[Path]:
    data = _data(root)
    return [_exp(root, data, "joint_seed1", "joint", 1, 0.5, 0.5),
            _exp(root, data, "joint_seed2", "joint", 2, 0.5, 0.5),
            _exp(root, data, "vs", "vs", 1, 0.05, 0.95),   # far better ASR, far worse BLEU
            _exp(root, data, "vc", "vc", 1, 0.5, 0.5)]     # joint's hypotheses of seed 1


def test_results_md_marks_significant_differences(tmp_path, monkeypatch):
    exps = _tree(tmp_path)
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or Path(path))
    out = tmp_path / "cmp"
    assert results_cli.main(["--exps", *map(str, exps), "--out", str(out), "--bootstrap", "300"]) == 0
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    sig = summary["significance"]
    assert (sig["reference"], sig["resamples"], sig["seed"]) == ("joint", 300, 12345)
    cmp = {(c["measure"], c["method"], c["lang"]): c for c in sig["comparisons"]}
    vs_en, vc_en = cmp[("asr", "vs", "en")], cmp[("asr", "vc", "en")]
    assert vs_en["significant"] and vs_en["better"] and vs_en["high"] < 0
    assert cmp[("st", "vs", "fr")]["significant"] and not cmp[("st", "vs", "fr")]["better"]
    assert not vc_en["significant"] and vc_en["low"] <= 0 <= vc_en["high"]
    assert cmp[("asr", "vs", AVE)]["better"] and ("asr", "joint", "en") not in cmp
    # the observed difference is the difference of the table's means (joint: mean of two seeds)
    joint, vs = summary["methods"][0], summary["methods"][1]
    assert vs_en["delta"] == pytest.approx(vs["asr"]["en"]["mean"] - joint["asr"]["en"]["mean"])
    # marks in the main tables, the legend and the difference tables
    assert f"| En | {joint['asr']['en']['mean']:.1f} ± " in md
    assert f"| {vs['asr']['en']['mean']:.1f} * |" in md and f"| {vs['st']['fr']['mean']:.1f} ‡ |" in md
    assert "## Paired significance vs joint" in md
    assert "300 resamples, seed 12345" in md and "BLEU signature: `nrefs:1|" in md and "tok:13a" in md
    assert "### Difference to joint: ASR WER (%), lower is better" in md
    assert f"| En | {vs_en['delta']:+.1f} [{vs_en['low']:+.1f}, {vs_en['high']:+.1f}] * | " in md
    vc_cell = f"{vc_en['delta']:+.1f} [{vc_en['low']:+.1f}, {vc_en['high']:+.1f}] |"
    assert vc_cell in md and md.index("| Lang | joint | vs | vc |") < md.index("## Paired significance")
    # the trade-off plot: vs filled and labelled with its marks, vc hollow
    tradeoff = figures[-1].axes[0]
    assert [t.get_text() for t in tradeoff.texts] == ["joint", "vs (ASR *, BLEU ‡)", "vc"]
    faces = [line.get_markerfacecolor() for line in tradeoff.lines if line.get_marker() == "o"]
    assert faces[1] != "none" and faces[0] == faces[2] == "none"


def test_radar_vertices_filled_where_significant(tmp_path, monkeypatch):
    """Three languages: polygons whose vertices are filled where the difference is significant."""
    def res(path: Path, asr: dict) -> dict:
        sets = [{"set": f"test_{k}", "split": "test", "lang": k, "task": "asr", "metric": "wer", "value": v}
                for k, v in asr.items()]
        path.mkdir(parents=True)
        (path / "results.json").write_text(json.dumps({"exp": str(path), "seed": 1, "decodes": {"g": {"sets": sets}}}),
                                           encoding="utf-8")
        return load_results(path)

    methods = gather([res(tmp_path / "joint", {"en": 30.0, "fr": 20.0, "de": 25.0}),
                      res(tmp_path / "vm", {"en": 20.0, "fr": 21.0, "de": 24.0})])
    sig = Significance("joint", 100, 7, deltas={("asr", "vm", "en"): make_delta(np.array([-11.0, -9.0]), -10.0, True),
                                                ("asr", "vm", "fr"): make_delta(np.array([-1.0, 3.0]), 1.0, True)})
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or Path(path))
    plots.radar_plot(methods, tmp_path / "r.png", sig)
    (ax,) = figures[0].axes
    assert ax.name == "polar"
    vm_color = [line.get_color() for line in ax.lines if line.get_label() == "vm"][0]
    dots = [line for line in ax.lines if line.get_marker() == "o" and line.get_color() == vm_color]
    assert [d.get_markerfacecolor() != "none" for d in dots] == [True, False, False]  # en, fr, de
    assert "filled marker or * / ‡" in figures[0].texts[-1].get_text()


def test_results_without_texts_or_reference_say_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: Path(path))  # the figures are not looked at here
    exps = _tree(tmp_path)
    out = tmp_path / "cmp"
    assert results_cli.main(["--exps", *map(str, exps), "--out", str(out), "--bootstrap", "0"]) == 0
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "Paired significance" not in md and " * |" not in md
    assert "significance" not in json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results_cli.main(["--exps", *map(str, exps[2:]), "--out", str(out), "--bootstrap", "50"]) == 0
    assert "Not computed: no method is labelled 'joint'" in (out / "RESULTS.md").read_text(encoding="utf-8")
    assert results_cli.main(["--exps", *map(str, exps), "--out", str(out), "--bootstrap-ref", "nosuch"]) == 1
    assert "--bootstrap-ref: no method is labelled 'nosuch'" in capsys.readouterr().err
    assert results_cli.main(["--exps", *map(str, exps), "--out", str(out), "--bootstrap", "-1"]) == 1
    (exps[2] / "decode_greedy" / "test_en" / "hyp.asr").unlink()
    assert results_cli.main(["--exps", *map(str, exps), "--out", str(out), "--bootstrap", "50"]) == 0
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "Not computed: the decoded texts cannot be read back:" in md and "vs/decode_greedy/test_en/hyp.asr" in md


def test_hypotheses_changed_after_scoring_are_an_error(tmp_path, capsys):
    exps = _tree(tmp_path)
    hyp = exps[2] / "decode_greedy" / "test_fr" / "hyp.asr"
    hyp.write_text(hyp.read_text(encoding="utf-8").replace("w1", "zz"), encoding="utf-8")
    assert results_cli.main(["--exps", *map(str, exps), "--out", str(tmp_path / "cmp"), "--bootstrap", "20"]) == 1
    err = capsys.readouterr().err
    assert "ERROR:" in err and str(hyp) in err and "rerun stage 8" in err


def test_mismatched_utterance_ids_name_the_sets(tmp_path):
    exps = _tree(tmp_path)
    other = _data(tmp_path / "other", n=N_UTTS - 3)  # a test set of fewer utterances
    odd = _exp(tmp_path, other, "odd", "odd", 1, 0.2, 0.2)
    methods = gather([load_results(p) for p in (*exps[:2], odd)])
    with pytest.raises(DataError, match=r"test_en and test_en \(asr\) score different utterances") as err:
        paired_significance(methods, resamples=10)
    msg = str(err.value)
    assert "joint_seed1/decode_greedy/test_en/hyp.asr (40 utts" in msg and "odd/decode_greedy" in msg
    assert "(37 utts" in msg and "'en037' only in the first" in msg


def test_a_moved_experiment_is_read_from_its_new_place(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: Path(path))
    exps = _tree(tmp_path)
    moved = tmp_path / "elsewhere"
    exps[2].rename(moved)  # results.json still names exp/vs/decode_greedy/...
    out = tmp_path / "cmp"
    args = ["--exps", *map(str, [*exps[:2], moved, exps[3]]), "--out", str(out), "--bootstrap", "30"]
    assert results_cli.main(args) == 0
    sig = json.loads((out / "results.json").read_text(encoding="utf-8"))["significance"]
    assert sig["note"] is None and ("asr", "vs", "en") in {(c["measure"], c["method"], c["lang"])
                                                           for c in sig["comparisons"]}
