"""How well a sketched probe (``--probe-coords N``) ranks layer groups, on a trained experiment.

    tools/venv/bin/python bench/probe_fidelity.py --exp-dir egs/mini_soup/exp/vm_asr-st-ssl \\
        --dump-dir egs/mini_soup/dump --token-dir egs/mini_soup/data/token --coords 1024 4096 16384

For each of ``--batches`` training batches per objective it takes every objective's gradient,
scores every layer group by the mean pairwise cosine of the objectives' gradients (the probe's
score, here over all pairs of objectives), once on every coordinate and once on an N-bucket
CountSketch per group (what ``--probe-coords N`` keeps), and reports the mean absolute score
error and how often the k most conflicting groups agree with the exact ones.
"""
from __future__ import annotations

import argparse
import itertools
import statistics

import torch


def mean_pair_cosine(vectors: list[torch.Tensor]) -> float:
    cos = [torch.nn.functional.cosine_similarity(a, b, dim=0) for a, b in itertools.combinations(vectors, 2)]
    return float(torch.stack(cos).mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp-dir", required=True)
    ap.add_argument("--model", default="best.pt")
    ap.add_argument("--dump-dir", required=True)
    ap.add_argument("--token-dir", required=True)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--coords", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--k", type=int, default=2, help="size of the selection whose agreement is reported")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    from osoup.conflict.gradients import batch_plan, flat_gradients, layer_parameters, load_objective_data, objective_loss
    from osoup.data.objectives import build_objectives
    from osoup.train.experiment import load_experiment_model
    from osoup.moo.selection import count_sketch_into

    model, meta = load_experiment_model(args.exp_dir, args.model)
    names = meta["objectives"]
    asr = [n[4:] for n in names if n.startswith("asr_")]
    st = [n[3:] for n in names if n.startswith("st_")]
    ssl = model.ssl_kind if "ssl" in names else None
    specs = build_objectives(args.dump_dir, args.token_dir, asr, st, ssl, None, "train", "dev")
    head_vocab = {n: h.vocab_size for n, h in model.heads.items()}
    data = load_objective_data(specs, "train", meta.get("token_dirs", {}), 3000, 8, head_vocab)
    groups = layer_parameters(model)
    plans = {n: batch_plan(len(d.batches), args.batches, args.seed, n) for n, d in data.items()}
    errors: dict[int, list[float]] = {n: [] for n in args.coords}
    agree: dict[int, int] = {n: 0 for n in args.coords}
    model.train()
    for b in range(args.batches):
        per_obj = {}
        for name, d in data.items():
            loss = objective_loss(model, d, d.batches[plans[name][b]], "cpu")
            per_obj[name] = flat_gradients(loss, groups)
        exact = {g: mean_pair_cosine([per_obj[n][g] for n in data]) for g in groups}
        top = set(sorted(exact, key=exact.get)[: args.k])
        for n in args.coords:
            est = {}
            for gi, g in enumerate(groups):
                sketches = []
                for o in data:
                    out = torch.zeros(n)
                    count_sketch_into(out, gi, 0, per_obj[o][g])
                    sketches.append(out)
                est[g] = mean_pair_cosine(sketches)
                errors[n].append(abs(est[g] - exact[g]))
            agree[n] += set(sorted(est, key=est.get)[: args.k]) == top
        print(f"batch {b + 1}: exact scores " + " ".join(f"{g}={v:+.3f}" for g, v in exact.items()), flush=True)
    sizes = {g: sum(p.numel() for p in ps) for g, ps in groups.items()}
    print(f"objectives {' '.join(data)}; group sizes " + " ".join(f"{g}={s}" for g, s in sizes.items()))
    print(f"{'coords/group':>12s} {'mean |err|':>11s} {'max |err|':>10s} {'top-' + str(args.k) + ' agrees':>14s}")
    for n in args.coords:
        print(f"{n:12d} {statistics.fmean(errors[n]):11.4f} {max(errors[n]):10.4f} {agree[n]:>9d}/{args.batches}")


if __name__ == "__main__":
    main()
