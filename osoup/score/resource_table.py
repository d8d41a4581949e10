"""The resource table (the paper's Table 9): what deploying each compared method costs.

A method is deployed as the models it needs to produce all of its outputs. Experiments given
under one label (``osoup-results --labels``) are either seed replicas of one model (the same
heads: the first listed is measured, the others are listed) or parts of one deployment (disjoint
heads, e.g. one single-objective model per supervised objective: all are measured and summed).
Parameters, packed sizes and load times add up over the parts (a deployment loads every model);
the real-time factor is the compute of all parts over the audio of the evaluation utterances,
each counted once (every output of that audio is produced).

The per-model numbers are measured by :mod:`osoup.train.resources`; this module only groups,
sums and writes them (``RESOURCES.md``, ``resources.json``). ``test/test_resources.py``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping

from osoup.fileio import DataError, atomic_write

PARAM_KEYS = ("encoder", "heads", "ssl", "total")
RESOURCES_MD = "RESOURCES.md"
RESOURCES_JSON = "resources.json"


@dataclass
class Deployment:
    """One column of the table: the models (``parts``) a method needs, and the seed replicas
    that were not measured (``replicas``: part -> its other experiments)."""

    label: str
    parts: list[str] = field(default_factory=list)
    heads: dict[str, list[str]] = field(default_factory=dict)
    replicas: dict[str, list[str]] = field(default_factory=dict)

    def add(self, exp: str, heads: list[str]) -> None:
        """A replica when ``heads`` equal a part's heads, a new part when disjoint from all."""
        part = part_of(self.label, exp, heads, self.heads)
        if part is not None:
            self.replicas[part].append(exp)
            return
        self.parts.append(exp)
        self.heads[exp] = list(heads)
        self.replicas[exp] = []


def part_of(label: str, exp: str, heads: Collection[str], parts: Mapping[str, Collection[str]]) -> str | None:
    """The grouping rule of the experiments under one label (also :func:`osoup.score.comparison.gather`):
    the part (first experiment, -> its heads in ``parts``) whose seed replica ``exp`` is, i.e.
    the one with the same heads; None when ``heads`` are disjoint from every part's (``exp``
    is another model of the same deployment). Overlapping but different heads are an error."""
    for part, part_heads in parts.items():
        if set(heads) == set(part_heads):
            return part
        shared = sorted(set(heads) & set(part_heads))
        if shared:
            raise DataError(f"{exp}: method {label!r} already has a model for {', '.join(shared)} "
                            f"({part}); a method's experiments must be seed replicas (the same heads) "
                            f"or parts of one deployment (disjoint heads)")
    return None


def plan_deployments(exps: list[str], labels: list[str], heads: list[list[str]]) -> list[Deployment]:
    """Group experiments by label into deployments (first appearance order)."""
    if not len(exps) == len(labels) == len(heads):
        raise DataError(f"{len(labels)} labels for {len(exps)} experiments")
    out: dict[str, Deployment] = {}
    for exp, label, h in zip(exps, labels, heads):
        if not h:
            raise DataError(f"{exp}: no supervised objective (head) to deploy")
        out.setdefault(label, Deployment(label)).add(exp, h)
    return list(out.values())


def method_totals(dep: Deployment, models: dict[str, dict]) -> dict:
    """A deployment's sums over its parts (``models``: exp -> the entry of
    :func:`osoup.train.resources.measure_experiment`)."""
    parts = [models[e] for e in dep.parts]
    audio: dict[str, float] = {}
    for p in parts:
        for name, s in p["decode"]["sets"].items():
            audio.setdefault(name, s["audio_sec"])
    compute = sum(s["compute_sec"] for p in parts for s in p["decode"]["sets"].values())
    audio_sec = sum(audio.values())
    return {"label": dep.label, "models": len(parts), "exps": dep.parts, "replicas_not_measured": dep.replicas,
            "outputs": sorted(h for p in parts for h in p["heads"]),
            "params": {k: sum(p["params"][k] for p in parts) for k in PARAM_KEYS},
            "size_bytes": sum(p["size_bytes"] for p in parts),
            "load_sec": sum(p["load_sec"]["median"] for p in parts),
            "decode": {"sets": sorted(audio), "audio_sec": audio_sec, "compute_sec": compute,
                       "rtf": compute / audio_sec}}


