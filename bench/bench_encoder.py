"""Training-step cost of osoup's Conformer encoder against ESPnet's, side by side (docs/design.md).

    tools/venv/bin/python bench/bench_encoder.py                       # CPU, 2 threads, all sizes
    tools/venv/bin/python bench/bench_encoder.py --sizes d256 --repeats 7
    tools/venv/bin/python bench/bench_encoder.py --baseline-git HEAD   # also time osoup at HEAD
    tools/venv/bin/python bench/bench_encoder.py --device cuda --threads 8

One step = forward + backward of ``out.sum()`` in training mode (dropout on), gradients freed
after each step. Each size builds osoup's ``ConformerEncoder`` and the reference
``espnet2.asr.encoder.conformer_encoder.ConformerEncoder`` configured alike: Conv2d x4
subsampling with d_model channels, macaron feed-forward (ff_mult * d), rel-pos self-attention
(ESPnet's "latest" rel_pos / rel_selfattn), conv module with the same kernel and batch norm,
Swish, dropout 0.1 everywhere including the attention weights. Both parameter counts are printed
(ESPnet has one extra final LayerNorm, 2 * d parameters).

The models are timed interleaved (ours, reference, [baseline], then the next repeat in reversed
order) so that load drift hits all alike. Two tables give medians and ``ours/ref``: wall
seconds (the measure) and process CPU seconds (steadier when other jobs share the machine, but
it also counts OpenMP threads spinning between parallel regions). ESPnet is
optional (``pip install --no-deps espnet typeguard``); without it the bench says so and times
osoup alone. ``--baseline-git REV`` loads ``osoup/nets/{attention,subsampling,conformer}.py``
as they were at REV (via ``git show``) into a private module and times that encoder as well,
with the same weights, and checks that its output equals ours.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name: (d_model, n_heads, n_blocks, conv_kernel, batch, frames)
SIZES = {
    "d144": (144, 4, 4, 15, 8, 300),
    "d256": (256, 4, 6, 31, 8, 800),
    "d256long": (256, 4, 6, 31, 8, 1600),
    "58m": (512, 8, 8, 31, 4, 1200),
}
IDIM, FF_MULT, DROPOUT = 80, 4, 0.1
BASE_FILES = ("attention", "subsampling", "conformer")


def build_ours(d: int, heads: int, blocks: int, kernel: int) -> torch.nn.Module:
    from osoup.nets.conformer import ConformerEncoder

    return ConformerEncoder(idim=IDIM, d_model=d, n_heads=heads, n_blocks=blocks, ff_mult=FF_MULT,
                            conv_kernel=kernel, conv_norm="batch", dropout=DROPOUT)


def build_espnet(d: int, heads: int, blocks: int, kernel: int,
                 att_dropout: float = DROPOUT) -> torch.nn.Module | None:
    """ESPnet's Conformer configured like ours, or None when espnet is not installed."""
    if importlib.util.find_spec("espnet2") is None:
        return None
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    return ConformerEncoder(
        IDIM, output_size=d, attention_heads=heads, linear_units=FF_MULT * d, num_blocks=blocks,
        dropout_rate=DROPOUT, positional_dropout_rate=DROPOUT, attention_dropout_rate=att_dropout,
        input_layer="conv2d", normalize_before=True, macaron_style=True, rel_pos_type="latest",
        pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
        activation_type="swish", use_cnn_module=True, cnn_module_kernel=kernel,
        use_flash_attn=False)


def load_baseline(rev: str) -> types.ModuleType:
    """osoup's encoder modules as they were at git revision ``rev``, under a private name."""
    prefix = "_osoup_baseline"
    pkg = types.ModuleType(prefix)
    pkg.__path__ = []
    sys.modules[prefix] = pkg
    module = pkg
    for name in BASE_FILES:
        src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:osoup/nets/{name}.py"],
                             check=True, capture_output=True, text=True).stdout
        src = src.replace("osoup.nets.", f"{prefix}.")
        module = types.ModuleType(f"{prefix}.{name}")
        sys.modules[module.__name__] = module
        exec(compile(src, f"{rev}:osoup/nets/{name}.py", "exec"), module.__dict__)
    return module  # the conformer module


