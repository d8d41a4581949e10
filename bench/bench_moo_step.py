"""Step cost of the MOO methods relative to the plain step (docs/design.md, "MOO core"; docs/weightings.md).

    tools/venv/bin/python bench/bench_moo_step.py                 # CPU, "tiny", 4 utts x 2 s per objective; ~5 min on 2 idle cores
    tools/venv/bin/python bench/bench_moo_step.py --device cuda --size 58m
    tools/venv/bin/python bench/bench_moo_step.py --methods baseline,joint,modo_vs --weightings new
    tools/venv/bin/python bench/bench_moo_step.py --device cuda --size 100m --amp bf16 --moo-buffer-dtype bf16
    tools/venv/bin/python bench/bench_moo_step.py --backbone tiny_w2v2 --methods baseline,batched_joint,joint,vm,vm_sel
    tools/venv/bin/python bench/bench_moo_step.py --device cuda --backbone hf_wav2vec2 --size xlsr300m --amp bf16

M = 10 objectives (asr_{en,fr,de,es,ca}, st_{fr,de,es,ca}, ssl = CPC), each with its own random
batch (``--utts`` × ``--secs`` of 80-dim features, split in two halves of disjoint utterances)
and random CTC targets, on the real SoupModel. One step = every objective's two half-batch
forward/backward passes + the method's combination into ``.grad`` + one host sync (the
non-finite check); the optimizer step is the same for every method and left out.

Methods: ``baseline`` (sequential ``loss.backward()`` into ``.grad`` per objective and half),
``batched_joint`` (what an ESPnet-style multi-task user runs: ONE forward of every supervised
objective's halves concatenated through the shared encoder, each objective's head and CTC loss
on its own rows, one SSL pass over both SSL halves, one backward of the mean of the M
objective losses; the honest reference for a MOO step), ``joint`` (Soup fast path), ``modo_vs`` (full-gradient MoDo over all 10), ``vm`` (asr > st > ssl,
MoDo per level), ``vm_sel`` (vm with layer selection: ``--moo-layers`` of the encoder's groups,
probe every ``--conflict-interval`` steps; its time is amortised: (probe + (N-1) ordinary) / N,
its memory is the probe's), and any weighting of the registry (``osoup.moo.WEIGHTINGS``) by
its name: ``vs`` over all 10 objectives with that weighting inside its one level, e.g.
``pcgrad``, ``upgrad``, ``famo`` (skipped with a note when a solver is missing).
``--weightings`` appends registry names to ``--methods``: a list, ``new`` (the weightings
added with docs/weightings.md) or ``all`` (every registry weighting except ``modo``, which is
``modo_vs``, and ``static``, which needs weights).

``--backbone tiny_w2v2|hf_wav2vec2`` replaces the Conformer by a wav2vec 2.0 encoder built from a
config with random weights (nothing is downloaded; ``docs/backbones.md``): ``tiny_w2v2`` is the
mini recipe's (osoup-make-tiny-w2v2: width 64, 2 layers), ``hf_wav2vec2 --size xlsr300m`` is
XLS-R 300M's architecture (24 layers, width 1024). Inputs are then raw 16 kHz waveforms, the SSL
objective is wav2vec 2.0's contrastive loss (``ssl: w2v2``) and the CNN feature encoder is frozen.

Every method is reported against ``baseline`` (``x base``) and ``batched_joint`` (``x bjoint``).
``--moo-buffer-dtype bf16`` stores the Soup's per-objective gradients in bf16 (half the memory;
Gramians and λ stay fp32); ``--amp bf16|fp16`` runs the forward passes under autocast;
``--profile`` prints each worker's top ops of one extra step (torch.profiler) to stderr.

Each method runs in its own worker process (peak RSS only grows on CPU); the parent asks the
workers for one timed step at a time, method after method, so drift hits all methods alike,
and reports medians. Memory: peak RSS (CPU) or ``torch.cuda.max_memory_allocated`` (CUDA).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

OBJECTIVES = ["asr_en", "asr_fr", "asr_de", "asr_es", "asr_ca", "st_fr", "st_de", "st_es", "st_ca", "ssl"]
METHODS = ["baseline", "batched_joint", "joint", "modo_vs", "vm", "vm_sel", "pcgrad", "upgrad"]
ENGINE_METHODS = ("baseline", "batched_joint", "joint", "modo_vs", "vm", "vm_sel")
REFERENCES = ("baseline", "batched_joint")  # the two ratio columns
PLAIN_METHODS = ("baseline", "batched_joint")  # no Soup: loss.backward() into .grad
NEW_WEIGHTINGS = ["fairgrad", "gradvac", "sdmgrad", "dualproj", "config", "krum",
                  "famo", "stch", "geometric_mean", "imtl_l", "rlw", "cosmos", "pbi"]


def _weighting_names() -> list[str]:
    """Registry weightings the bench can run as ``vs`` with that weighting."""
    from osoup.moo import WEIGHTINGS

    return [w for w in WEIGHTINGS if w not in ("modo", "static") and w not in ENGINE_METHODS]


def _expand_weightings(value: str) -> list[str]:
    if value == "new":
        return list(NEW_WEIGHTINGS)
    if value == "all":
        return _weighting_names()
    return [w.strip() for w in value.split(",") if w.strip()]


# ----------------------------------------------------------------------------- worker side
def batched_joint_loss(model, batches: dict, names: list[str]):
    """Mean over the objectives of their losses from ONE encoder pass over every supervised
    half (rows concatenated; the bench's halves share one length, so no extra padding), each
    head and CTC loss on its own rows, and one causal SSL pass over both SSL halves."""
    import torch

    from osoup.nets.heads import ctc_loss_sum

    keys = [(n, h) for n in names if n != "ssl" for h in (0, 1)]
    feats = torch.cat([batches[k][0] for k in keys])
    lengths = torch.cat([batches[k][1] for k in keys])
    enc = model.encoder(model.cmvn(feats), lengths)
    per_name: dict[str, list] = {}
    row = 0
    for n, h in keys:
        _, lens, targets, tlen = batches[n, h]
        rows = slice(row, row + lens.numel())
        row += lens.numel()
        logits = model.heads[n](enc.out[rows])
        per_name.setdefault(n, []).append(ctc_loss_sum(logits, enc.lengths[rows], targets, tlen) / tlen.sum())
    losses = [sum(v) / len(v) for v in per_name.values()]
    if "ssl" in names:
        ssl_feats = torch.cat([batches["ssl", h][0] for h in (0, 1)])
        ssl_lengths = torch.cat([batches["ssl", h][1] for h in (0, 1)])
        s, cnt = model.ssl_loss(ssl_feats, ssl_lengths)
        losses.append(s / cnt.clamp_min(1))
    return torch.stack(losses).mean(), losses


XLSR_300M = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, conv_dim=(512,) * 7,
    conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2), feat_extract_norm="layer",
    do_stable_layer_norm=True, conv_bias=True, num_codevector_groups=2, num_codevectors_per_group=320,
    codevector_dim=768, proj_codevector_dim=768, layerdrop=0.0)
"""XLS-R 300M's architecture (Babu et al., 2021; the checkpoint's config.json, dropouts left at the defaults)."""


def build_model(args: argparse.Namespace, heads: dict):
    """The bench's SoupModel and its input (feature dim, frames per second): the Conformer of
    ``--size`` on fbank with CPC, or a random-weight wav2vec 2.0 encoder on raw audio with w2v2."""
    from osoup.nets.configs import MODEL_CONFIGS
    from osoup.nets.model import SoupModel

    if args.backbone == "conformer":
        return SoupModel(MODEL_CONFIGS[args.size], heads, ssl="cpc"), 80, 100
    import transformers

    from osoup.bin.make_tiny_w2v2 import tiny_config

    conf = tiny_config() if args.backbone == "tiny_w2v2" else dict(XLSR_300M)
    hf_config = transformers.Wav2Vec2Config(**conf).to_dict()
    enc = {"backbone": "hf_wav2vec2", "hf_config": hf_config, "pretrained": False, "freeze_feature_encoder": True,
           "grad_checkpointing": args.grad_checkpointing}
    return SoupModel(enc, heads, ssl="w2v2"), 1, 16000


def _worker(args: argparse.Namespace) -> None:
    import resource

    import torch

    from osoup.moo import make_soup

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    vocab = args.vocab
    model, feat_dim, rate = build_model(args, {n: vocab for n in OBJECTIVES if n != "ssl"})
    model = model.to(dev)
    model.train()
    frames = int(args.secs * rate)
    out_frames = int(args.secs * 100) if feat_dim == 80 else model.encoder.n_frames(frames)
    half = args.utts // 2
    g = torch.Generator().manual_seed(1)
    batches = {}
    for n in OBJECTIVES:
        for h in (0, 1):
            feats = torch.randn(half, frames, feat_dim, generator=g).to(dev)
            lengths = torch.full((half,), frames, dtype=torch.long).to(dev)
            tlen = torch.randint(out_frames // 20, out_frames // 10, (half,), generator=g)
            targets = torch.randint(1, vocab, (half, int(tlen.max())), generator=g).to(dev)
            batches[n, h] = (feats, lengths, targets, tlen.to(dev))

    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)

    def autocast():
        return torch.autocast(dev.type, dtype=amp, enabled=amp is not None)

    def loss_of(n: str, h: int) -> torch.Tensor:
        with autocast():
            return _loss_of(n, h)

    def _loss_of(n: str, h: int) -> torch.Tensor:
        feats, lengths, targets, tlen = batches[n, h]
        if n == "ssl":
            s, cnt = model.ssl_loss(feats, lengths)
            return s / cnt.clamp_min(1)
        return model.supervised_loss(n, feats, lengths, targets, tlen) / tlen.sum()

    shared = model.shared_parameters()
    heads = {n: model.objective_head_parameters(n) for n in OBJECTIVES}
    method = args.method
    soup = None
    note = ""
    kw: dict = {}
    if method in ("vm", "vm_sel"):
        kw = dict(levels="asr>st>ssl")
    if method == "vm_sel":
        kw.update(layer_groups=model.encoder.layer_groups(), moo_layers=args.moo_layers,
                  conflict_interval=1 if args.probe else args.conflict_interval,
                  probe_coords=args.probe_coords or None)
    recipe = {"joint": "joint", "modo_vs": "vs", "vm": "vm", "vm_sel": "vm"}.get(method, None if method in PLAIN_METHODS else "vs")
    if recipe is not None:
        try:
            weighting = "modo" if method in ENGINE_METHODS else method
            soup = make_soup(recipe, shared, heads, OBJECTIVES, "ssl", weighting=weighting,
                             buffer_dtype=args.moo_buffer_dtype, **kw)
        except ImportError as e:
            print(json.dumps({"skip": str(e)}), flush=True)
            return
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    buf_bytes = [0]  # the Soup's per-objective buffers of the last step

    def one_step(epoch: float) -> None:
        losses = []
        if method == "batched_joint":
            for p in list(model.parameters()):
                p.grad = None
            with autocast():
                total, losses = batched_joint_loss(model, batches, OBJECTIVES)
            total.backward()
            losses = [x.detach() for x in losses]
        elif soup is None:
            for p in list(model.parameters()):
                p.grad = None
            for n in OBJECTIVES:
                for h in (0, 1):
                    loss = loss_of(n, h)
                    loss.backward()
                    losses.append(loss.detach())
        else:
            soup.zero_grad()
            soup.begin_step(epoch)
            for n in soup.objectives:
                for h in (0, 1):
                    loss = loss_of(n, h)
                    soup.backward(n, h, loss)
                    losses.append(loss.detach())
            buf_bytes[0] = sum(t.numel() * t.element_size() for t in soup.pending_buffers())
            soup.step(epoch)
        if not bool(torch.isfinite(torch.stack(losses)).all()):  # the step's one host sync
            raise RuntimeError("non-finite loss")

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        one_step(0.0)
    print(json.dumps({"ready": True, "note": note}), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        sync()
        if dev.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            one_step(1.0)
            end.record()
            torch.cuda.synchronize()
            dt = start.elapsed_time(end) / 1000.0
        else:
            t0 = time.perf_counter()
            one_step(1.0)
            dt = time.perf_counter() - t0
        if dev.type == "cuda":
            mem = torch.cuda.max_memory_allocated() / 2**20
        else:
            mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        print(json.dumps({"time": dt, "mem_mib": mem, "buf_mib": buf_bytes[0] / 2**20}), flush=True)
    if args.profile:
        _profile(method, dev, lambda: one_step(1.0))


def _profile(method: str, dev, step) -> None:
    """Print the top ops of one step (self time) to stderr."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        step()
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(f"--- profile of one {method} step (top ops by {key})", file=sys.stderr)
    print(prof.key_averages().table(sort_by=key, row_limit=12, max_name_column_width=40), file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- parent side
def _spawn(args: argparse.Namespace, method: str, probe: bool = False) -> subprocess.Popen:
    cmd = ([sys.executable, os.path.abspath(__file__), "--worker", "--method", method, "--device", args.device,
            "--size", args.size, "--backbone", args.backbone, "--utts", str(args.utts), "--secs", str(args.secs), "--vocab", str(args.vocab),
            "--warmup", str(args.warmup), "--threads", str(args.threads), "--moo-layers", str(args.moo_layers),
            "--conflict-interval", str(args.conflict_interval), "--probe-coords", str(args.probe_coords),
            "--moo-buffer-dtype", args.moo_buffer_dtype, "--amp", args.amp]
           + (["--probe"] if probe else []) + (["--grad-checkpointing"] if args.grad_checkpointing else []) + (["--profile"] if args.profile and not probe else []))
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1)


