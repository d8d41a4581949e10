"""Methods compared across experiments (``osoup-results``).

Each experiment's scored sets of one split become a :class:`Replica`; replicas sharing a label
are one :class:`Method` (seed replicas, reported as mean ± std as in the paper's Tables 1, 2
and 5). Per-language values and each replica's "Ave." are computed from the stored
per-language entries, so they cannot disagree with them.

Under one label, experiments with the same outputs are seed replicas and experiments with
disjoint outputs are the models of one deployment (the rule of
:func:`osoup.score.resource_table.part_of`), e.g. the ``single`` baseline: one model per
supervised objective. Such a method's replica of seed s is the union of its models' seed-s
results. A static sweep (:func:`select_on_dev`) is reported by the grid point with the lowest
dev loss; every point's dev number goes into the comparison's results.json and RESULTS.md.
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from osoup.fileio import DataError
from osoup.score.resource_table import part_of

# What a results.json entry needs for the comparison (files older than the CER column lack "cer").
ENTRY_KEYS = ("split", "task", "lang", "value")


@dataclass
class Replica:
    """One experiment's entries of the compared split: task -> language -> results.json entry."""

    exp: str
    seed: int | None
    asr: dict[str, dict]
    st: dict[str, dict]
    parts: list[str] = field(default_factory=list)  # a deployment's replica: the experiments it joins

    @property
    def heads(self) -> list[str]:
        """The outputs scored: ``asr_<lang>`` and ``st_<lang>`` (the models' head names)."""
        return [f"asr_{lang}" for lang in self.asr] + [f"st_{lang}" for lang in self.st]

    def values(self, measure: str) -> dict[str, float]:
        """Language -> this experiment's number of ``measure``: ``asr`` (WER/CER as scored),
        ``asr_cer`` (CER of every language; only where the entry has one, as results.json files
        written before the CER column lack it) or ``st`` (BLEU)."""
        if measure == "asr_cer":
            return {lang: e["cer"] for lang, e in self.asr.items() if "cer" in e}
        return {lang: e["value"] for lang, e in getattr(self, measure).items()}

    def average(self, measure: str) -> float | None:
        """Unweighted mean over this experiment's languages; None without a value for each."""
        entries = self.st if measure == "st" else self.asr
        vals = self.values(measure)
        if not entries or len(vals) != len(entries):
            return None
        return statistics.fmean(vals.values())


@dataclass
class Method:
    """One column of the comparison: an experiment, or seed replicas of one."""

    label: str
    replicas: list[Replica] = field(default_factory=list)
    selection: dict | None = None  # a static sweep's grid and the point chosen on dev (select_on_dev)

    @property
    def exps(self) -> list[str]:
        return [e for r in self.replicas for e in (r.parts or [r.exp])]

    @property
    def seeds(self) -> list:
        return [r.seed for r in self.replicas]

    def values(self, measure: str) -> dict[str, list[float]]:
        """Language -> one value per replica that has it (first replica's language order)."""
        out: dict[str, list[float]] = {}
        for r in self.replicas:
            for lang, v in r.values(measure).items():
                out.setdefault(lang, []).append(v)
        return out

    def averages(self, measure: str) -> list[float]:
        """Each replica's average over languages (replicas without one are left out)."""
        return [a for a in (r.average(measure) for r in self.replicas) if a is not None]

    @property
    def asr(self) -> dict[str, list[float]]:
        return self.values("asr")

    @property
    def asr_cer(self) -> dict[str, list[float]]:
        return self.values("asr_cer")

    @property
    def st(self) -> dict[str, list[float]]:
        return self.values("st")

    @property
    def asr_metric(self) -> dict[str, str]:
        """Language -> ``wer`` or ``cer`` as its ASR entries were scored (latest replica)."""
        return {lang: e["metric"] for r in self.replicas for lang, e in r.asr.items()}


def comparison_measures(methods: list[Method]) -> list[str]:
    """The measures a comparison reports: ASR in each language's own unit, ASR CER of every
    language only when some language is scored by word, and S2TT BLEU."""
    measures = ["asr"]
    if any(metric == "wer" for m in methods for metric in m.asr_metric.values()):
        measures.append("asr_cer")
    return measures + ["st"]


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    if len(values) == 1:
        return values[0], None
    return statistics.fmean(values), statistics.stdev(values)


