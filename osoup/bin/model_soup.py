r"""osoup-soup: weight-average experiments trained from one initialisation and trace their
WER-BLEU front ("model soups").

Each weight vector gives one soup, written as an experiment dir ``<out>/mix_<w1>_<w2>...``
(best.pt, objectives.json, config.yaml, soup.json), decoded like stage 7 and scored like
stage 8; ``<out>`` gets soup_front.png, RESULTS.md and soup.json with every number::

    osoup-soup --exps exp/vm_uas exp/vm_usa --weights grid --grid-step 0.1 \
        --data-dir dump/fbank --sets "test_fr test_de" --split test --out exp/soup_uas_usa
    osoup-soup --exps exp/vm_uas exp/vm_usa exp/joint --weights "0.5 0.5 0; 0.4 0.4 0.2" \
        --sets "test_fr test_de" --out exp/soup3

Options not listed below go to osoup-decode (e.g. --search beam --beam 10 --tag beam10
--batch-frames 20000 --device cuda). The experiments must share an architecture and heads
(else an error names the first difference); a warning says when they probably did not start
from one initialisation (averaging then mixes unrelated networks). Floating-point tensors are
averaged; integer buffers (BatchNorm's num_batches_tracked) come from the first experiment.
"""
from __future__ import annotations

import logging
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import configargparse

from osoup import expdir
from osoup.fileio import DataError, run_command, setup_logging

if TYPE_CHECKING:
    from osoup.score.front import FrontPoint
    from osoup.train.model_soup import SoupSource

log = logging.getLogger("osoup-soup")
_DECODE_OWN = ("exp_dir", "model", "data_dir", "sets", "packed", "pack_out", "head", "wav_scp", "out", "audio")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter,
                                      config_file_parser_class=configargparse.YAMLConfigFileParser)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--exps", nargs="+", required=True, help="experiment dirs to average (2 or more)")
    p.add_argument("--weights", default="grid",
                   help="'grid', or weight vectors separated by ';', each summing to 1, e.g. '0.2 0.8; 0.5 0.5'")
    p.add_argument("--grid-step", type=float, default=None,
                   help="grid spacing, 1/n (default 0.1 for two experiments, 0.25 for more)")
    p.add_argument("--model", default=expdir.BEST, help="model file of each experiment (best.pt, avgN.pt, ...)")
    p.add_argument("--out", required=True, help="output dir, e.g. exp/soup_uas_usa")
    p.add_argument("--data-dir", default="dump/fbank", help="root of the dumped test sets (decoding and references)")
    p.add_argument("--sets", required=True, help="space-separated sets to decode, e.g. 'test_fr test_en'")
    p.add_argument("--split", default="test", help="split whose averages make the front")
    p.add_argument("--labels", nargs="+", default=None,
                   help="labels of the experiments in the plot (default: their results.json label or dir name)")
    p.add_argument("--verbose", type=int, default=1)
    return p


def decode_namespace(args: Namespace, extra: list[str]) -> Namespace:
    """osoup-decode's options for the soups: the given ones plus ``extra`` (checked now, before
    any averaging; options that choose the experiment or the mode are osoup-soup's own)."""
    from osoup.bin import decode

    base = ["--model", expdir.BEST, "--data-dir", args.data_dir, "--sets", args.sets]
    dec, unknown = decode.get_parser().parse_known_args(base + extra)
    if unknown:
        raise DataError(f"osoup-soup: unknown option(s) {' '.join(unknown)} (neither osoup-soup's nor osoup-decode's)")
    defaults = decode.get_parser().parse_args(base)
    clash = [k for k in _DECODE_OWN if getattr(dec, k) != getattr(defaults, k)]
    if clash:
        raise DataError(f"osoup-soup: option(s) not allowed here: {', '.join(clash)} (from {' '.join(extra)})")
    dec.tag = dec.tag or (f"beam{dec.beam}" if dec.search == "beam" else "greedy")
    return dec


