"""osoup-score: WER / CER / BLEU of CTC hypotheses.

Recipe mode: score every ``decode_*/<set>/hyp.{asr,st}`` of an experiment and write
``<exp>/RESULTS.md`` and ``<exp>/results.json``::

    osoup-score --exp exp/vm_uas --data dump/fbank

Single-file mode (reference: a data dir, or a ``utt-id text`` file)::

    osoup-score --ref dump/fbank/test_fr --hyp exp/vm_uas/decode_beam10/test_fr/hyp.st \
        --metric bleu --lang fr [--out score.json]

References and hypotheses get the scoring normalisation (ASR: lowercase, no punctuation,
Chinese by character; ST: whitespace only) unless ``--no-normalize``. Utterances without a
hypothesis count as deletions (with a warning); unknown hypothesis ids are errors.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import configargparse

from osoup.fileio import DataError, atomic_write, run_command, setup_logging

log = logging.getLogger("osoup-score")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter,
                                      config_file_parser_class=configargparse.YAMLConfigFileParser)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--exp", help="experiment dir to score (recipe mode)")
    p.add_argument("--data", default="dump/fbank", help="root of the reference data dirs (recipe mode)")
    p.add_argument("--decode-tag", action="append", default=None,
                   help="score only this decode_<tag> (repeatable; default: all)")
    p.add_argument("--label", help="method label stored in results.json (for osoup-results)")
    p.add_argument("--seed", type=int, help="seed stored in results.json (default: seed of <exp>/config.yaml)")
    p.add_argument("--ref", help="reference data dir or 'utt-id text' file (single-file mode)")
    p.add_argument("--hyp", help="hypothesis 'utt-id text' file (single-file mode)")
    p.add_argument("--metric", choices=["wer", "cer", "bleu"], help="single-file mode metric")
    p.add_argument("--lang", help="source language of the references (single-file mode)")
    p.add_argument("--out", help="write the numbers as JSON here (single-file mode)")
    p.add_argument("--no-normalize", action="store_true", help="score the texts as they are")
    p.add_argument("--max-bad-frac", type=float, default=0.05,
                   help="fail when more than this fraction of utterances lack a hypothesis "
                        "or have an empty reference")
    p.add_argument("--verbose", type=int, default=1)
    return p


def _single(args) -> dict:
    from osoup.fileio import read_scp
    from osoup.score.scoring import default_normalizer, read_hyp_file, score_texts

    for name in ("ref", "hyp", "metric", "lang"):
        if not getattr(args, name):
            raise DataError(f"single-file mode needs --{name}")
    task = "st" if args.metric == "bleu" else "asr"
    ref = Path(args.ref)
    if ref.is_dir():
        ref = ref / ("text.en" if task == "st" else "text")
    if not ref.is_file():
        raise DataError(f"{ref}: reference file not found")
    norm = None if args.no_normalize else default_normalizer(task, args.lang)
    res = score_texts(read_scp(ref, allow_empty_value=True), read_hyp_file(args.hyp), args.metric,
                      args.lang, normalize=norm, ref_name=str(ref), hyp_name=args.hyp,
                      max_bad_frac=args.max_bad_frac)
    if args.metric == "bleu":
        print(f"BLEU {res['value']:.2f} ({res['n_utts']} utts) {res['signature']}")
    else:
        units = res.get("ref_words", res.get("ref_chars"))
        print(f"%{args.metric.upper()} {res['value']:.2f} [ {res['errors']} / {units}, {res['ins']} ins, "
              f"{res['del']} del, {res['sub']} sub ] ({res['n_utts']} utts)")
    if args.out:
        with atomic_write(args.out) as f:
            json.dump(res, f, indent=2, ensure_ascii=False)
            f.write("\n")
    return res


def _recipe(args) -> dict:
    from osoup.score.resultfiles import write_exp_results
    from osoup.score.scoring import score_exp, split_averages

    res = score_exp(args.exp, args.data, normalize=not args.no_normalize, max_bad_frac=args.max_bad_frac,
                    decode_tags=args.decode_tag, label=args.label, seed=args.seed)
    md, js = write_exp_results(args.exp, res)
    for dtag, dec in res["decodes"].items():
        for split, tasks in split_averages(dec["sets"]).items():
            for task, ave in tasks.items():
                name = "BLEU" if task == "st" else "WER/CER"
                log.info("decode_%s %s %s: average %s %.2f over %s", dtag, split, task, name,
                         ave["value"], " ".join(ave["langs"]))
    log.info("wrote %s and %s", md, js)
    return res


def _run(args) -> None:
    if args.exp and args.ref:
        raise DataError("give either --exp (recipe mode) or --ref/--hyp (single-file mode), not both")
    if args.exp:
        _recipe(args)
    elif args.ref or args.hyp:
        _single(args)
    else:
        raise DataError("give --exp (recipe mode) or --ref/--hyp/--metric/--lang (single-file mode)")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