def default_label(results: dict) -> str:
    """The results' label, else the experiment dir name without a ``_seedN`` suffix."""
    if results.get("label"):
        return str(results["label"])
    return re.sub(r"[_-]seed\d+$", "", results.get("tag") or Path(results["_path"]).parent.name)


def _decode_tag(res: dict, decode_tag: str | None) -> str:
    """The decode tag to compare: the one asked for, else the experiment's only one."""
    where, tags = res["_path"], list(res["decodes"])
    if decode_tag is not None:
        if decode_tag not in res["decodes"]:
            raise DataError(f"{where}: no decode tag {decode_tag!r} (has {', '.join(tags)})")
        return decode_tag
    if len(tags) == 1:
        return tags[0]
    raise DataError(f"{where}: several decode tags ({', '.join(tags)}); choose one with --decode-tag")


def _check_entry(e, where: str) -> None:
    """A results.json set entry has what the comparison reads (ASR entries also their metric)."""
    keys = ENTRY_KEYS + (("metric",) if isinstance(e, dict) and e.get("task") == "asr" else ())
    absent = [k for k in keys if k not in e] if isinstance(e, dict) else list(keys)
    if absent:
        raise DataError(f"{where}: an entry lacks {', '.join(absent)}: {e!r}")


def make_replica(res: dict, split: str, decode_tag: str | None = None) -> Replica:
    """The entries of ``split`` in one loaded results.json."""
    dtag = _decode_tag(res, decode_tag)
    for e in res["decodes"][dtag]["sets"]:
        _check_entry(e, f"{res['_path']}: decode {dtag!r}")
    # where the entry's texts are read back (paired significance): the scoring options and exp dir
    source = {"_normalized": res.get("normalized", True), "_exp_dir": str(Path(res["_path"]).parent)}
    sets = [{**e, **source} for e in res["decodes"][dtag]["sets"] if e["split"] == split]
    if not sets:
        raise DataError(f"{res['_path']}: no '{split}' sets in decode {dtag!r}")
    return Replica(exp=res["_path"], seed=res.get("seed"),
                   asr={e["lang"]: e for e in sets if e["task"] == "asr"},
                   st={e["lang"]: e for e in sets if e["task"] == "st"})


def _add_replica(m: Method, rep: Replica) -> None:
    """Add a seed replica; it needs its own seed and the same languages as the others."""
    if m.replicas:
        first = m.replicas[0]
        if rep.seed is None or None in m.seeds or rep.seed in m.seeds:
            raise DataError(f"{rep.exp}: label {m.label!r} already used by {first.exp} with the same seed "
                            f"({rep.seed}); replicas need distinct seeds, other methods distinct labels")
        if set(rep.asr) != set(first.asr) or set(rep.st) != set(first.st):
            raise DataError(f"{rep.exp}: seed replica of {m.label!r} covers other languages than {first.exp}")
    m.replicas.append(rep)


def _join(reps: list[Replica]) -> Replica:
    """One replica of a deployment: the results of its models (disjoint outputs) together."""
    return Replica(exp=" + ".join(r.exp for r in reps), seed=reps[0].seed,
                   asr={k: v for r in reps for k, v in r.asr.items()},
                   st={k: v for r in reps for k, v in r.st.items()}, parts=[r.exp for r in reps])


def _deployment_replicas(label: str, parts: dict[str, list[Replica]]) -> list[Replica]:
    """Seed s of a method made of several models: the join of each model's seed-s replica;
    every model needs the same seeds."""
    by_part = {p: {r.seed: r for r in reps} for p, reps in parts.items()}
    first, seeds = next(iter(by_part.items()))
    for part, reps in by_part.items():
        if set(reps) != set(seeds):
            raise DataError(f"{part}: method {label!r} joins one model per output, each with the same seeds; "
                            f"{part} has seeds {sorted(reps, key=str)}, {first} has {sorted(seeds, key=str)}")
    return [_join([reps[s] for reps in by_part.values()]) for s in seeds]