def _count(n: int) -> str:
    """An exact parameter count, with millions added from 1M on: ``100,770,696 (100.8M)``."""
    return f"{n:,} ({n / 1e6:.1f}M)" if n >= 1_000_000 else f"{n:,}"


def _megabytes(n_bytes: int) -> str:
    mb = n_bytes / 1e6
    return f"{mb:.1f}" if mb >= 1 else f"{mb:.3f}"


ROWS = (
    ("Models", lambda t: str(t["models"])),
    ("Encoder parameters", lambda t: _count(t["params"]["encoder"])),
    ("CTC head parameters", lambda t: _count(t["params"]["heads"])),
    ("SSL-only parameters (training only)", lambda t: _count(t["params"]["ssl"])),
    ("Total parameters", lambda t: _count(t["params"]["total"])),
    ("Packed size (MB)", lambda t: _megabytes(t["size_bytes"])),
    ("Load time (s, median)", lambda t: f"{t['load_sec']:.3f}"),
    ("Decoding RTF (greedy, 1 thread)", lambda t: f"{t['decode']['rtf']:.4f}"),
)
"""The table's rows: name and the cell of one method's totals (:func:`method_totals`)."""


def resources_note(n_loads: int, n_utts: int, split: str) -> str:
    """How the numbers were measured (printed under the table)."""
    return (f"Measured on this machine from each experiment's packed model (`model.pack.pt`, model, "
            f"config and tokenizers; written from the named model file where it was absent). "
            f"Parameters: `numel` per part; the total also counts the SSL-only parameters, which "
            f"the packed file holds but decoding does not use. Storage: file size, 1 MB = 10^6 bytes. "
            f"Load time: median of {n_loads} loads, each in a fresh Python process timed after "
            f"importing torch and osoup (interpreter start and imports excluded), file cache warm. "
            f"RTF: greedy CTC decoding of the first {n_utts} decodable utterances of each "
            f"`{split}_<lang>` set, one utterance at a time on 1 CPU thread, every head of the "
            f"language sharing one encoder pass; compute seconds over audio seconds (fbank frames "
            f"x 10 ms), feature extraction excluded. A method with several models sums them: a "
            f"deployment loads every model and runs each on the audio it serves.")


def _experiments(totals: list[dict], models: dict[str, dict]) -> list[str]:
    lines = ["Models:", ""]
    for t in totals:
        for exp in t["exps"]:
            m = models[exp]
            made = f", packed now from `{m['packed_from']}`" if m["packed_now"] else ""
            others = t["replicas_not_measured"][exp]
            rep = f"; seed replicas not measured: {', '.join(f'`{e}`' for e in others)}" if others else ""
            lines.append(f"- {t['label']}: `{m['packed']}` ({', '.join(m['heads'])}{made}){rep}")
    return lines + [""]


def resources_markdown(totals: list[dict], models: dict[str, dict], note: str) -> str:
    """RESOURCES.md: rows of the paper's Table 9 by methods, the note and the models measured."""
    lines = ["# Resources (measured)", "", "| | " + " | ".join(t["label"] for t in totals) + " |",
             "|---|" + "---:|" * len(totals)]
    lines += [f"| {name} | " + " | ".join(cell(t) for t in totals) + " |" for name, cell in ROWS]
    outputs = {tuple(t["outputs"]) for t in totals}
    if len(outputs) > 1:
        note += " The methods produce different outputs (listed below): compare their RTFs with care."
    return "\n".join(lines + ["", note, ""] + _experiments(totals, models))


def write_resources(out_dir: str | Path, deployments: list[Deployment], models: dict[str, dict],
                    n_loads: int, n_utts: int, split: str) -> tuple[Path, Path]:
    """``RESOURCES.md`` and ``resources.json`` into ``out_dir``, atomically."""
    out_dir = Path(out_dir)
    totals = [method_totals(d, models) for d in deployments]
    note = resources_note(n_loads, n_utts, split)
    md, js = out_dir / RESOURCES_MD, out_dir / RESOURCES_JSON
    with atomic_write(md) as f:
        f.write(resources_markdown(totals, models, note))
    data = {"note": note, "split": split, "n_loads": n_loads, "n_utts": n_utts, "methods": totals,
            "models": [models[e] for d in deployments for e in d.parts]}
    with atomic_write(js) as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return md, js
