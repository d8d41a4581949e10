"""The files scoring writes and reads, all written atomically.

* ``exp/<tag>/results.json`` and ``RESULTS.md`` (``osoup-score --exp``). results.json keeps an
  ``averages`` entry per decode tag for readers of the file; it is recomputed from the
  per-language entries on every write and ignored on reading.
* A comparison dir (``osoup-results --out``): ``RESULTS.md``, ``results.json``, ``radar.png``
  and ``tradeoff.png``; with the paired significance, results.json holds it under
  ``significance`` (:meth:`osoup.score.significance.Significance.to_json`).
"""
from __future__ import annotations

import json
from pathlib import Path

from osoup import expdir
from osoup.fileio import DataError, atomic_write
from osoup.score.comparison import Method, summary
from osoup.score.plots import radar_plot, tradeoff_plot
from osoup.score.scoring import split_averages
from osoup.score.seeds import seed_tests, seed_tests_json
from osoup.score.significance import DEFAULT_REFERENCE, Significance
from osoup.score.tables import comparison_markdown, format_exp_markdown


def _write_json(path: Path, data: dict) -> None:
    with atomic_write(path) as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


def exp_json(results: dict) -> dict:
    """results.json content: the results with each decode tag's averages derived from its sets."""
    decodes = {dtag: {**dec, "averages": split_averages(dec["sets"])}
               for dtag, dec in results["decodes"].items()}
    return {**results, "decodes": decodes}


def write_exp_results(exp_dir: str | Path, results: dict) -> tuple[Path, Path]:
    """Write ``RESULTS.md`` and ``results.json`` into the experiment dir, atomically."""
    exp_dir = Path(exp_dir)
    md, js = exp_dir / expdir.RESULTS_MD, exp_dir / expdir.RESULTS_JSON
    _write_json(js, exp_json(results))
    with atomic_write(md) as f:
        f.write(format_exp_markdown(results))
    return md, js


def load_results(path: str | Path) -> dict:
    """results.json of an experiment (the exp dir or the file itself), as any version of
    ``osoup-score`` wrote it; stored averages are dropped (they are derived from the sets)."""
    path = Path(path)
    if path.is_dir():
        path = path / expdir.RESULTS_JSON
    if not path.is_file():
        raise DataError(f"{path}: not found (run osoup-score --exp first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("decodes"), dict):
        raise DataError(f"{path}: no 'decodes' field; not an osoup-score results.json")
    for dtag, dec in data["decodes"].items():
        if not isinstance(dec, dict) or not isinstance(dec.get("sets"), list):
            raise DataError(f"{path}: decode {dtag!r} has no 'sets' list; not an osoup-score results.json")
        dec.pop("averages", None)
    data["_path"] = str(path)
    return data


def write_comparison(methods: list[Method], out_dir: str | Path, split: str = "test",
                     significance: Significance | None = None) -> dict[str, Path]:
    """RESULTS.md, results.json, radar.png and tradeoff.png into ``out_dir`` (a plot that has
    nothing to show is not written), with the paired significance where given and the
    between-seed test (:mod:`osoup.score.seeds`) where methods have two seeds or more."""
    out_dir = Path(out_dir)
    written = {"md": out_dir / "RESULTS.md", "json": out_dir / "results.json"}
    reference = significance.reference if significance is not None else DEFAULT_REFERENCE
    seeds = seed_tests(methods, reference)
    with atomic_write(written["md"]) as f:
        f.write(comparison_markdown(methods, split, significance, seeds, reference))
    data = summary(methods, split)
    if significance is not None:
        data["significance"] = significance.to_json()
    if seeds:
        data["seed_test"] = seed_tests_json(reference, seeds)
    _write_json(written["json"], data)
    for key, fn in (("radar", radar_plot), ("tradeoff", tradeoff_plot)):
        p = fn(methods, out_dir / f"{key}.png", significance)
        if p is not None:
            written[key] = p
    return written