def _method(label: str, reps: list[Replica]) -> Method:
    """The method of the replicas under ``label``: seed replicas of one model, or the seed-wise
    joins of several models with disjoint outputs (see the module docstring)."""
    parts: dict[str, Method] = {}
    heads: dict[str, list[str]] = {}
    for rep in reps:
        part = part_of(label, rep.exp, rep.heads, heads)
        if part is None:
            part, heads[rep.exp] = rep.exp, rep.heads
        _add_replica(parts.setdefault(part, Method(label)), rep)
    if len(parts) == 1:
        return next(iter(parts.values()))
    return Method(label, _deployment_replicas(label, {p: m.replicas for p, m in parts.items()}))


def gather(
    results: list[dict],
    labels: list[str] | None = None,
    split: str = "test",
    decode_tag: str | None = None,
) -> list[Method]:
    """Group experiments into methods (same label: seed replicas, or the models of one
    deployment when their outputs are disjoint) and pick their numbers."""
    if labels is not None and len(labels) != len(results):
        raise DataError(f"{len(labels)} labels for {len(results)} experiments")
    grouped: dict[str, list[Replica]] = {}
    for i, res in enumerate(results):
        label = labels[i] if labels is not None else default_label(res)
        grouped.setdefault(label, []).append(make_replica(res, split, decode_tag))
    return [_method(label, reps) for label, reps in grouped.items()]


DEV_CRITERION = ("mean dev CTC loss of the supervised objectives of the model decoded (best.pt: "
                 "train_summary.json best_dev), averaged over seeds; chosen before any test number is read")


def select_on_dev(label: str, exps: list[str], points: list[str], devs: list[float]) -> tuple[list[str], dict]:
    """A static sweep: experiment ``exps[i]`` trained grid point ``points[i]`` and reached the
    dev number ``devs[i]`` (lower is better; seeds of a point share its name). Returns the
    experiments of the point with the lowest mean dev number (the first listed on a tie) and the
    report of every point, for the comparison's results.json and RESULTS.md."""
    if not (len(exps) == len(points) == len(devs)) or not exps:
        raise DataError(f"sweep {label!r}: {len(exps)} experiments, {len(points)} grid points, {len(devs)} dev numbers")
    grid: dict[str, dict] = {}
    for exp, point, dev in zip(exps, points, devs):
        g = grid.setdefault(point, {"point": point, "exps": [], "dev_values": []})
        g["exps"].append(exp)
        g["dev_values"].append(float(dev))
    for g in grid.values():
        g["dev"] = statistics.fmean(g["dev_values"])
    finite = [g for g in grid.values() if math.isfinite(g["dev"])]
    if not finite:
        raise DataError(f"sweep {label!r}: no grid point has a finite dev number ({', '.join(exps)})")
    best = min(finite, key=lambda g: g["dev"])
    report = {"criterion": DEV_CRITERION, "chosen": best["point"], "points": list(grid.values())}
    return list(best["exps"]), report


def summary(methods: list[Method], split: str) -> dict:
    """The comparison's results.json: per method, language and measure the mean, std and
    per-replica values, and the same for each measure's average."""
    out: dict = {"split": split, "methods": []}
    for m in methods:
        entry: dict = {"label": m.label, "exps": m.exps, "seeds": m.seeds, "asr": {}, "asr_cer": {}, "st": {}}
        metric_of = m.asr_metric
        for measure in ("asr", "st", "asr_cer"):
            for lang, vals in m.values(measure).items():
                mean, std = mean_std(vals)
                entry[measure][lang] = {"mean": mean, "std": std, "values": vals}
                if measure == "asr":
                    entry[measure][lang]["metric"] = metric_of[lang]
            per = m.averages(measure)
            if per:
                mean, std = mean_std(per)
                entry[f"{measure}_ave"] = {"mean": mean, "std": std, "values": per}
        if any(r.parts for r in m.replicas):
            entry["models"] = [{"seed": r.seed, "exps": r.parts} for r in m.replicas]
        if m.selection is not None:
            entry["selected_on_dev"] = m.selection
        out["methods"].append(entry)
    return out
