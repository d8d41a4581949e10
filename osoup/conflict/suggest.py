"""Suggest a ``vm`` level hierarchy from a gradient-cosine matrix (beyond the paper).

Rule: average-linkage agglomerative clustering of the supervised objectives on the distance
1 − cos. Starting from singletons, the two clusters with the highest mean between-cluster
cosine are merged while that mean is at least ``threshold`` (default 0: clusters whose
gradients do not conflict on average share a level). Merging also continues, whatever the
cosine, while there are more than ``max_groups`` clusters (so that the list of orders stays
short). The clusters that remain conflict with each other (mean cosine < threshold) and go to
different levels; the SSL objective is always the last level (the paper's lower-level
constraint). Every order of the clusters is offered; the recommended one puts the clusters
richest in the favoured task first, because the paper (§5.3) found the higher level favoured:
UAS (asr>st>ssl) gave the best ASR WER and USA (st>asr>ssl) the best BLEU; language orders
(UEC/UCE) showed the same kind of trade-off.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from osoup.moo.levels import parse_levels
from osoup.nets.model import SSL_OBJECTIVE


@dataclass
class Clustering:
    """Clusters (lists of objective names, in objective order) and the merge history:
    (cluster_a, cluster_b, mean_cosine) per merge, in merge order."""

    clusters: list[list[str]]
    merges: list[tuple[list[str], list[str], float]] = field(default_factory=list)
    threshold: float = 0.0
    max_groups: int = 3
    between: dict[tuple[int, int], float] = field(default_factory=dict)


def average_linkage(cos: np.ndarray, names: list[str], threshold: float = 0.0, max_groups: int = 3) -> Clustering:
    """Average-linkage clustering of ``names`` by the cosine matrix ``cos`` (rule: module doc).

    NaN cosines (a zero gradient) count as 0 (no information, neither agreement nor conflict).
    """
    cos = np.nan_to_num(np.asarray(cos, dtype=np.float64), nan=0.0)
    if cos.shape != (len(names), len(names)):
        raise ValueError(f"cosine matrix {cos.shape} does not match {len(names)} names")
    if max_groups < 1:
        raise ValueError("max_groups must be >= 1")
    clusters: list[list[int]] = [[i] for i in range(len(names))]
    merges: list[tuple[list[str], list[str], float]] = []

    def link(a: list[int], b: list[int]) -> float:
        return float(np.mean([cos[i, j] for i in a for j in b]))

    while len(clusters) > 1:
        best, pair = -np.inf, (0, 1)
        for x, y in itertools.combinations(range(len(clusters)), 2):
            v = link(clusters[x], clusters[y])
            if v > best:
                best, pair = v, (x, y)
        if best < threshold and len(clusters) <= max_groups:
            break
        x, y = pair
        merges.append(([names[i] for i in clusters[x]], [names[i] for i in clusters[y]], best))
        clusters[x] = sorted(clusters[x] + clusters[y])
        del clusters[y]
    clusters.sort(key=min)
    between = {(x, y): link(clusters[x], clusters[y]) for x, y in itertools.combinations(range(len(clusters)), 2)}
    return Clustering([[names[i] for i in c] for c in clusters], merges, threshold, max_groups, between)


def _task(name: str) -> str:
    return name.split("_", 1)[0]


def group_tokens(group: list[str], objectives: list[str], ssl: str | None = SSL_OBJECTIVE) -> str:
    """The ``--levels`` text of one group: a task (``asr``, ``st``) or language (``en``) selector
    when the group is exactly its set; otherwise task selectors and selectors of two or more
    objectives lying wholly inside the group, largest first, then the remaining objective names."""
    supervised = [o for o in objectives if o != ssl]
    gset = set(group)
    selectors: dict[str, set[str]] = {}
    for o in supervised:
        if "_" in o:
            task, lang = o.split("_", 1)
            selectors.setdefault(task, set()).update(x for x in supervised if x.startswith(task + "_"))
            selectors.setdefault(lang, set()).update(x for x in supervised if x.endswith("_" + lang))
    # A token that is both a task and a language would be ambiguous for parse_levels.
    tasks = {o.split("_", 1)[0] for o in supervised if "_" in o}
    langs = {o.split("_", 1)[1] for o in supervised if "_" in o}
    usable = {t: s for t, s in selectors.items() if not (t in tasks and t in langs) and t not in objectives}
    exact = sorted((t for t, sel in usable.items() if sel == gset), key=lambda t: (t not in tasks, t))
    if exact:
        return exact[0]
    if len(gset) == 1:
        return group[0]
    tokens: list[str] = []
    covered: set[str] = set()
    for tok, sel in sorted(usable.items(), key=lambda kv: (-len(kv[1]), kv[0] not in tasks, kv[0])):
        if (len(sel) >= 2 or tok in tasks) and sel <= gset and not sel & covered:
            tokens.append(tok)
            covered |= sel
    order = {o: i for i, o in enumerate(objectives)}
    rest = sorted(gset - covered, key=order.__getitem__)
    first = {tok: min(order[o] for o in usable[tok]) for tok in tokens}
    items = sorted([(first[t], t) for t in tokens] + [(order[o], o) for o in rest])
    return ",".join(t for _, t in items)


def levels_spec(groups: list[list[str]], objectives: list[str], ssl: str | None = SSL_OBJECTIVE) -> str:
    """``--levels`` string of the supervised groups in this order, SSL appended last; checked
    with :func:`osoup.moo.parse_levels` (falls back to plain objective names if selectors
    would not parse to exactly these groups)."""
    has_ssl = ssl is not None and ssl in objectives
    want = [sorted(g, key=objectives.index) for g in groups] + ([[ssl]] if has_ssl else [])
    spec = ">".join([group_tokens(g, objectives, ssl) for g in groups] + ([ssl] if has_ssl else []))
    try:
        if parse_levels(spec, objectives, ssl) == want:
            return spec
    except ValueError:
        pass
    spec = ">".join(",".join(g) for g in want)
    if parse_levels(spec, objectives, ssl) != want:  # raises ValueError itself if malformed
        raise ValueError(f"cannot write levels {want} as a --levels spec")
    return spec


def order_note(top: list[str], objectives: list[str], ssl: str | None = SSL_OBJECTIVE) -> str:
    """One line relating the order to the paper's finding (§5.3), from the top level's content."""
    tasks = {_task(o) for o in top}
    langs = {o.split("_", 1)[1] for o in top if "_" in o}
    sup_tasks = {_task(o) for o in objectives if o != ssl}
    if tasks == {"asr"} and "st" in sup_tasks:
        return "ASR first, like UAS (asr>st>ssl): the paper's best ASR WER"
    if tasks == {"st"}:
        return "S2TT first, like USA (st>asr>ssl): the paper's best BLEU"
    if len(langs) == 1 and len(tasks) >= 1:
        lang = next(iter(langs))
        return (f"language {lang} first, like UEC/UCE (en>zh>ssl, zh>en>ssl): the paper found the "
                f"higher-level language favoured (a trade-off, as UAS/USA)")
    return "mixed first level: no direct paper analogue; the paper found the higher level's objectives favoured"


@dataclass
class Suggestion:
    spec: str
    groups: list[list[str]]
    note: str


def suggest_levels(
    cos: np.ndarray,
    objectives: list[str],
    ssl: str | None = SSL_OBJECTIVE,
    threshold: float = 0.0,
    max_groups: int = 3,
    favour: str = "asr",
) -> tuple[Clustering, list[Suggestion]]:
    """Cluster the supervised objectives and return every order of the clusters as a checked
    ``--levels`` spec, the recommended one (favoured task first) first."""
    sup = [i for i, o in enumerate(objectives) if o != ssl]
    if not sup:
        raise ValueError("no supervised objectives to arrange in levels")
    names = [objectives[i] for i in sup]
    clustering = average_linkage(np.asarray(cos)[np.ix_(sup, sup)], names, threshold, max_groups)

    def favour_key(group: list[str]) -> tuple[float, int]:
        share = sum(_task(o) == favour for o in group) / len(group)
        return (-share, objectives.index(group[0]))

    ranked = sorted(clustering.clusters, key=favour_key)
    out: list[Suggestion] = []
    seen: set[str] = set()
    for perm in itertools.permutations(ranked):
        spec = levels_spec(list(perm), objectives, ssl)
        if spec not in seen:
            seen.add(spec)
            note = (order_note(list(perm[0]), objectives, ssl) if len(perm) > 1 else
                    f"one supervised level: no group conflicts below cos {threshold:g} (SSL still the lower-level constraint)")
            out.append(Suggestion(spec, [list(g) for g in perm], note))
    return clustering, out
