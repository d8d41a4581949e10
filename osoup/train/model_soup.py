"""Model soups: weighted averages of experiments trained from one initialisation.

Models fine-tuned from a shared initialisation with different objective hierarchies (UAS, USA,
``vs``, ``joint``) usually stay in one basin of the loss, so a weighted average of their
weights is itself a working model ("model soups"; "rewarded soups" interpolate between models
tuned for different rewards). Sweeping the weights traces a WER-BLEU trade-off for the price of
decoding. This module checks that experiments can be averaged, averages them, and writes each
soup as an experiment dir (``docs/design.md``, "Experiment directory") that ``osoup-decode`` and
``osoup-score`` read like any other. ``test/test_model_soup.py`` pins the behaviour.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from osoup import expdir
from osoup.fileio import DataError, atomic_write_text
from osoup.train.experiment import build_model, load_model_file, load_torch_file, read_config, read_objectives

SOUP_RECORD = "soup.json"
"""File of a soup dir that records its sources and weights (also the summary of a sweep)."""
ARCH_KEYS = ("encoder_conf", "head_vocab", "head_layers", "ssl", "ssl_conf")
"""The ``model_conf`` entries that fix the architecture (CMVN and SpecAugment do not)."""
INIT_DISTANCE_THRESHOLD = 0.5
"""Relative backbone distance above which two runs are taken not to share an initialisation.
Weight matrices initialised independently are nearly orthogonal vectors of equal norm, so their
relative distance is about sqrt(2) = 1.41 (measured: 1.414 for the tiny and 58m encoders);
runs from one initialisation compared after a few epochs differ by a small fraction of the
norm. 0.5 lies well between the two."""
DEFAULT_GRID_STEP = {2: 0.1}
"""Grid step per number of experiments; 0.25 for three or more (15 soups for 3, 35 for 4)."""


@dataclass
class SoupSource:
    """One experiment to average: its dir, model file, weights, model_conf and metadata."""

    exp: Path
    path: Path
    state: dict[str, torch.Tensor]
    model_conf: dict[str, Any]
    meta: dict[str, Any]
    config: dict[str, Any]


def load_source(exp: str | Path, model_file: str = expdir.BEST) -> SoupSource:
    """An experiment's model file and metadata, loaded through :mod:`osoup.train.experiment`
    (its errors name the file); the weights are checked to fit their own model_conf."""
    exp = Path(exp)
    meta = read_objectives(exp)
    obj, path = load_model_file(exp, model_file)
    build_model(obj, path)
    return SoupSource(exp, path, obj["model"], dict(obj["model_conf"]), meta, read_config(exp))


# -- compatibility ---------------------------------------------------------------------------
def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _dict_difference(name: str, a: Any, b: Any) -> str | None:
    """The first entry where two (nested) configuration values differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            diff = _dict_difference(f"{name}[{key!r}]", a.get(key), b.get(key))
            if diff:
                return diff
        return None
    return None if a == b else f"{name}: {_short(a)} vs {_short(b)}"


def _state_difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> str | None:
    """The first state-dict key present in one only, or of another shape or dtype."""
    for key in a:
        if key not in b:
            return f"state-dict key {key!r} only in the first"
        if a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
            return (f"state-dict key {key!r}: shape {tuple(a[key].shape)} {a[key].dtype} vs "
                    f"{tuple(b[key].shape)} {b[key].dtype}")
    extra = [key for key in b if key not in a]
    return f"state-dict key {extra[0]!r} only in the second" if extra else None


def _tokens_difference(a: SoupSource, b: SoupSource) -> str | None:
    """A head whose token dirs differ in their ``tokens.txt`` (same ids must mean the same tokens)."""
    dirs_a, dirs_b = a.meta.get("token_dirs", {}), b.meta.get("token_dirs", {})
    for head in sorted(set(dirs_a) | set(dirs_b)):
        da, db = dirs_a.get(head), dirs_b.get(head)
        if da is None or db is None:
            return f"objectives.json token_dirs[{head!r}]: {da!r} vs {db!r}"
        ta, tb = Path(da) / "tokens.txt", Path(db) / "tokens.txt"
        if Path(da).resolve() != Path(db).resolve() and ta.is_file() and tb.is_file() \
                and ta.read_bytes() != tb.read_bytes():
            return f"objectives.json token_dirs[{head!r}]: {da} vs {db} (different tokens.txt)"
    return None


