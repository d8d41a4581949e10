#!/usr/bin/env bash
# The shared stage script of the osoup recipes. Run it from a recipe directory (egs/<corpus>/),
# which provides path.sh, cmd.sh (optional), db.sh, local/data.sh and, if it generates its
# corpus, local/make_corpus.sh. A recipe's run.sh names its languages and calls this with "$@".
# This script knows no corpus: the recipe's local scripts do, called as
#   local/make_corpus.sh --langs L --nj N <local_corpus_opts>
#   local/data.sh --asr-langs L --st-langs L --ssl-sets S --nj N <local_data_opts>
#   local/data.sh --list-inputs true --asr-langs L --st-langs L --ssl-sets S <local_data_opts>
# where the last prints the corpus files and directories the data stage reads, one a line.
#
#   ../TEMPLATE/asr.sh --asr-langs "en fr" --st-langs "fr" [options]
#
# Stages (docs/design.md):
#   0  corpus generation: local/make_corpus.sh (only if the recipe has one)
#   1  data prep: local/data.sh                              -> data/<split>_<lang>/, data/<ssl set>/
#   2  speed perturbation (skipped when speed_perturb_factors is empty) -> data/<train>_sp_<lang>/
#   3  fbank (or raw 16 kHz waveforms), nj parallel jobs    -> dump/raw/<set>/
#   4  length/empty-text filter and global CMVN             -> dump/fbank/<set>/, dump/fbank/global_cmvn.json
#   5  SentencePiece models and CTC-length filter           -> data/token/{asr_<lang>,st_en}/, dump/{asr,st}/<set>/
#   6  training, one experiment per method and seed          -> exp/<method>[_seed<N>]/ (N >= 2)
#   7  CTC decoding of the test sets with every head         -> exp/<tag>/decode_<search>/<set>/hyp.{asr,st}
#   8  scoring (WER, CER for zh, BLEU)                       -> exp/<tag>/RESULTS.md, results.json
#   9  comparison of all methods (tables, radar, trade-off, resources) -> exp/RESULTS_compare/
#   10 gradient-conflict analysis of the first method       -> exp/<tag>/conflict/ (suggested_levels.txt)
#   11 model soups of --soup-methods (osoup-soup)            -> exp/soup[_<exp_tag>]/
# Baselines in --methods besides the training methods of osoup-train:
#   single        one model per supervised objective (joint on that objective + SSL, or alone
#                 without SSL), exp/single_<asr|st>_<lang>; each decodes its own language's test
#                 sets with its own head; stage 9 shows them as one method "single"
#   static_sweep  joint with fixed task-group weights, one experiment per point of --static-grid,
#                 exp/static_sweep_<point>; stage 9 reports the point with the lowest dev loss
#                 and lists every point's dev loss
# Pretrained backbones (paper appendix F.2, Table 8): a train config with "backbone: hf_wav2vec2"
# makes stage 3 dump raw waveforms (--feats-type raw: [samples, 1] float32 matrices, plus
# utt2num_samples and feats_type) instead of fbank; stage 4 then filters lengths in samples and
# writes an identity CMVN, stage 5 counts CTC frames with the backbone's CNN (--backbone-dir) and
# stage 6 passes --backbone-dir to osoup-train. The dump dirs keep their names for either kind.
# Stages 1-6, 10 and 11 write a .done marker holding a signature of their options and inputs (stage 1:
# the size and mtime of every corpus file local/data.sh lists); a rerun skips finished steps and
# redoes killed or outdated ones. Stage 6 moves an experiment trained from other options or inputs
# to exp/<tag>.old<N> before training it again. Each stage (each experiment in stages 6-8, 10)
# holds a lock in data/.lock/: a second run of it in this directory stops at once.
# Options: any variable below as --foo-bar VALUE. The *_opts options are words separated by
# spaces, never evaluated: quotes are refused, list values take commas (e.g. --snr 10,30).
set -euo pipefail