def _moo_layers(value: str) -> int | float:
    return float(value) if "." in value else int(value)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--size", default=None, help="MODEL_CONFIGS name (default: tiny on CPU, 58m on CUDA); "
                    "with --backbone hf_wav2vec2: xlsr300m")
    ap.add_argument("--backbone", default="conformer", choices=("conformer", "tiny_w2v2", "hf_wav2vec2"),
                    help="shared encoder (wav2vec 2.0 ones: random weights from a config, raw-audio input)")
    ap.add_argument("--grad-checkpointing", action="store_true", help="wav2vec 2.0 backbones: recompute activations")
    ap.add_argument("--methods", default=",".join(METHODS), help="engine methods and/or registry weighting names")
    ap.add_argument("--weightings", default="", help="registry weightings to add to --methods: a list, 'new' or 'all'")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per method (interleaved)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--utts", type=int, default=4, help="utterances per objective batch (two halves)")
    ap.add_argument("--secs", type=float, default=2.0)
    ap.add_argument("--vocab", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--moo-layers", type=_moo_layers, default=2)
    ap.add_argument("--conflict-interval", type=int, default=50)
    ap.add_argument("--probe-coords", type=int, default=0, help="vm_sel: CountSketch buckets per group on probes (0: every coordinate)")
    ap.add_argument("--moo-buffer-dtype", default="fp32", choices=("fp32", "bf16"),
                    help="storage of the Soup's per-objective gradient buffers")
    ap.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"), help="autocast of the forward passes")
    ap.add_argument("--profile", action="store_true", help="print each worker's top ops of one step (stderr)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.size is None:
        args.size = {"conformer": "58m" if args.device == "cuda" else "tiny", "tiny_w2v2": "tiny",
                     "hf_wav2vec2": "xlsr300m"}[args.backbone]
    if args.backbone == "hf_wav2vec2" and args.size != "xlsr300m":
        ap.error("--backbone hf_wav2vec2 has one --size: xlsr300m")
    if args.worker:
        _worker(args)
        return

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    methods += [w for w in _expand_weightings(args.weightings) if w not in methods]
    known = list(ENGINE_METHODS) + _weighting_names()
    unknown = [m for m in methods if m not in known]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {known}")
    if not any(r in methods for r in REFERENCES):
        ap.error("--methods must include baseline or batched_joint (the ratios are relative to them)")
    t_start = time.time()
    times, mems, bufs, skipped = _run_workers(args, methods)
    rows = _rows(args, methods, times, mems, bufs, skipped)
    _print_table(args, rows)
    print(f"(total {time.time() - t_start:.0f}s)")
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)
        os.replace(tmp, args.json)


def _run_workers(args: argparse.Namespace, methods: list[str]) -> tuple[dict, dict, dict, dict]:
    """Start one worker per method (and a probing vm_sel), then time ``--repeats`` steps of each,
    method after method. Returns per (method, probe): step times, peak memory (MiB), the Soup's
    per-objective buffer size (MiB); and the skipped methods with their reason."""
    runs = [(m, False) for m in methods] + ([("vm_sel", True)] if "vm_sel" in methods else [])
    workers, skipped = {}, {}
    for key in runs:  # start one at a time: model builds would fight for the 2 cores
        w = _spawn(args, *key)
        reply = json.loads(w.stdout.readline() or '{"skip": "worker died"}')
        if "skip" in reply:
            skipped[key[0]] = reply["skip"]
            w.wait()
        else:
            workers[key] = w
    times: dict = {k: [] for k in workers}
    mems: dict = {k: 0.0 for k in workers}
    bufs: dict = {k: 0.0 for k in workers}
    for _ in range(args.repeats):
        for key, w in workers.items():
            w.stdin.write("step\n")
            w.stdin.flush()
            out = json.loads(w.stdout.readline())
            times[key].append(out["time"])
            mems[key] = max(mems[key], out["mem_mib"])
            bufs[key] = max(bufs[key], out["buf_mib"])
    for w in workers.values():
        w.stdin.close()
        w.wait()
    return times, mems, bufs, skipped


def _rows(args: argparse.Namespace, methods: list[str], times: dict, mems: dict, bufs: dict, skipped: dict) -> list[dict]:
    """Median time and peak memory per method, amortised for vm_sel, with ratios to both references
    (``time_ratio``/``mem_ratio``: to baseline; ``*_bjoint``: to batched_joint)."""
    med = {k: statistics.median(v) for k, v in times.items()}
    n = args.conflict_interval
    rows = []
    for m in methods:
        if m in skipped:
            rows.append({"method": m, "skipped": skipped[m]})
            continue
        t, mem = med[(m, False)], mems[(m, False)]
        row = {"method": m, "time_s": t, "mem_mib": mem, "buffer_mib": bufs[(m, False)]}
        if m == "vm_sel":
            tp = med[("vm_sel", True)]
            row.update(time_ordinary_s=t, time_probe_s=tp, time_s=(tp + (n - 1) * t) / n,
                       mem_mib=max(mem, mems[("vm_sel", True)]), mem_ordinary_mib=mem)
        rows.append(row)
    ref = {r["method"]: r for r in rows if r["method"] in REFERENCES and "skipped" not in r}
    for row in rows:
        for name, suffix in (("baseline", ""), ("batched_joint", "_bjoint")):
            if name in ref and "skipped" not in row:
                row["time_ratio" + suffix] = row["time_s"] / ref[name]["time_s"]
                row["mem_ratio" + suffix] = row["mem_mib"] / ref[name]["mem_mib"]
    return rows


def _ratio(row: dict, key: str, width: int) -> str:
    return f"{row[key]:{width}.3f}" if key in row else f"{'-':>{width}s}"


def _print_table(args: argparse.Namespace, rows: list[dict]) -> None:
    print(f"device={args.device} backbone={args.backbone} size={args.size} M={len(OBJECTIVES)} batch={args.utts}x{args.secs}s/objective "
          f"threads={args.threads} amp={args.amp} moo_buffer_dtype={args.moo_buffer_dtype} "
          f"repeats={args.repeats} (medians, interleaved) moo_layers={args.moo_layers} "
          f"conflict_interval={args.conflict_interval} probe_coords={args.probe_coords or 'all'}")
    print(f"{'method':15s} {'step s':>8s} {'x base':>7s} {'x bjoint':>8s} {'peak MiB':>9s} {'x mem':>6s} "
          f"{'x mem bj':>8s} {'buf MiB':>8s}  notes")
    for r in rows:
        if "skipped" in r:
            print(f"{r['method']:15s} {'-':>8s} {'-':>7s} {'-':>8s} {'-':>9s} {'-':>6s} {'-':>8s} {'-':>8s}  "
                  f"skipped: {r['skipped'][:90]}")
            continue
        note = ""
        if r["method"] == "vm_sel":
            note = (f"amortised; ordinary {r['time_ordinary_s']:.3f}s, probe {r['time_probe_s']:.3f}s; "
                    f"ordinary-step mem {r['mem_ordinary_mib']:.0f} MiB")
        print(f"{r['method']:15s} {r['time_s']:8.3f} {_ratio(r, 'time_ratio', 7)} {_ratio(r, 'time_ratio_bjoint', 8)} "
              f"{r['mem_mib']:9.0f} {_ratio(r, 'mem_ratio', 6)} {_ratio(r, 'mem_ratio_bjoint', 8)} "
              f"{r['buffer_mib']:8.1f}  {note}")

if __name__ == "__main__":
    main()