def make_batch(batch: int, frames: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features and lengths from ``frames`` down to ~75% of it (padding exercised)."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, frames, IDIM, generator=g)
    lengths = frames - torch.arange(batch) * (frames // (4 * batch))
    return feats.to(device), lengths.to(device)


def step(model: torch.nn.Module, feats: torch.Tensor, lengths: torch.Tensor) -> None:
    """One training step's forward + backward; the gradients are dropped afterwards."""
    out = model(feats, lengths)[0]
    out.sum().backward()
    for p in model.parameters():
        p.grad = None


def timed(model, feats, lengths, device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one step. CPU time is robust to other jobs on
    a shared machine, but it also counts OpenMP threads' spin-waiting."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    step(model, feats, lengths)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - w0, time.process_time() - c0


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bench_size(name: str, args: argparse.Namespace, baseline: types.ModuleType | None) -> dict:
    d, heads, blocks, kernel, batch, frames = SIZES[name]
    device = torch.device(args.device)
    torch.manual_seed(0)
    models = {"ours": build_ours(d, heads, blocks, kernel)}
    ref = build_espnet(d, heads, blocks, kernel, args.ref_att_dropout)
    if ref is not None:
        models["ref"] = ref
    if baseline is not None:
        base = baseline.ConformerEncoder(idim=IDIM, d_model=d, n_heads=heads, n_blocks=blocks,
                                         ff_mult=FF_MULT, conv_kernel=kernel, conv_norm="batch",
                                         dropout=DROPOUT)
        base.load_state_dict(models["ours"].state_dict())
        models["base"] = base
    feats, lengths = make_batch(batch, frames, device)
    for m in models.values():
        m.to(device).train()
    if baseline is not None:
        check_same(models["ours"], models["base"], feats, lengths)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in models}
    order = list(models)
    for _ in range(args.warmup):
        for k in order:
            step(models[k], feats, lengths)
    for r in range(args.repeats):
        for k in (order if r % 2 == 0 else order[::-1]):
            times[k].append(timed(models[k], feats, lengths, device))
    counts = {k: n_params(m) for k, m in models.items()}
    return {"name": name, "shape": f"d{d} {blocks}blk {batch}x{frames}",
            "wall": {k: statistics.median(w for w, _ in v) for k, v in times.items()},
            "cpu": {k: statistics.median(c for _, c in v) for k, v in times.items()},
            "params": counts}


def check_same(ours, base, feats, lengths) -> None:
    """Same weights, eval mode, float64: the baseline and the current encoder must agree."""
    a, b = ours.double().eval(), base.double().eval()
    with torch.no_grad():
        diff = (a(feats.double(), lengths)[0] - b(feats.double(), lengths)[0]).abs().max().item()
    ours.float().train()
    base.float().train()
    print(f"  baseline vs current, float64 eval: max |diff| = {diff:.2e}", flush=True)
    if diff > 1e-9:
        raise SystemExit(f"ERROR: current encoder differs from the baseline by {diff:.2e}")


def print_table(rows: list[dict], clock: str) -> None:
    """One line per size: median seconds per model and the ratios of ours to the others."""
    keys = [k for k in ("ours", "ref", "base") if k in rows[0][clock]]
    print(f"median {clock} seconds per step")
    head = f"{'size':10s} {'shape':24s}" + "".join(f"{k + ' s':>9s}" for k in keys)
    print(head + "".join(f"{'ours/' + k:>11s}" for k in keys[1:]))
    for r in rows:
        med = r[clock]
        line = f"{r['name']:10s} {r['shape']:24s}" + "".join(f"{med[k]:9.3f}" for k in keys)
        print(line + "".join(f"{med['ours'] / med[k]:10.2f}x" for k in keys[1:]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(SIZES), help=f"comma list of {sorted(SIZES)}")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per model (median)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--ref-att-dropout", type=float, default=DROPOUT,
                    help="ESPnet's attention_dropout_rate (ours uses 0.1; ESPnet's default is 0.0)")
    ap.add_argument("--baseline-git", default=None, metavar="REV",
                    help="also time osoup's encoder files as they were at this git revision")
    args = ap.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"ERROR: unknown --sizes {unknown}; choose from {sorted(SIZES)}")
    torch.set_num_threads(args.threads)
    if importlib.util.find_spec("espnet2") is None:
        print("espnet is not installed: timing osoup alone "
              "(tools/venv/bin/pip install --no-deps espnet typeguard)")
    baseline = load_baseline(args.baseline_git) if args.baseline_git else None
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"{args.repeats} repeats, forward+backward, training mode", flush=True)
    rows = []
    for name in sizes:
        rows.append(bench_size(name, args, baseline))
        print(f"  {name}: wall " + ", ".join(f"{k} {v:.3f}s" for k, v in rows[-1]["wall"].items())
              + "; cpu " + ", ".join(f"{k} {v:.3f}s" for k, v in rows[-1]["cpu"].items()),
              flush=True)
    for clock in ("wall", "cpu"):
        print_table(rows, clock)
    for r in rows:
        print(f"params {r['name']}: " + ", ".join(f"{k} {v:,}" for k, v in r["params"].items()))


if __name__ == "__main__":
    main()