log() { printf '%s (%s:%s) %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "${BASH_SOURCE[1]##*/}" "${BASH_LINENO[0]}" "$*" >&2; }
trap 'log "ERROR: a command failed (exit status $?) near line $LINENO"' ERR

# General
stage=0                   # first stage to run
stop_stage=10000          # last stage to run
nj=4                      # parallel jobs (audio probing, speed perturbation, fbank)
cmd=run.pl                # job runner (cmd.sh may set it; utils/run.pl runs jobs locally)

# Data (stages 0-2)
local_corpus_opts=""      # extra options of local/make_corpus.sh (words, e.g. "--seed 2 --snr 10,30")
local_data_opts=""        # extra options of local/data.sh (words, e.g. "--max-bad-frac 0.1")
asr_langs=""              # languages with an ASR objective, e.g. "en fr de es ca"
st_langs=""               # languages translated into English, e.g. "fr de es ca"
ssl_sets=""               # extra data dirs used only as SSL audio (local/data.sh makes them), e.g. "ssl_train-clean-360_en"
train_set=train           # training split: data/<split>_<lang>
valid_set=dev             # validation split (CTC-filtered like train)
test_sets="test"          # test splits (never length- or CTC-filtered)
speed_perturb_factors=""  # e.g. "0.9 1.0 1.1"; empty: stage 2 is skipped

# Features (stages 3-4)
feats_type=""             # fbank | raw (16 kHz waveforms); empty: raw when the train config's backbone is hf_wav2vec2, else fbank
fbank_opts=""             # extra options of osoup-compute-fbank, e.g. "--dither 0"
min_sec=0.3               # train/dev utterances outside [min_sec, max_sec] are removed
max_sec=20                # (test sets keep every length)

# Tokens (stage 5)
asr_vocab_size=1000       # per-language SentencePiece vocabulary (capped by the data)
asr_vocab_sizes=""        # per-language overrides "lang:size", e.g. "zh:5000"
asr_model_types="zh:char"  # per-language model types "lang:type"; unigram for the others
st_vocab_size=1000        # the English model shared by every translation head
st_model_type=unigram     # its model type (unigram | bpe | char)
subsampling=4             # encoder subsampling factor for the CTC length filter
st_units_phase2=""        # "type:size", e.g. unigram:300: stage 5 also makes these English units (data/token/st_en_<type><size>, dump/st_<type><size>/) and stage 6 trains in two phases (--phase2-train-opts)

# Training, decoding, scoring (stages 6-9)
method=""                 # one method: vs | vc | vm | joint | two_stage | two_stage_static | peft
recipe=""                 # older name of --method
levels=""                 # vm hierarchy for --method vm, e.g. "asr>st>ssl" (UAS) or "st>asr>ssl" (USA)
methods="vm:asr>st>ssl"   # several methods (used when --method is empty): "method[:levels] ...", also single static_sweep
static_grid="asr:0.6,st:0.3,ssl:0.1 asr:0.45,st:0.45,ssl:0.1 asr:0.3,st:0.6,ssl:0.1 asr:0.4,st:0.4,ssl:0.2"  # static_sweep's points (--task-weights values)
init_from=""              # stage 6: initialise every experiment trained now from this model file, e.g. exp/two_stage/pretrain.pt
train_config=conf/train.yaml  # osoup-train YAML config (model size, lr, epochs, penalties ...)
backbone_dir=""           # local checkpoint dir of a pretrained backbone (stages 5-6); empty: the train config's backbone-dir
train_opts=""             # extra osoup-train options (words), e.g. "--ssl bestrq --gamma 0.05"
seeds=1                   # train each method with seeds 1..N (N>1: mean +- std); seed 1 in exp/<method>, seed N in exp/<method>_seedN, so more seeds reuse a finished run
phase2_train_opts=""      # with --st-units-phase2: extra osoup-train options of the second phase (words), e.g. "--epochs 4 --step-size 3"
train_jobs=1              # stage 6: experiments trained at once on this machine (each with --threads cores/N; logs in exp/log/)
ngpu=1                    # GPUs per node for training; >1: torchrun, one process per GPU (NCCL); 0: CPU
nproc=1                   # with --ngpu 0: CPU processes per node (>1: torchrun with gloo)
num_nodes=1               # nodes; >1: run stage 6 on every node with the same --master-addr (docs/distributed.md)
master_addr=localhost     # rendezvous host:port of a multi-node run (any one of the nodes)
master_port=29500
exp_tag=""                # experiment name prefix (default: none)
search=greedy             # CTC search: greedy | beam
beam=10                   # beam size for --search beam
decode_model=best.pt      # checkpoint to decode: best.pt | latest.pt | avgN.pt
decode_opts=""            # extra osoup-decode options (words), e.g. "--batch-frames 20000 --device cpu"
conflict_batches=20       # stage 10: batches per objective for the gradient-conflict analysis
conflict_opts=""          # stage 10: extra osoup-conflict options, e.g. "--split dev --threshold 0.05"
resources=true            # stage 9: also measure each method's deployment cost (paper Table 9: RESOURCES.md)
soup_methods=""           # stage 11: methods (as in --methods) whose first-seed models osoup-soup averages; empty: skip
soup_grid_step=0.1        # stage 11: spacing of the soup weight grid
# End of options: --help lists "name=default  # comment" lines from "# General" to here.

utils=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../utils" && pwd -P)
if [ -f ./cmd.sh ]; then
  # shellcheck disable=SC1091
  . ./cmd.sh
fi
# --help: the header comment above, then every option with its default and comment.
# shellcheck disable=SC2034  # read by parse_options.sh
help_message=$(
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p;}' "${BASH_SOURCE[0]}"
  echo
  echo "Options (--name default: meaning):"
  sed -n '/^# General$/,/^# End of options/p' "${BASH_SOURCE[0]}" | awk '
    /^# End of options/ { next }
    /^# / { print "  [" substr($0, 3) "]"; next }
    match($0, /^[a-z_0-9]+=/) {
      name = substr($0, 1, RLENGTH - 1); gsub("_", "-", name)
      rest = substr($0, RLENGTH + 1); comment = ""
      if ((i = index(rest, "  #")) > 0) { comment = substr(rest, i + 2); rest = substr(rest, 1, i - 1) }
      sub(/^# */, "", comment); sub(/ +$/, "", rest)
      printf "  --%s %s: %s\n", name, rest, comment
    }'
)
# shellcheck disable=SC1091
. "$utils/parse_options.sh"
# shellcheck disable=SC1091
. "$utils/stage_lib.sh"
if [ $# -gt 0 ]; then
  log "ERROR: unexpected arguments: $*"; exit 1
fi
[ -f ./path.sh ] || { log "ERROR: run me from a recipe directory (no ./path.sh in $PWD)"; exit 1; }
# shellcheck disable=SC1091
. ./path.sh

# The layout of docs/design.md (local/data.sh writes data/ too, so these are not options).
datadir=data
dumpdir=dump
tokendir=data/token
lockdir=$datadir/.lock

read -r -a asr_arr <<< "$asr_langs"
read -r -a st_arr <<< "$st_langs"
read -r -a ssl_arr <<< "$ssl_sets"
read -r -a test_arr <<< "$test_sets"
read -r -a cmd_arr <<< "$cmd"
corpus_arr=() data_arr=() fbank_arr=() train_arr=() phase2_arr=() decode_arr=() conflict_arr=()  # set by split_opts
split_opts corpus_arr local-corpus-opts "$local_corpus_opts"
split_opts data_arr local-data-opts "$local_data_opts"
split_opts fbank_arr fbank-opts "$fbank_opts"
split_opts train_arr train-opts "$train_opts"
split_opts phase2_arr phase2-train-opts "$phase2_train_opts"
split_opts decode_arr decode-opts "$decode_opts"
split_opts conflict_arr conflict-opts "$conflict_opts"
# Every language with data, in order of first mention.
read -r -a langs <<< "$(printf '%s\n' "${asr_arr[@]}" "${st_arr[@]}" | awk 'NF && !seen[$0]++' | tr '\n' ' ')"
if [ ${#langs[@]} -eq 0 ]; then
  log "ERROR: no languages: set --asr-langs and/or --st-langs"; exit 1
fi
# Two training phases: the translation heads start over on other English units (docs/design.md).
units2=""
if [ -n "$st_units_phase2" ]; then
  if ! [[ $st_units_phase2 =~ ^(unigram|bpe|char):[1-9][0-9]*$ ]]; then
    log "ERROR: --st-units-phase2 $st_units_phase2: give type:size with type unigram, bpe or char, e.g. unigram:300"; exit 1
  fi
  if [ ${#st_arr[@]} -eq 0 ]; then log "ERROR: --st-units-phase2 needs translation languages (--st-langs)"; exit 1; fi
  units2=${st_units_phase2%%:*}${st_units_phase2#*:}
elif [ ${#phase2_arr[@]} -gt 0 ]; then
  log "ERROR: --phase2-train-opts is for the second training phase: set --st-units-phase2 too"; exit 1
fi
if ! [[ $train_jobs =~ ^[1-9][0-9]*$ ]]; then log "ERROR: --train-jobs $train_jobs: give a positive integer"; exit 1; fi
train_split=$train_set
if [ -n "$speed_perturb_factors" ]; then
  train_split=${train_set}_sp
fi

# The backbone of the training set-up decides the features: a pretrained one (hf_wav2vec2) reads
# raw waveforms, and stages 5-6 need its checkpoint dir.
train_value() {  # train_value KEY: the value of --KEY in --train-opts, else of "KEY: value" in the train config
  local i v=""
  for i in "${!train_arr[@]}"; do
    if [ "${train_arr[$i]}" = "--$1" ]; then v=${train_arr[$((i + 1))]:-}; fi
  done
  if [ -z "$v" ] && [ -f "$train_config" ]; then
    v=$(sed -n "s/^$1:[[:space:]]*//p" "$train_config" | tail -n 1 | sed 's/[[:space:]]#.*$//; s/[[:space:]]*$//')
    v=${v#[\"\']}
    v=${v%[\"\']}
  fi
  printf '%s\n' "$v"
}
backbone=$(train_value backbone)
backbone=${backbone:-conformer}
backbone_dir=${backbone_dir:-$(train_value backbone-dir)}
backbone_feats=fbank  # what the backbone reads
if [ "$backbone" != conformer ]; then backbone_feats=raw; fi
feats_type=${feats_type:-$backbone_feats}
case $feats_type in
  fbank|raw) ;;
  *) log "ERROR: --feats-type $feats_type: choose fbank or raw"; exit 1 ;;
esac
require_backbone_dir() {  # require_backbone_dir WHAT: stop unless --backbone-dir names a checkpoint dir
  if [ -z "$backbone_dir" ]; then
    log "ERROR: $1 needs the pretrained backbone's checkpoint dir: set --backbone-dir or backbone-dir in $train_config"
    exit 1
  elif [ ! -d "$backbone_dir" ]; then
    log "ERROR: backbone dir $backbone_dir not found ($1 needs a local checkpoint dir with config.json; set --backbone-dir or backbone-dir in $train_config)"
    exit 1
  elif [ ! -f "$backbone_dir/config.json" ]; then
    log "ERROR: backbone dir $backbone_dir has no config.json ($1 needs a local checkpoint dir, e.g. from save_pretrained)"
    exit 1
  fi
}
feats_kind() { if [ -f "$1/feats_type" ]; then cat "$1/feats_type"; else echo fbank; fi; }  # feats_kind DUMPDIR

in_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
lookup() {  # lookup "zh:char ca:bpe" LANG DEFAULT
  local kv pairs
  read -r -a pairs <<< "$1"
  for kv in "${pairs[@]}"; do
    if [ "${kv%%:*}" = "$2" ]; then echo "${kv#*:}"; return; fi
  done
  echo "$3"
}
validate() {  # validate [--no-text] DIR...
  "$utils/validate_data_dir.sh" "$@" || { log "ERROR: invalid data dir(s): $*"; return 1; }
}
is_ssl_set() { local s; for s in "${ssl_arr[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
is_test_split() { local s; for s in "${test_arr[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

# All sets of stages 3-4: <split>_<lang> for each language and split, then the SSL sets.
sets=()
for lang in "${langs[@]}"; do
  for split in "$train_split" "$valid_set" "${test_arr[@]}"; do
    sets+=("${split}_${lang}")
  done
done
sets+=("${ssl_arr[@]}")

if in_stage 0; then
  if [ -x local/make_corpus.sh ]; then
    take_lock "$lockdir/stage0" "stage 0"
    log "Stage 0: generating the corpus: local/make_corpus.sh --langs \"${langs[*]}\" --nj $nj ${corpus_arr[*]}"
    local/make_corpus.sh --langs "${langs[*]}" --nj "$nj" "${corpus_arr[@]}"
    release_lock
  else
    log "Stage 0: nothing to do (this recipe reads an existing corpus; see db.sh)"
  fi
fi

# Stage 1 options (the recipe's local/data.sh knows its corpus and the roots of its db.sh).
data_args=(--asr-langs "$asr_langs" --st-langs "$st_langs" --ssl-sets "$ssl_sets" "${data_arr[@]}")
stage1_signature() {  # the options, the recipe's scripts, and the corpus files local/data.sh reads
  local inputs
  if ! inputs=$(local/data.sh --list-inputs true "${data_args[@]}"); then
    log "ERROR: 'local/data.sh --list-inputs true' failed (see above); it lists the corpus files stage 1 reads"
    return 1
  fi
  printf 'data.sh %s| %s | inputs %s\n' "$(printf '%q ' "${data_args[@]}")" "$(checksum db.sh local/data.sh)" \
    "$(inputs_checksum <<< "$inputs")"
}

if in_stage 1; then
  take_lock "$lockdir/stage1" "stage 1"
  marker=$datadir/.stage1.done
  sig=$(stage1_signature) || exit 1
  if is_done "$marker" "$sig"; then
    log "Stage 1: data dirs already prepared ($marker)"
  else
    log "Stage 1: data preparation: local/data.sh --nj $nj ${data_args[*]}"
    rm -f "$marker"
    local/data.sh --nj "$nj" "${data_args[@]}"
    for lang in "${st_arr[@]}"; do
      for split in "$train_set" "$valid_set" "${test_arr[@]}"; do
        if [ ! -f "$datadir/${split}_${lang}/text.en" ]; then
          log "ERROR: $datadir/${split}_${lang}/text.en is missing but $lang is in st_langs"; exit 1
        fi
      done
    done
    dirs=()
    for lang in "${langs[@]}"; do
      for split in "$train_set" "$valid_set" "${test_arr[@]}"; do dirs+=("$datadir/${split}_${lang}"); done
    done
    validate "${dirs[@]}"
    for s in "${ssl_arr[@]}"; do validate --no-text "$datadir/$s"; done
    # Signed as the inputs are now: data.sh may have changed them itself (unpacked tarballs).
    sig=$(stage1_signature) || exit 1
    mark_done "$marker" "$sig"
  fi
  release_lock
fi

if in_stage 2; then
  if [ -z "$speed_perturb_factors" ]; then
    log "Stage 2: skipped (no speed_perturb_factors)"
  else
    take_lock "$lockdir/stage2" "stage 2"
    for lang in "${langs[@]}"; do
      src=$datadir/${train_set}_${lang}
      out=$datadir/${train_split}_${lang}
      sig="factors $speed_perturb_factors | $(dir_checksum "$src")"
      if is_done "$out/.done" "$sig"; then
        log "Stage 2: $out already done"; continue
      fi
      log "Stage 2: speed perturbation ($speed_perturb_factors) $src -> $out"
      rm -f "$out/.done"
      mkdir -p "$out/log"
      "${cmd_arr[@]}" "$out/log/speed_perturb.log" \
        osoup-speed-perturb --in "$src" --out "$out" --factors "$speed_perturb_factors" --nj "$nj"
      validate "$out"
      mark_done "$out/.done" "$sig"
    done
    release_lock
  fi
fi

if in_stage 3; then
  # A killed stage 3 resumes where it stopped: each fbank job leaves its own marker
  # (data/.done.JOB) once its ark, scp and utt2num_frames are complete, so a rerun recomputes
  # only unfinished jobs (arks are written under a temporary name and renamed). The set's
  # .progress holds the signature the jobs belong to; another signature starts the set afresh.
  # --feats-type raw stores the 16 kHz waveforms instead, with utt2num_samples (the same counts).
  num_files=(utt2num_frames)
  if [ "$feats_type" = raw ]; then num_files+=(utt2num_samples); fi
  # shellcheck disable=SC2016  # expanded by the job's own bash
  fbank_job='m=$1; shift; if [ -f "$m" ]; then echo "already done ($m)"; exit 0; fi; "$@" && touch "$m"'
  take_lock "$lockdir/stage3" "stage 3"
  for set in "${sets[@]}"; do
    src=$datadir/$set
    out=$dumpdir/raw/$set
    raw_opts=()
    if [ "$feats_type" = raw ]; then raw_opts=(--feats-type raw --out-num-samples "$out/data/utt2num_samples.JOB"); fi
    n_utt=$(wc -l < "$src/wav.scp")
    _nj=$(( nj < n_utt ? nj : n_utt ))
    sig="$feats_type $fbank_opts | $(dir_checksum "$src")"
    if is_done "$out/.done" "$sig"; then
      log "Stage 3: $out already done"; continue
    fi
    if is_done "$out/.progress" "$sig | nj $_nj"; then
      n_fin=$(find "$out/data" -maxdepth 1 -name '.done.*' | wc -l)
      log "Stage 3: resuming $out: $n_fin of $_nj fbank jobs already finished"
      # temporary arks of killed jobs, and outputs of a merge that did not finish
      find "$out/data" -maxdepth 1 -name '.feats.*.tmp' -delete
      rm -rf "$out/.done" "$out/feats.scp" "$out/utt2num_frames" "$out/utt2num_samples" "$out/feats_type" "$out/.backup"
    else
      rm -rf "$out"
      mkdir -p "$out/log" "$out/data"
      split_scps=()
      for n in $(seq "$_nj"); do split_scps+=("$out/split${_nj}/wav.$n.scp"); done
      "$utils/split_scp.sh" "$src/wav.scp" "${split_scps[@]}"
      mark_done "$out/.progress" "$sig | nj $_nj"
    fi
    for f in wav.scp text text.en utt2spk spk2utt utt2dur; do  # fix_data_dir below may have edited them
      if [ -f "$src/$f" ]; then cp "$src/$f" "$out/$f"; fi
    done
    log "Stage 3: $feats_type of $src ($n_utt utterances, $_nj jobs) -> $out"
    "${cmd_arr[@]}" JOB=1:"$_nj" "$out/log/fbank.JOB.log" bash -c "$fbank_job" fbank-job "$out/data/.done.JOB" \
      osoup-compute-fbank --wav-scp "$out/split${_nj}/wav.JOB.scp" \
        --out-ark "$out/data/feats.JOB.ark" --out-scp "$out/data/feats.JOB.scp" \
        --out-num-frames "$out/data/utt2num_frames.JOB" "${raw_opts[@]}" "${fbank_arr[@]}"
    for n in $(seq "$_nj"); do cat "$out/data/feats.$n.scp"; done | sort > "$out/feats.scp.tmp"
    for f in "${num_files[@]}"; do
      for n in $(seq "$_nj"); do cat "$out/data/$f.$n"; done | sort > "$out/$f.tmp"
    done
    for f in feats.scp "${num_files[@]}"; do mv "$out/$f.tmp" "$out/$f"; done
    printf '%s\n' "$feats_type" > "$out/feats_type.tmp" && mv "$out/feats_type.tmp" "$out/feats_type"
    n_feats=$(wc -l < "$out/feats.scp")
    if [ "$n_feats" -lt "$n_utt" ]; then
      # compute-fbank logged each bad file and enforced its --max-bad-frac per job; the source
      # dir was valid, so missing features are the only thing fix_data_dir can remove here.
      log "WARNING: $out: $((n_utt - n_feats)) of $n_utt utterances have no features (bad audio, see $out/log/fbank.*.log)"
      "$utils/fix_data_dir.sh" --max-bad-frac 1 "$out"
    fi
    if is_ssl_set "$set"; then validate --no-text "$out"; else validate "$out"; fi
    mark_done "$out/.done" "$sig"
  done
  release_lock
fi

if in_stage 4; then
  take_lock "$lockdir/stage4" "stage 4"
  for set in "${sets[@]}"; do
    src=$dumpdir/raw/$set
    out=$dumpdir/fbank/$set
    length_opts=(--min-sec "$min_sec" --max-sec "$max_sec")
    if is_test_split "${set%_*}"; then length_opts=(--keep-all-lengths); fi
    if is_ssl_set "$set"; then length_opts+=(--no-text); fi
    sig="filter ${length_opts[*]} | $(dir_checksum "$src")"
    if is_done "$out/.done" "$sig"; then
      log "Stage 4: $out already done"; continue
    fi
    rm -rf "$out"
    mkdir -p "$out/log"
    "${cmd_arr[@]}" "$out/log/filter_data.log" osoup-filter-data --in "$src" --out "$out" "${length_opts[@]}"
    log "Stage 4: $out: kept $(wc -l < "$out/utt2spk") of $(wc -l < "$src/utt2spk") utterances (${length_opts[*]})"
    if is_ssl_set "$set"; then validate --no-text "$out"; else validate "$out"; fi
    mark_done "$out/.done" "$sig"
  done
  cmvn_dirs=()
  cmvn_feats=()
  for lang in "${langs[@]}"; do
    cmvn_dirs+=("$dumpdir/fbank/${train_split}_${lang}")
    cmvn_feats+=("$dumpdir/fbank/${train_split}_${lang}/feats.scp" "$dumpdir/fbank/${train_split}_${lang}/.done")
  done
  cmvn=$dumpdir/fbank/global_cmvn.json
  sig="cmvn | $(checksum "${cmvn_feats[@]}")"
  if is_done "$cmvn.done" "$sig"; then
    log "Stage 4: $cmvn already done"
  else
    log "Stage 4: global CMVN over ${cmvn_dirs[*]} -> $cmvn"
    rm -f "$cmvn.done"
    "${cmd_arr[@]}" "$dumpdir/fbank/log/compute_cmvn.log" osoup-compute-cmvn --out "$cmvn" "${cmvn_dirs[@]}"
    mark_done "$cmvn.done" "$sig"
  fi
  release_lock
fi

if in_stage 5; then
  take_lock "$lockdir/stage5" "stage 5"
  # One SentencePiece model per ASR language, one English model for every translation head.
  tok_jobs=()
  for lang in "${asr_arr[@]}"; do tok_jobs+=("asr:$lang"); done
  if [ ${#st_arr[@]} -gt 0 ]; then tok_jobs+=("st:en:$st_model_type:$st_vocab_size"); fi
  if [ -n "$units2" ]; then tok_jobs+=("st:en:${st_units_phase2}:_$units2"); fi
  for job in "${tok_jobs[@]}"; do
    IFS=: read -r kind lang st_type vocab suffix <<< "$job"
    tok=$tokendir/${kind}_${lang}$suffix
    texts=()
    if [ "$kind" = asr ]; then
      texts=("$datadir/${train_set}_${lang}/text")
      vocab=$(lookup "$asr_vocab_sizes" "$lang" "$asr_vocab_size")
      type_opts=(--model-type "$(lookup "$asr_model_types" "$lang" unigram)")
    else
      for l in "${st_arr[@]}"; do texts+=("$datadir/${train_set}_${l}/text.en"); done
      type_opts=(--model-type "$st_type")
    fi
    sig="spm $kind $lang $vocab ${type_opts[*]} | $(checksum "${texts[@]}")"
    if is_done "$tok/.done" "$sig"; then
      log "Stage 5: $tok already done"; continue
    fi
    log "Stage 5: SentencePiece ($kind, $lang, vocabulary <= $vocab ${type_opts[*]}) on ${texts[*]} -> $tok"
    rm -rf "$tok"
    mkdir -p "$tok/log"
    "${cmd_arr[@]}" "$tok/log/train_spm.log" osoup-train-spm --kind "$kind" --lang "$lang" --out "$tok" \
      --vocab-size "$vocab" "${type_opts[@]}" "${texts[@]}"
    mark_done "$tok/.done" "$sig"
  done

  # CTC-length filter of the training and validation sets (test sets are never filtered).
  filter_jobs=()
  for lang in "${asr_arr[@]}"; do filter_jobs+=("asr:$lang:$tokendir/asr_$lang"); done
  for lang in "${st_arr[@]}"; do
    filter_jobs+=("st:$lang:$tokendir/st_en")
    if [ -n "$units2" ]; then filter_jobs+=("st:$lang:$tokendir/st_en_$units2:_$units2"); fi
  done
  for job in "${filter_jobs[@]}"; do
    IFS=: read -r task lang tok suffix <<< "$job"
    for split in "$train_split" "$valid_set"; do
      src=$dumpdir/fbank/${split}_${lang}
      out=$dumpdir/$task$suffix/${split}_${lang}
      # Encoder frames: the Conv2d front-end on fbank, the backbone's CNN on raw waveforms.
      ctc_opts=(--subsampling "$subsampling")
      sig="ctc $task subsampling $subsampling | $(dir_checksum "$src" "$tok/spm.model")"
      if [ "$(feats_kind "$src")" = raw ]; then
        require_backbone_dir "stage 5 (CTC-length filter of $src)"
        ctc_opts=(--backbone-dir "$backbone_dir")
        sig="ctc $task backbone $(checksum "$backbone_dir/config.json") | $(dir_checksum "$src" "$tok/spm.model")"
      fi
      if is_done "$out/.done" "$sig"; then
        log "Stage 5: $out already done"; continue
      fi
      rm -rf "$out"
      mkdir -p "$out/log"
      "${cmd_arr[@]}" "$out/log/filter_ctc.log" osoup-filter-ctc --in "$src" --out "$out" --token-dir "$tok" \
        --task "$task" "${ctc_opts[@]}"
      log "Stage 5: $out: kept $(wc -l < "$out/utt2spk") of $(wc -l < "$src/utt2spk") utterances whose $task targets fit CTC"
      validate "$out"
      mark_done "$out/.done" "$sig"
    done
  done
  release_lock
fi

# Stages 6-10: one experiment per method and seed.
method=${method:-$recipe}
if [ -n "$method" ]; then
  methods=$method${levels:+:$levels}
fi
read -r -a method_arr <<< "$methods"
read -r -a grid_arr <<< "$static_grid"
# One entry per experiment: dir|method|levels|seed|asr langs|st langs|extra osoup-train words; labels: its column.
exps=()
labels=()
method_name() {  # method_name SPEC: the experiment name of "method[:levels]" (without tag and seed)
  local r=${1%%:*} lv=""
  if [[ $1 == *:* ]]; then lv=${1#*:}; fi
  echo "$r${lv:+_$(echo "$lv" | tr '>,' '-+')}"
}
add_exp() {  # add_exp NAME METHOD LEVELS ASR ST EXTRA LABEL: the experiment and its seed replicas
  local s tag
  for s in $(seq "$seeds"); do
    tag=${exp_tag:+${exp_tag}_}$1
    if [ "$s" -gt 1 ]; then tag=${tag}_seed$s; fi
    exps+=("exp/$tag|$2|$3|$s|$4|$5|$6")
    labels+=("$7")
  done
}
for m in "${method_arr[@]}"; do
  case $m in
    single)
      for lang in "${asr_arr[@]}"; do add_exp "single_asr_$lang" joint "" "$lang" "" "" single; done
      for lang in "${st_arr[@]}"; do add_exp "single_st_$lang" joint "" "" "$lang" "" single; done ;;
    static_sweep)
      if [ ${#grid_arr[@]} -eq 0 ]; then log "ERROR: --methods static_sweep needs --static-grid points"; exit 1; fi
      for point in "${grid_arr[@]}"; do
        add_exp "static_sweep_$(echo "$point" | tr -d ':' | tr ',' '-')" joint "" "$asr_langs" "$st_langs" \
          "--task-weights $point" static_sweep
      done ;;
    *)
      lv=""
      if [[ $m == *:* ]]; then lv=${m#*:}; fi
      add_exp "$(method_name "$m")" "${m%%:*}" "$lv" "$asr_langs" "$st_langs" "" "$m" ;;
  esac
done
lang_test_dirs() {  # lang_test_dirs "ASR LANGS" "ST LANGS": the test sets of these languages, in order
  local lang split ltd_langs
  read -r -a ltd_langs <<< "$(printf '%s\n' "$1" "$2" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')"
  for lang in "${ltd_langs[@]}"; do
    for split in "${test_arr[@]}"; do printf '%s ' "${split}_${lang}"; done
  done
}
read -r -a test_dirs <<< "$(lang_test_dirs "$asr_langs" "$st_langs")"
exp_lock() {  # exp_lock STAGE DIR: the lock file of one experiment's stage
  local tag=${2#exp/}
  echo "$lockdir/stage$1.${tag//\//-}"
}
ssl_train_sets=()  # SSL audio: every training set plus the SSL-only sets
for lang in "${langs[@]}"; do ssl_train_sets+=("${train_split}_${lang}"); done
ssl_train_sets+=("${ssl_arr[@]}")

train_signature() {  # train_signature METHOD LEVELS SEED ASR ST EXTRA INIT UNITS: the options and inputs of one training
  local f lang init="" bb="" inputs=("$train_config" "$dumpdir/fbank/global_cmvn.json.done") sfx=${8:+_$8}
  for lang in "${asr_arr[@]}"; do
    inputs+=("$tokendir/asr_$lang/.done" "$dumpdir/asr/${train_split}_$lang/.done" "$dumpdir/asr/${valid_set}_$lang/.done")
  done
  for lang in "${st_arr[@]}"; do
    inputs+=("$dumpdir/st$sfx/${train_split}_$lang/.done" "$dumpdir/st$sfx/${valid_set}_$lang/.done")
  done
  if [ ${#st_arr[@]} -gt 0 ]; then inputs+=("$tokendir/st_en$sfx/.done"); fi
  for f in "${ssl_train_sets[@]}"; do inputs+=("$dumpdir/fbank/$f/.done"); done
  for f in "${inputs[@]}"; do
    if [ ! -f "$f" ]; then log "ERROR: stage 6 needs $f: run stages 1-5 first${8:+ (with --st-units-phase2 $st_units_phase2)}"; return 1; fi
  done
  if [ -n "$7" ]; then  # the file's path, size and mtime: a new pre-training retrains
    if [ ! -f "$7" ]; then log "ERROR: --init-from $7: file not found"; return 1; fi
    init=" | init $7 $(inputs_checksum <<< "$7")"
  fi
  f=$(feats_kind "$dumpdir/fbank/${train_split}_${langs[0]}")
  if [ "$f" != "$backbone_feats" ]; then
    log "ERROR: stage 6: $dumpdir/fbank/${train_split}_${langs[0]} holds $f features but backbone $backbone reads $backbone_feats: rerun stages 3-5 with --feats-type $backbone_feats"
    return 1
  fi
  if [ "$backbone" != conformer ]; then  # a pretrained backbone: its files' names, sizes and mtimes
    require_backbone_dir "stage 6 (backbone $backbone)"
    bb=" | backbone $backbone $backbone_dir $(find "$backbone_dir" -maxdepth 1 -type f | sort | inputs_checksum)"
  fi
  printf 'train %s levels %s seed %s | asr %s | st %s | splits %s %s | ssl %s | opts %s%s| %s%s\n' "$1" "$2" "$3" \
    "$4" "$5" "$train_split" "$valid_set" "${ssl_arr[*]}" "$(printf '%q ' "${train_arr[@]}")" "${6:+$6 }" \
    "$(checksum "${inputs[@]}")" "$init$bb${8:+ | units $8}"
}

move_aside() {  # move_aside DIR: rename an outdated experiment to DIR.old<N> (the first free N)
  local n=1
  while [ -e "$1.old$n" ]; do n=$((n + 1)); done
  log "Stage 6: $1 was trained from other options or inputs; moving it to $1.old$n"
  mv "$1" "$1.old$n"
}

train_launcher() {  # the command that starts osoup-train: one process, or torchrun per GPU / CPU worker
  local per_node=$ngpu rdzv
  if [ "$ngpu" -eq 0 ]; then per_node=$nproc; fi
  if [ "$per_node" -le 1 ] && [ "$num_nodes" -le 1 ]; then echo osoup-train; return; fi
  if [ "$num_nodes" -gt 1 ]; then
    rdzv="--nnodes $num_nodes --rdzv-backend c10d --rdzv-endpoint $master_addr:$master_port --rdzv-id osoup-${1//\//-}"
  else
    rdzv=--standalone
  fi
  echo "python -m torch.distributed.run --nproc-per-node $per_node $rdzv -m osoup.bin.train"
}

train_one() {  # train_one DIR METHOD LEVELS SEED ASR ST EXTRA INIT UNITS PHASE: one signed, resumable osoup-train run
  local dir=$1 r=$2 lv=$3 s=$4 e_asr=$5 e_st=$6 extra=$7 init=$8 units=$9 phase=${10} lock sig sched
  local lv_opts=() ssl_opts=() dev_opts=() extra_opts=() tail_opts=() launcher=()
  lock=$(exp_lock 6 "$dir")
  # Every node of a multi-node run trains the same experiment: one lock per node.
  if [ "$num_nodes" -gt 1 ]; then lock=$lock.$(hostname); fi
  take_lock "$lock" "stage 6 of $dir"
  read -r -a extra_opts <<< "$extra"
  if [ "$phase" = 2 ]; then  # the second phase: every tensor of phase 1 except the fresh translation heads
    extra_opts+=(--init-heads true)
    if [ -n "$e_st" ]; then extra_opts+=(--init-new-heads st); fi
    tail_opts=("${phase2_arr[@]}")
  fi
  sig=$(train_signature "$r" "$lv" "$s" "$e_asr" "$e_st" "${extra_opts[*]}" "$init" "$units") || exit 1
  if [ "$phase" = 2 ]; then sig="$sig | phase 2 $(printf '%q ' "${tail_opts[@]}")"; fi
  # Phase 1 passes latest.pt on: one dev evaluation at its end is enough (not in the signature:
  # it does not change the model), unless a plateau schedule (osoup-train's default) reads every
  # epoch's dev score.
  if [ "$phase" = 1 ]; then
    sched=$(train_value scheduler)
    if [ "${sched:-plateau}" != plateau ] && [ "$(train_value pretrain-scheduler)" != plateau ]; then
      extra_opts+=(--dev-every 0)
    fi
  fi
  if is_done "$dir/.train.done" "$sig"; then
    log "Stage 6: $dir already trained"; release_lock; return 0
  fi
  # A killed run of the same signature resumes (--resume: from its last checkpoint, see
  # --save-every-steps for mid-epoch ones); anything else in the way is moved aside.
  # (Other nodes of a multi-node run may be writing .train.progress right now: it does not count.)
  if ! is_done "$dir/.train.progress" "$sig" && [ -d "$dir" ] \
      && [ -n "$(find "$dir" -mindepth 1 -maxdepth 1 ! -name '.train.progress*' -print -quit)" ]; then
    if [ "$num_nodes" -gt 1 ]; then
      log "ERROR: $dir was trained from other options or inputs; move it away before a multi-node run"; exit 1
    fi
    move_aside "$dir"
  fi
  log "Stage 6: training $dir (method $r${lv:+, levels $lv}, seed $s${extra:+, $extra}${init:+, from $init}${units:+, translation units $units})"
  mkdir -p "$dir"
  mark_done "$dir/.train.progress" "$sig"
  if [ -n "$lv" ]; then lv_opts=(--levels "$lv"); fi
  if [ ${#ssl_arr[@]} -gt 0 ]; then ssl_opts=(--ssl-sets "${ssl_train_sets[*]}"); fi
  if [ "$ngpu" -eq 0 ]; then dev_opts=(--device cpu); fi
  if [ -n "$init" ]; then extra_opts+=(--init-from "$init"); fi
  if [ -n "$units" ]; then extra_opts+=(--st-units "$units"); fi
  if [ "$backbone" != conformer ]; then extra_opts+=(--backbone-dir "$backbone_dir"); fi
  extra_opts+=("${thread_opts[@]}")
  read -r -a launcher <<< "$(train_launcher "$dir")"
  log "Stage 6: $num_nodes node(s): ${launcher[*]}"
  "${launcher[@]}" --config "$train_config" --exp-dir "$dir" --method "$r" "${lv_opts[@]}" --seed "$s" \
    --asr-langs "$e_asr" --st-langs "$e_st" --dump-dir "$dumpdir" --token-dir "$tokendir" \
    --train-split "$train_split" --dev-split "$valid_set" "${ssl_opts[@]}" "${dev_opts[@]}" "${extra_opts[@]}" \
    --resume "${train_arr[@]}" "${tail_opts[@]}"
  mark_done "$dir/.train.done" "$sig"
  rm -f "$dir/.train.progress"
  release_lock
}

train_exp() {  # train_exp ENTRY: one experiment of exps; with --st-units-phase2, phase 1 in DIR_phase1, then DIR
  local dir r lv s e_asr e_st extra units=""
  IFS='|' read -r dir r lv s e_asr e_st extra <<< "$1"
  if [ -z "$units2" ]; then
    train_one "$dir" "$r" "$lv" "$s" "$e_asr" "$e_st" "$extra" "$init_from" "" 0; return
  fi
  train_one "${dir}_phase1" "$r" "$lv" "$s" "$e_asr" "$e_st" "$extra" "$init_from" "" 1
  if [ -n "$e_st" ]; then units=$units2; fi
  train_one "$dir" "$r" "$lv" "$s" "$e_asr" "$e_st" "$extra" "${dir}_phase1/latest.pt" "$units" 2
}

if in_stage 6; then
  if [ "$train_jobs" -gt 1 ] && { [ "$num_nodes" -gt 1 ] || [ "$ngpu" -gt 1 ] || { [ "$ngpu" -eq 0 ] && [ "$nproc" -gt 1 ]; }; }; then
    log "ERROR: --train-jobs $train_jobs trains whole experiments side by side: use it with one process per experiment (--ngpu 0 or 1, --nproc 1, --num-nodes 1)"
    exit 1
  fi
  if [ -n "$units2" ]; then  # the second phase's inputs, before the first phase trains anything
    train_signature x "" 1 "" "" "" "" "$units2" > /dev/null || exit 1
  fi
  njobs=$train_jobs
  if [ "$njobs" -gt ${#exps[@]} ]; then njobs=${#exps[@]}; fi
  thread_opts=()
  if [ "$njobs" -le 1 ]; then
    for e in "${exps[@]}"; do train_exp "$e"; done
  else
    # Several experiments at once (--train-jobs), each in the background with its share of the
    # cores and its output in exp/log/; after a failure no further one starts, Ctrl-C stops them all.
    cores=$(getconf _NPROCESSORS_ONLN 2> /dev/null || echo 1)
    thread_opts=(--threads "$(( cores / njobs > 1 ? cores / njobs : 1 ))")
    mkdir -p exp/log
    declare -A job_dir=() job_log=()
    failed=()
    stop_jobs() {
      local p
      for p in "${!job_dir[@]}"; do pkill -TERM -P "$p" 2> /dev/null || true; kill -TERM "$p" 2> /dev/null || true; done
    }
    trap 'stop_jobs' EXIT
    trap 'log "Stage 6: interrupted; stopping the trainings"; exit 130' INT TERM
    progress_sec=${OSOUP_PROGRESS_SEC:-60}
    show_progress() {  # one line per running training: its experiment dir and latest progress line
      local pid
      for pid in "${!job_dir[@]}"; do  # the last "training DIR" line, and the progress after it
        log "Stage 6: $(awk -v dir="${job_dir[$pid]}" '
          match($0, /Stage 6: training exp\/[^ ]*/) { dir = substr($0, RSTART + 18, RLENGTH - 18); p = "" }
          match($0, /INFO: epoch [0-9]+ step [0-9]+\/[0-9]+ /) { p = substr($0, RSTART + 6, RLENGTH - 7)
            if (match($0, /ETA [^|]*$/)) p = p ", " substr($0, RSTART) }
          END { print dir ": " (p == "" ? "starting" : p) }' "${job_log[$pid]}")"
      done
    }
    reap() {  # wait for one training job to end, showing progress every $progress_sec seconds
      local pid="" rc=0 p next=$((SECONDS + progress_sec))
      while [ -z "$pid" ]; do
        for p in "${!job_dir[@]}"; do
          if ! pid_running "$p"; then pid=$p; break; fi
        done
        if [ -z "$pid" ]; then
          if [ "$SECONDS" -ge "$next" ]; then show_progress; next=$((SECONDS + progress_sec)); fi
          sleep 1
        fi
      done
      wait "$pid" || rc=$?
      if [ "$rc" -ne 0 ]; then
        log "ERROR: stage 6: training ${job_dir[$pid]} failed (exit status $rc); the end of its log ${job_log[$pid]}:"
        tail -n 15 "${job_log[$pid]}" >&2
        failed+=("${job_dir[$pid]}")
      else
        log "Stage 6: ${job_dir[$pid]} done"
      fi
      unset "job_dir[$pid]" "job_log[$pid]"
    }
    for e in "${exps[@]}"; do
      while [ ${#job_dir[@]} -ge "$njobs" ]; do reap; done
      if [ ${#failed[@]} -gt 0 ]; then break; fi
      dir=${e%%|*}
      lg=${dir#exp/}
      lg=exp/log/train.${lg//\//-}.log
      log "Stage 6: training $dir in the background (${thread_opts[*]}); its output: $lg"
      ( trap - EXIT INT TERM; train_exp "$e" ) >> "$lg" 2>&1 &
      job_dir[$!]=$dir
      job_log[$!]=$lg
    done
    while [ ${#job_dir[@]} -gt 0 ]; do reap; done
    trap - EXIT INT TERM
    if [ ${#failed[@]} -gt 0 ]; then
      log "ERROR: stage 6: ${#failed[@]} training(s) failed: ${failed[*]} (experiments not started yet were skipped)"; exit 1
    fi
  fi
fi

if in_stage 7; then
  dtag=$search
  if [ "$search" = beam ]; then dtag=beam$beam; fi
  for e in "${exps[@]}"; do
    IFS='|' read -r dir _ _ _ e_asr e_st _ <<< "$e"
    own_sets=$(lang_test_dirs "$e_asr" "$e_st")  # a single-objective model: its own language only
    take_lock "$(exp_lock 7 "$dir")" "stage 7 of $dir"
    log "Stage 7: decoding ${own_sets% } with $dir/$decode_model ($search)"
    osoup-decode --exp-dir "$dir" --model "$decode_model" --data-dir "$dumpdir/fbank" \
      --sets "${own_sets% }" --search "$search" --beam "$beam" --tag "$dtag" "${decode_arr[@]}"
    release_lock
  done
fi

if in_stage 8; then
  for i in "${!exps[@]}"; do
    IFS='|' read -r dir _ _ _ _ <<< "${exps[$i]}"
    take_lock "$(exp_lock 8 "$dir")" "stage 8 of $dir"
    log "Stage 8: scoring $dir"
    # results.json's seed is the one training used (config.yaml), also when --train-opts sets --seed
    osoup-score --exp "$dir" --data "$dumpdir/fbank" --label "${labels[$i]}"
    log "Stage 8: $dir/RESULTS.md"
    release_lock
  done
fi

if in_stage 9; then
  take_lock "$lockdir/stage9" "stage 9"
  dirs=()
  for e in "${exps[@]}"; do dirs+=("${e%%|*}"); done
  out=exp/RESULTS_compare${exp_tag:+_$exp_tag}
  cmp_opts=()
  for l in "${labels[@]}"; do
    if [ "$l" = static_sweep ]; then cmp_opts=(--sweep-labels static_sweep); break; fi
  done
  if [ "$resources" = true ]; then cmp_opts+=(--resources --resources-data-dir "$dumpdir/fbank"); fi
  log "Stage 9: comparing ${#dirs[@]} experiment(s) -> $out"
  osoup-results --exps "${dirs[@]}" --labels "${labels[@]}" --out "$out" --split "${test_arr[0]}" "${cmp_opts[@]}"
  cat "$out/RESULTS.md"
  release_lock
fi

if in_stage 10; then
  # The first method's experiment (first seed). Its suggested_levels.txt starts with the
  # recommended hierarchy: ./run.sh --method vm --levels "$(head -1 exp/<tag>/conflict/suggested_levels.txt)"
  IFS='|' read -r dir _ <<< "${exps[0]}"
  take_lock "$(exp_lock 10 "$dir")" "stage 10 of $dir"
  out=$dir/conflict
  sig="conflict $decode_model $conflict_batches $conflict_opts | $(checksum "$dir/$decode_model" "$dir/objectives.json")"
  if is_done "$out/.done" "$sig"; then
    log "Stage 10: $out already done"
  else
    log "Stage 10: gradient conflict of $dir/$decode_model ($conflict_batches batches per objective) -> $out"
    rm -f "$out/.done"
    osoup-conflict --exp-dir "$dir" --model "$decode_model" --dump-dir "$dumpdir" --token-dir "$tokendir" \
      --num-batches "$conflict_batches" --out "$out" --suggest-levels "${conflict_arr[@]}"
    mark_done "$out/.done" "$sig"
    log "Stage 10: $out/conflict.md; suggested levels, recommended first: $(paste -sd' ' "$out/suggested_levels.txt")"
  fi
  release_lock
fi

if in_stage 11; then
  # Weight averages of the first-seed models of --soup-methods (trained from one initialisation,
  # e.g. --init-from exp/two_stage/pretrain.pt), decoded and scored like stages 7-8.
  read -r -a soup_arr <<< "$soup_methods"
  if [ ${#soup_arr[@]} -eq 0 ]; then
    log "Stage 11: skipped (no --soup-methods)"
  else
    dirs=()
    for m in "${soup_arr[@]}"; do
      case $m in single|static_sweep) log "ERROR: --soup-methods: $m is several models, not one"; exit 1 ;; esac
      dir=exp/${exp_tag:+${exp_tag}_}$(method_name "$m")
      if [ ! -f "$dir/$decode_model" ]; then log "ERROR: stage 11 needs $dir/$decode_model: train $m first (stage 6)"; exit 1; fi
      dirs+=("$dir")
    done
    if [ ${#dirs[@]} -lt 2 ]; then log "ERROR: --soup-methods: give two or more methods to average"; exit 1; fi
    out=exp/soup${exp_tag:+_$exp_tag}
    take_lock "$lockdir/stage11${exp_tag:+.$exp_tag}" "stage 11"
    dtag=$search
    if [ "$search" = beam ]; then dtag=beam$beam; fi
    model_files=()
    for d in "${dirs[@]}"; do model_files+=("$d/$decode_model"); done
    sig="soup ${soup_arr[*]} | $decode_model $search $beam $soup_grid_step | ${test_dirs[*]} | $(printf '%q ' "${decode_arr[@]}")| $(checksum "${model_files[@]}")"
    if is_done "$out/.done" "$sig"; then
      log "Stage 11: $out already done"
    else
      log "Stage 11: model soups of ${dirs[*]} -> $out"
      rm -f "$out/.done"
      osoup-soup --exps "${dirs[@]}" --labels "${soup_arr[@]}" --weights grid --grid-step "$soup_grid_step" \
        --model "$decode_model" --data-dir "$dumpdir/fbank" --sets "${test_dirs[*]}" --split "${test_arr[0]}" \
        --search "$search" --beam "$beam" --tag "$dtag" --out "$out" "${decode_arr[@]}"
      mark_done "$out/.done" "$sig"
      log "Stage 11: $out/RESULTS.md"
    fi
    release_lock
  fi
fi

log "Finished stages $stage to $stop_stage (those that exist)."
