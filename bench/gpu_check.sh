#!/usr/bin/env bash
# One prepared check of the MOO core on a GPU machine, end to end in under 8 minutes
# (docs/distributed.md, "GPU check"). Every step writes <out>/<step>.txt; <out>/summary.txt
# lists each step as "ok", "skipped (why)" or "FAILED"; the exit status is 1 if any step failed.
#
#   bash bench/gpu_check.sh [--out DIR] [--dry-run]
#
# Steps:
#   gpu_tests           pytest -m gpu test/test_gpu.py (device placement, no host sync in
#                       Soup.step, bf16/fp16 training of the tiny model, 2-rank equivalence)
#   bench_moo_step      bench/bench_moo_step.py --size 100m: baseline, batched_joint, joint,
#                       vs (modo_vs), vm, vm_sel; bf16 autocast, bf16 per-objective buffers
#   bench_profile       a torch.profiler summary of one batched_joint and one vm step
#   bench_fp32_buffers  batched_joint, vs and vm_sel with fp32 buffers (memory), no profile
#   distributed         2 ranks vs one process on the union batch through the Soup: NCCL on
#                       2 GPUs, else gloo with both ranks on the one GPU
#   distributed_trainer test/test_distributed.py's 2-rank osoup-train run: NCCL with 2 GPUs;
#                       with one GPU the trainer cannot share it between ranks, so it runs
#                       on CPU (gloo)
#   bench_input         bench/bench_input.py: host input pipeline with 0, 2, 4, 8 loader workers
#   bench_encoder       bench/bench_encoder.py --device cuda (against ESPnet when installed)
# --dry-run: every step on CPU at the smallest size (tiny model, one step, three bench
# methods, no autocast or profile; the gpu tests collected and skipped; the 2-rank Soup check on CPU over gloo; the
# trainer test only collected), as CI does (test/test_gpu.py::test_gpu_check_dry_run).
set -euo pipefail

log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') (gpu_check.sh:${BASH_LINENO[0]}) $*" >&2
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

out=gpu_check_out
dry_run=false
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || { echo "ERROR: --out needs a directory" >&2; exit 1; }; out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "ERROR: unknown option '$1' (see --help)" >&2; exit 1 ;;
  esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x tools/venv/bin/python ]; then python=tools/venv/bin/python; else python=python3; fi
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONIOENCODING=UTF-8 LC_ALL=C
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
summary=$out/summary.txt
: > "$summary"
deadline=$((SECONDS + 460))  # the whole check stays under 8 minutes
failed=0

# run_step NAME LIMIT_S CMD...: run CMD into $out/NAME.txt with a time limit, record the result.
run_step() {
  local name=$1 limit=$2 left start rc
  shift 2
  left=$((deadline - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "$name: skipped (out of the 8-minute budget)" >> "$summary"
    log "$name: skipped, out of time"
    return 0
  fi
  [ "$limit" -le "$left" ] || limit=$left
  log "$name: $* (limit ${limit}s)"
  start=$SECONDS
  rc=0
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "$name: ok ($((SECONDS - start)) s)" >> "$summary"
  else
    echo "$name: FAILED (exit $rc after $((SECONDS - start)) s; see $name.txt)" >> "$summary"
    log "$name failed (exit $rc); the end of $out/$name.txt:"
    tail -n 40 "$out/$name.txt" >&2
    failed=1
  fi
}

if $dry_run; then
  device=cpu
  ngpu=0
  # no autocast and no profile on CPU: both only cost time there
  bench_size=(--device cpu --size tiny --utts 2 --secs 0.3 --repeats 1 --warmup 0 --threads 1 --conflict-interval 2)
  bench_amp=none
  profile=()
  bench_methods=batched_joint,modo_vs,vm_sel  # one plain, one Soup, one layer-selection worker
  profile_methods=batched_joint,vm
  fp32_methods=batched_joint,modo_vs
  dist_device=cpu
else
  ngpu=$("$python" -c 'import torch; print(torch.cuda.device_count())')
  if [ "$ngpu" -lt 1 ]; then
    echo "ERROR: no CUDA device visible to $python (use --dry-run for the CPU rehearsal)" >&2
    exit 1
  fi
  device=cuda
  bench_size=(--device cuda --size 100m --repeats 5 --warmup 2 --conflict-interval 50)
  bench_amp=bf16
  profile=(--profile)
  bench_methods=baseline,batched_joint,joint,modo_vs,vm,vm_sel
  profile_methods=batched_joint,vm
  fp32_methods=batched_joint,modo_vs,vm_sel
  dist_device=cuda
fi
log "device=$device gpus=$ngpu out=$out python=$python"
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
  [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])' > "$out/environment.txt" 2>&1 || true
nvidia-smi >> "$out/environment.txt" 2>&1 || true

run_step gpu_tests 150 env OSOUP_GPU_CHECK_DEVICE=cuda \
  "$python" -m pytest -q -rs -m gpu test/test_gpu.py -p no:cacheprovider --junitxml "$out/gpu_tests.xml"

run_step bench_moo_step 200 "$python" bench/bench_moo_step.py "${bench_size[@]}" \
  --methods "$bench_methods" --moo-buffer-dtype bf16 --amp "$bench_amp" --json "$out/bench_moo_step.json"

# The profiles get a step of their own: one profiled 100m step of a 10-objective method takes
# 20-30 s to tabulate, and with all six methods the timed step ran past its limit (2026-12-04).
run_step bench_profile 90 "$python" bench/bench_moo_step.py "${bench_size[@]}" --repeats 1 --warmup 1 \
  --methods "$profile_methods" --moo-buffer-dtype bf16 --amp "$bench_amp" "${profile[@]}"

run_step distributed 90 env OSOUP_GPU_CHECK_DEVICE="$dist_device" \
  "$python" -m pytest -q -rs test/test_gpu.py -k two_ranks -p no:cacheprovider

if $dry_run; then
  run_step distributed_trainer 60 "$python" -m pytest -q --collect-only test/test_distributed.py -p no:cacheprovider
elif [ "$ngpu" -ge 2 ]; then
  run_step distributed_trainer 200 env CUDA_VISIBLE_DEVICES=0,1 \
    "$python" -m pytest -q -rs -m slow test/test_distributed.py -p no:cacheprovider
else
  run_step distributed_trainer 200 env CUDA_VISIBLE_DEVICES= \
    "$python" -m pytest -q -rs -m slow test/test_distributed.py -p no:cacheprovider
fi

run_step bench_fp32_buffers 120 "$python" bench/bench_moo_step.py "${bench_size[@]}" \
  --methods "$fp32_methods" --moo-buffer-dtype fp32 --amp "$bench_amp" --json "$out/bench_fp32_buffers.json"

# The input pipeline runs on the host's CPUs whatever the device (it feeds the GPU); the encoder
# bench times osoup's Conformer against ESPnet's when ESPnet is installed, osoup's alone otherwise.
if $dry_run; then
  run_step bench_input 120 "$python" bench/bench_input.py --hours 0.02 --steps 4 --workers 0 1
  run_step bench_encoder 120 "$python" bench/bench_encoder.py --sizes d144 --repeats 1 --warmup 0 --threads 1
else
  run_step bench_input 120 "$python" bench/bench_input.py --hours 0.5 --workers 0 2 4 8
  run_step bench_encoder 150 "$python" bench/bench_encoder.py --device cuda --threads 8 --repeats 3
fi

log "summary ($out/summary.txt):"
cat "$summary" >&2
exit "$failed"