def _method_points(sources: Sequence[SoupSource], labels: list[str] | None, dtag: str,
                   split: str) -> list[FrontPoint]:
    """The individual experiments' own points, from their results.json (stage 8), when scored
    with the same decode tag; otherwise a warning and no point."""
    from osoup.score.comparison import default_label
    from osoup.score.front import point_from_results
    from osoup.score.resultfiles import load_results

    points = []
    for i, s in enumerate(sources):
        try:
            res = load_results(s.exp)
            points.append(point_from_results(res, dtag, split, labels[i] if labels else default_label(res), "method"))
        except DataError as e:
            log.warning("individual point of %s not drawn: %s", s.exp, e)
    return points


def _soup_point(sources: Sequence[SoupSource], weights: Sequence[float], out: Path, dec: Namespace,
                split: str) -> FrontPoint:
    """Average, decode and score one soup; its point on the front."""
    from osoup.bin.decode import decode_recipe
    from osoup.score.front import point_from_results
    from osoup.score.resultfiles import write_exp_results
    from osoup.score.scoring import score_exp
    from osoup.train.model_soup import format_weight, mix_name, write_soup

    label = "soup " + "/".join(format_weight(w) for w in weights)
    soup_dir = write_soup(sources, weights, out / mix_name(weights))
    decode_recipe(Namespace(**{**vars(dec), "exp_dir": str(soup_dir)}))
    res = score_exp(soup_dir, dec.data_dir, decode_tags=[dec.tag], label=label)
    write_exp_results(soup_dir, res)
    return point_from_results(res, dec.tag, split, label, "soup", weights)


def _check_exps(args: Namespace) -> None:
    if len(args.exps) < 2:
        raise DataError(f"--exps: give two or more experiments to average (got {len(args.exps)})")
    resolved = [Path(e).resolve() for e in args.exps]
    if len(set(resolved)) < len(resolved):
        raise DataError(f"--exps names one experiment twice: {' '.join(args.exps)}")
    if args.labels is not None and len(args.labels) != len(args.exps):
        raise DataError(f"--labels: {len(args.labels)} labels for {len(args.exps)} experiments")


def _run(args: Namespace, extra: list[str]) -> None:
    from osoup.score.front import write_front
    from osoup.train import model_soup as S

    _check_exps(args)
    all_weights = S.parse_weights(args.weights, len(args.exps), args.grid_step)
    dec = decode_namespace(args, extra)
    sources = [S.load_source(e, args.model) for e in args.exps]
    S.check_compatible(sources)
    init = S.check_initialisation(sources)
    (log.info if init.shared else log.warning)("initialisation: %s", init.message)
    points = _method_points(sources, args.labels, dec.tag, args.split)
    out, t0 = Path(args.out), time.time()
    for i, w in enumerate(all_weights, 1):
        points.append(_soup_point(sources, w, out, dec, args.split))
        el = time.time() - t0
        log.info("soup %d/%d (%s) done: ASR ave %s, BLEU ave %s; %.1f s elapsed, ETA %.0f s", i, len(all_weights),
                 points[-1].label, points[-1].asr, points[-1].bleu, el, el / i * (len(all_weights) - i))
    notes = [f"sources: {', '.join(str(s.path) for s in sources)}",
             f"initialisation: {init.message}",
             f"floating-point tensors are weighted sums; integer buffers (e.g. BatchNorm's num_batches_tracked) "
             f"and model_conf come from {sources[0].path}",
             f"decode tag {dec.tag}, split {args.split}, data {args.data_dir}"]
    info = {"sources": [str(s.path) for s in sources], "weights": [list(w) for w in all_weights],
            "init_check": init.as_dict(), "integer_buffers_from": str(sources[0].path), "decode_tag": dec.tag,
            "split": args.split, "data_dir": args.data_dir, "sets": args.sets.split(),
            "decode_options": {k: v for k, v in vars(dec).items() if k not in _DECODE_OWN + ("config",)}}
    written = write_front(points, out, f"Model soups of {' + '.join(args.exps)}", notes, info)
    log.info("wrote %s", ", ".join(str(p) for p in written.values()))


def main(argv: list[str] | None = None) -> int:
    args, extra = get_parser().parse_known_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: _run(args, extra))


if __name__ == "__main__":
    sys.exit(main())