def first_difference(a: SoupSource, b: SoupSource) -> str | None:
    """Where two experiments first differ in architecture, heads or state-dict layout."""
    for key in ARCH_KEYS:
        diff = _dict_difference(f"model_conf[{key!r}]", a.model_conf.get(key), b.model_conf.get(key))
        if diff:
            return diff
    if a.meta["objectives"] != b.meta["objectives"]:
        return f"objectives.json objectives: {a.meta['objectives']} vs {b.meta['objectives']}"
    return _state_difference(a.state, b.state) or _tokens_difference(a, b)


def check_compatible(sources: Sequence[SoupSource]) -> None:
    """Every experiment has the first one's architecture and heads, else one DataError naming
    the two experiments and the first mismatching entry."""
    for other in sources[1:]:
        diff = first_difference(sources[0], other)
        if diff:
            raise DataError(f"{sources[0].path} and {other.path} cannot be averaged (not one architecture): "
                            f"first difference at {diff}")


# -- averaging -------------------------------------------------------------------------------
def average_states(states: Sequence[Mapping[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_i w_i * state_i for every floating-point tensor (accumulated in float64, stored in
    the tensor's dtype); integer and boolean buffers (BatchNorm's ``num_batches_tracked``) are
    taken from the first state. States of weight 0 are not read, so weights (1, 0, ...) give
    the first state's tensors exactly."""
    if len(states) != len(weights) or not states:
        raise ValueError(f"{len(weights)} weights for {len(states)} states")
    out: dict[str, torch.Tensor] = {}
    for key, first in states[0].items():
        if not torch.is_floating_point(first):
            out[key] = first.clone()
            continue
        acc = torch.zeros(first.shape, dtype=torch.float64)
        for state, w in zip(states, weights):
            if w != 0.0:
                acc += float(w) * state[key].detach().cpu().to(torch.float64)
        out[key] = acc.to(first.dtype)
    return out


def _backbone_weights(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's weight matrices and kernels (floating tensors of 2 or more dimensions):
    norm scales and biases start from the same constants in every run and would hide a
    difference of initialisation."""
    return {k: v.float() for k, v in state.items()
            if k.startswith("encoder.") and torch.is_floating_point(v) and v.dim() >= 2}


def relative_distance(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """||a - b|| / max(||a||, ||b||) over the backbone weights the two states share."""
    wa, wb = _backbone_weights(a), _backbone_weights(b)
    keys = [k for k in wa if k in wb and wa[k].shape == wb[k].shape]
    if not keys:
        raise DataError("the checkpoints share no backbone weights to compare")
    diff = math.sqrt(sum(float(((wa[k] - wb[k]) ** 2).sum()) for k in keys))
    norm = max(math.sqrt(sum(float((w[k] ** 2).sum()) for k in keys)) for w in (wa, wb))
    return diff / norm if norm > 0 else 0.0


# -- shared initialisation -----------------------------------------------------------------
@dataclass
class InitCheck:
    """Whether the experiments share an initialisation: True, False, or None (cannot tell)."""

    shared: bool | None
    message: str
    method: str
    distance: float | None = None
    threshold: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _same_init_file(inits: Sequence[Any]) -> bool:
    if not all(isinstance(i, str) and i for i in inits):
        return False
    return len({str(Path(i).resolve()) for i in inits}) == 1


def check_initialisation(sources: Sequence[SoupSource]) -> InitCheck:
    """Shared when every config.yaml names the same ``init_from`` checkpoint; otherwise the
    relative backbone distance between the earliest ``checkpoint.<N>.pt`` of each experiment
    and the first one's, compared with :data:`INIT_DISTANCE_THRESHOLD`."""
    inits = [s.config.get("init_from") for s in sources]
    if _same_init_file(inits):
        return InitCheck(True, f"every experiment starts from init_from {inits[0]} (config.yaml)", "init_from")
    named = "; ".join(f"{s.exp}: init_from {i}" for s, i in zip(sources, inits) if i)
    named = f" ({named})" if named else ""
    earliest = [expdir.epoch_checkpoints(s.exp)[:1] for s in sources]
    missing = [str(s.exp) for s, e in zip(sources, earliest) if not e]
    if missing:
        return InitCheck(None, f"cannot tell whether the experiments share an initialisation: their config.yaml "
                               f"files name no common init_from{named} and {', '.join(missing)} keep(s) no "
                               f"checkpoint.<N>.pt", "none")
    states = [load_torch_file(e[0], "model checkpoint", ("model",), "remove it or retrain")["model"] for e in earliest]
    dist = max(relative_distance(states[0], s) for s in states[1:])
    files = ", ".join(str(e[0]) for e in earliest)
    shared = dist <= INIT_DISTANCE_THRESHOLD
    verdict = "likely share an initialisation" if shared else "probably did NOT start from one initialisation"
    return InitCheck(shared, f"relative backbone distance {dist:.3f} between the earliest checkpoints ({files}); "
                             f"threshold {INIT_DISTANCE_THRESHOLD} (independent inits: about 1.41): the experiments "
                             f"{verdict}{named}", "distance", dist, INIT_DISTANCE_THRESHOLD)


# -- weights ---------------------------------------------------------------------------------
def _compositions(n: int, k: int) -> Iterator[tuple[int, ...]]:
    """Every k-tuple of non-negative integers summing to n, first entry ascending."""
    if k == 1:
        yield (n,)
        return
    for first in range(n + 1):
        for rest in _compositions(n - first, k - 1):
            yield (first, *rest)


def weight_grid(k: int, step: float | None = None) -> list[tuple[float, ...]]:
    """The simplex grid of ``k`` weights in multiples of ``step`` (default
    :data:`DEFAULT_GRID_STEP`); for two experiments 0, step, ..., 1 on the first."""
    step = DEFAULT_GRID_STEP.get(k, 0.25) if step is None else step
    n = round(1.0 / step) if 0 < step <= 1 else 0
    if n < 1 or abs(n * step - 1.0) > 1e-9:
        raise DataError(f"--grid-step {step}: must be 1/n for a whole number n (e.g. 0.1, 0.25, 0.5)")
    return [tuple(c / n for c in comp) for comp in _compositions(n, k)]


def _parse_vector(text: str, i: int, k: int) -> tuple[float, ...]:
    where = f"--weights: vector {i} {text.strip()!r}"
    try:
        w = tuple(float(x) for x in text.replace(",", " ").split())
    except ValueError:
        raise DataError(f"{where} is not a list of numbers") from None
    if len(w) != k:
        raise DataError(f"{where} has {len(w)} weight(s) for {k} experiments")
    if not all(math.isfinite(x) and x >= 0 for x in w):
        raise DataError(f"{where} has a negative or non-finite weight")
    if abs(sum(w) - 1.0) > 1e-6:
        raise DataError(f"{where} sums to {sum(w):.6g}, not 1")
    return w


def parse_weights(spec: str, k: int, grid_step: float | None = None) -> list[tuple[float, ...]]:
    """``grid`` (:func:`weight_grid`) or semicolon-separated weight vectors of ``k`` numbers,
    each non-negative and summing to 1, e.g. ``"0.2 0.8; 0.5 0.5"``."""
    if spec.strip() == "grid":
        return weight_grid(k, grid_step)
    parts = spec.split(";")
    out = [_parse_vector(p, i, k) for i, p in enumerate(parts, 1)]
    names = [mix_name(w) for w in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise DataError(f"--weights: vector {i + 1} {parts[i].strip()!r} repeats vector {names.index(name) + 1}")
    return out


def format_weight(w: float) -> str:
    """A weight with at most 4 decimals and no trailing zeros (0.3, 1, 0.3333)."""
    return f"{w:.4f}".rstrip("0").rstrip(".")


def mix_name(weights: Sequence[float]) -> str:
    """The soup dir name of a weight vector: ``mix_0.3_0.7``."""
    return "mix_" + "_".join(format_weight(w) for w in weights)


# -- writing ---------------------------------------------------------------------------------
def soup_record(sources: Sequence[SoupSource], weights: Sequence[float]) -> dict[str, Any]:
    """What a soup dir records about itself (``soup.json`` and the ``soup`` entry of best.pt)."""
    return {"sources": [{"exp": str(s.exp), "model_file": str(s.path)} for s in sources],
            "weights": [float(w) for w in weights],
            "integer_buffers_from": str(sources[0].path),
            "model_conf_from": str(sources[0].path)}


def write_soup(sources: Sequence[SoupSource], weights: Sequence[float], out_dir: str | Path) -> Path:
    """One soup as an experiment dir: ``best.pt`` ({model, model_conf, soup}), objectives.json
    and config.yaml of the first experiment (config.yaml gains a ``soup`` entry) and soup.json.
    Every file is written atomically."""
    import yaml

    from osoup.train.checkpoint import save_atomic

    out_dir = Path(out_dir)
    record = soup_record(sources, weights)
    state = average_states([s.state for s in sources], weights)
    save_atomic({"model": state, "model_conf": sources[0].model_conf, "soup": record}, out_dir / expdir.BEST)
    atomic_write_text(out_dir / expdir.OBJECTIVES, json.dumps(sources[0].meta, indent=2, ensure_ascii=False) + "\n")
    config = {**sources[0].config, "soup": record}
    atomic_write_text(out_dir / expdir.CONFIG, yaml.safe_dump(config, sort_keys=True, allow_unicode=True))
    atomic_write_text(out_dir / SOUP_RECORD, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return out_dir
