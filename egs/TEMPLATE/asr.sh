#!/usr/bin/env bash
# The shared stage script of the osoup recipes. Run it from a recipe directory (egs/<corpus>/),
# which provides path.sh, cmd.sh (optional), db.sh, local/data.sh and, if it generates its
# corpus, local/make_corpus.sh. A recipe's run.sh names its languages and calls this with "$@".
#
#   ../TEMPLATE/asr.sh --asr-langs "en fr" --st-langs "fr" [options]
#
# Stages (docs/design.md):
#   0  corpus generation: local/make_corpus.sh --nj NJ <local_corpus_opts> (only if the recipe has one)
#   1  data prep: local/data.sh <local_data_opts>          -> data/<split>_<lang>/
#   2  speed perturbation (skipped when speed_perturb_factors is empty) -> data/<train>_sp_<lang>/
#   3  fbank, nj parallel jobs                              -> dump/raw/<set>/
#   4  length/empty-text filter and global CMVN             -> dump/fbank/<set>/, dump/fbank/global_cmvn.json
#   5  SentencePiece models and CTC-length filter           -> data/token/{asr_<lang>,st_en}/, dump/{asr,st}/<set>/
#   6  training, one experiment per method and seed          -> exp/<method>[_seed<N>]/
#   7  CTC decoding of the test sets with every head         -> exp/<tag>/decode_<search>/<set>/hyp.{asr,st}
#   8  scoring (WER, CER for zh, BLEU)                       -> exp/<tag>/RESULTS.md, results.json
#   9  comparison of all methods (tables, radar, trade-off)  -> exp/RESULTS_compare/
#   10 gradient-conflict analysis of the first method       -> exp/<tag>/conflict/ (suggested_levels.txt)
# Every step writes a .done marker holding a signature of its options and inputs; a rerun skips
# finished steps, redoes killed or outdated ones. Options: any variable below as --foo-bar VALUE.
set -euo pipefail

log() { printf '%s (%s:%s) %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "${BASH_SOURCE[1]##*/}" "${BASH_LINENO[0]}" "$*" >&2; }
trap 'log "ERROR: a command failed (exit status $?) near line $LINENO"' ERR

# General
stage=0                   # first stage to run
stop_stage=10000          # last stage to run
nj=4                      # parallel jobs (audio probing, speed perturbation, fbank)
cmd=run.pl                # job runner (cmd.sh may set it; utils/run.pl runs jobs locally)

# Data (stages 0-2)
local_corpus_opts=""      # extra options of local/make_corpus.sh (shell words, may be quoted)
local_data_opts=""        # the options of local/data.sh (shell words, may be quoted)
asr_langs=""              # languages with an ASR objective, e.g. "en fr de es ca"
st_langs=""               # languages translated into English, e.g. "fr de es ca"
ssl_sets=""               # extra data dirs used only as SSL audio, e.g. "ssl_train-clean-360_en"
train_set=train           # training split: data/<split>_<lang>
valid_set=dev             # validation split (CTC-filtered like train)
test_sets="test"          # test splits (never length- or CTC-filtered)
speed_perturb_factors=""  # e.g. "0.9 1.0 1.1"; empty: stage 2 is skipped

# Features (stages 3-4)
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

# Training, decoding, scoring (stages 6-9)
recipe=""                 # one method: vs | vc | vm | joint | two_stage | two_stage_static | peft
levels=""                 # vm hierarchy for --recipe vm, e.g. "asr>st>ssl" (UAS) or "st>asr>ssl" (USA)
methods="vm:asr>st>ssl"   # several methods (used when --recipe is empty): "recipe[:levels] ..."
train_config=conf/train.yaml  # osoup-train YAML config (model size, lr, epochs, penalties ...)
train_opts=""             # extra osoup-train options, e.g. "--ssl bestrq --gamma 0.05"
seeds=1                   # train each method with seeds 1..N (N>1: mean +- std in the comparison)
ngpu=1                    # GPUs per node for training; >1: torchrun, one process per GPU (NCCL); 0: CPU
nproc=1                   # with --ngpu 0: CPU processes per node (>1: torchrun with gloo)
num_nodes=1               # nodes; >1: run stage 6 on every node with the same --master-addr (docs/distributed.md)
master_addr=localhost     # rendezvous host:port of a multi-node run (any one of the nodes)
master_port=29500
exp_tag=""                # experiment name prefix (default: none)
search=greedy             # CTC search: greedy | beam
beam=10                   # beam size for --search beam
decode_model=best.pt      # checkpoint to decode: best.pt | latest.pt | avgN.pt
conflict_batches=20       # stage 10: batches per objective for the gradient-conflict analysis
conflict_opts=""          # stage 10: extra osoup-conflict options, e.g. "--split dev --threshold 0.05"
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

read -r -a asr_arr <<< "$asr_langs"
read -r -a st_arr <<< "$st_langs"
read -r -a ssl_arr <<< "$ssl_sets"
read -r -a test_arr <<< "$test_sets"
# Every language with data, in order of first mention.
read -r -a langs <<< "$(printf '%s\n' "${asr_arr[@]}" "${st_arr[@]}" | awk 'NF && !seen[$0]++' | tr '\n' ' ')"
if [ ${#langs[@]} -eq 0 ]; then
  log "ERROR: no languages: set --asr-langs and/or --st-langs"; exit 1
fi
train_split=$train_set
if [ -n "$speed_perturb_factors" ]; then
  train_split=${train_set}_sp
fi

in_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }
# A marker holds the signature of the options and inputs it was made from.
is_done() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
mark_done() { printf '%s\n' "$2" > "$1.tmp" && mv "$1.tmp" "$1"; }
checksum() { md5sum "$@" | md5sum | cut -c1-32; }
dir_checksum() {  # dir_checksum DIR [FILE...]: the data dir's utterance files and .done, plus FILEs
  local f files=("${@:2}")
  for f in wav.scp text text.en utt2spk utt2dur feats.scp utt2num_frames .done; do
    if [ -f "$1/$f" ]; then files+=("$1/$f"); fi
  done
  checksum "${files[@]}"
}
lookup() {  # lookup "zh:char ca:bpe" LANG DEFAULT
  local kv
  for kv in $1; do
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
    log "Stage 0: generating the corpus: local/make_corpus.sh --nj $nj $local_corpus_opts"
    eval "local/make_corpus.sh --nj $nj $local_corpus_opts"
  else
    log "Stage 0: nothing to do (this recipe reads an existing corpus; see db.sh)"
  fi
fi

if in_stage 1; then
  marker=$datadir/.stage1.done
  # db.sh and the corpus variables are part of the signature: pointing at another corpus redoes it.
  sig="data.sh $local_data_opts | corpus $local_corpus_opts | $(checksum db.sh local/data.sh) ${COMMONVOICE:-} ${COVOST2:-} ${LIBRISPEECH:-} ${AISHELL:-}"
  if is_done "$marker" "$sig"; then
    log "Stage 1: data dirs already prepared ($marker)"
  else
    log "Stage 1: data preparation: local/data.sh $local_data_opts"
    rm -f "$marker"
    eval "local/data.sh $local_data_opts"
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
    mark_done "$marker" "$sig"
  fi
fi

if in_stage 2; then
  if [ -z "$speed_perturb_factors" ]; then
    log "Stage 2: skipped (no speed_perturb_factors)"
  else
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
      ${cmd} "$out/log/speed_perturb.log" \
        osoup-speed-perturb --in "$src" --out "$out" --factors "$speed_perturb_factors" --nj "$nj"
      validate "$out"
      mark_done "$out/.done" "$sig"
    done
  fi
fi

if in_stage 3; then
  # A killed stage 3 resumes where it stopped: each fbank job leaves its own marker
  # (data/.done.JOB) once its ark, scp and utt2num_frames are complete, so a rerun recomputes
  # only unfinished jobs (arks are written under a temporary name and renamed). The set's
  # .progress holds the signature the jobs belong to; another signature starts the set afresh.
  # shellcheck disable=SC2016  # expanded by the job's own bash
  fbank_job='m=$1; shift; if [ -f "$m" ]; then echo "already done ($m)"; exit 0; fi; "$@" && touch "$m"'
  for set in "${sets[@]}"; do
    src=$datadir/$set
    out=$dumpdir/raw/$set
    n_utt=$(wc -l < "$src/wav.scp")
    _nj=$(( nj < n_utt ? nj : n_utt ))
    sig="fbank $fbank_opts | $(dir_checksum "$src")"
    if is_done "$out/.done" "$sig"; then
      log "Stage 3: $out already done"; continue
    fi
    if is_done "$out/.progress" "$sig | nj $_nj"; then
      n_fin=$(find "$out/data" -maxdepth 1 -name '.done.*' | wc -l)
      log "Stage 3: resuming $out: $n_fin of $_nj fbank jobs already finished"
      # temporary arks of killed jobs, and outputs of a merge that did not finish
      find "$out/data" -maxdepth 1 -name '.feats.*.tmp' -delete
      rm -rf "$out/.done" "$out/feats.scp" "$out/utt2num_frames" "$out/.backup"
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
    log "Stage 3: fbank of $src ($n_utt utterances, $_nj jobs) -> $out"
    # shellcheck disable=SC2086  # fbank_opts holds several options
    ${cmd} JOB=1:"$_nj" "$out/log/fbank.JOB.log" bash -c "$fbank_job" fbank-job "$out/data/.done.JOB" \
      osoup-compute-fbank --wav-scp "$out/split${_nj}/wav.JOB.scp" \
        --out-ark "$out/data/feats.JOB.ark" --out-scp "$out/data/feats.JOB.scp" \
        --out-num-frames "$out/data/utt2num_frames.JOB" ${fbank_opts}
    for n in $(seq "$_nj"); do cat "$out/data/feats.$n.scp"; done | sort > "$out/feats.scp.tmp"
    for n in $(seq "$_nj"); do cat "$out/data/utt2num_frames.$n"; done | sort > "$out/utt2num_frames.tmp"
    mv "$out/feats.scp.tmp" "$out/feats.scp"
    mv "$out/utt2num_frames.tmp" "$out/utt2num_frames"
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
fi

if in_stage 4; then
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
    ${cmd} "$out/log/filter_data.log" osoup-filter-data --in "$src" --out "$out" "${length_opts[@]}"
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
    ${cmd} "$dumpdir/fbank/log/compute_cmvn.log" osoup-compute-cmvn --out "$cmvn" "${cmvn_dirs[@]}"
    mark_done "$cmvn.done" "$sig"
  fi
fi

if in_stage 5; then
  # One SentencePiece model per ASR language, one English model for every translation head.
  tok_jobs=()
  for lang in "${asr_arr[@]}"; do tok_jobs+=("asr:$lang"); done
  if [ ${#st_arr[@]} -gt 0 ]; then tok_jobs+=("st:en"); fi
  for job in "${tok_jobs[@]}"; do
    kind=${job%%:*}
    lang=${job#*:}
    tok=$tokendir/${kind}_${lang}
    texts=()
    if [ "$kind" = asr ]; then
      texts=("$datadir/${train_set}_${lang}/text")
      vocab=$(lookup "$asr_vocab_sizes" "$lang" "$asr_vocab_size")
      type_opts=(--model-type "$(lookup "$asr_model_types" "$lang" unigram)")
    else
      for l in "${st_arr[@]}"; do texts+=("$datadir/${train_set}_${l}/text.en"); done
      vocab=$st_vocab_size
      type_opts=(--model-type "$st_model_type")
    fi
    sig="spm $kind $lang $vocab ${type_opts[*]} | $(checksum "${texts[@]}")"
    if is_done "$tok/.done" "$sig"; then
      log "Stage 5: $tok already done"; continue
    fi
    log "Stage 5: SentencePiece ($kind, $lang, vocabulary <= $vocab ${type_opts[*]}) on ${texts[*]} -> $tok"
    rm -rf "$tok"
    mkdir -p "$tok/log"
    ${cmd} "$tok/log/train_spm.log" osoup-train-spm --kind "$kind" --lang "$lang" --out "$tok" \
      --vocab-size "$vocab" "${type_opts[@]}" "${texts[@]}"
    mark_done "$tok/.done" "$sig"
  done

  # CTC-length filter of the training and validation sets (test sets are never filtered).
  filter_jobs=()
  for lang in "${asr_arr[@]}"; do filter_jobs+=("asr:$lang:$tokendir/asr_$lang"); done
  for lang in "${st_arr[@]}"; do filter_jobs+=("st:$lang:$tokendir/st_en"); done
  for job in "${filter_jobs[@]}"; do
    IFS=: read -r task lang tok <<< "$job"
    for split in "$train_split" "$valid_set"; do
      src=$dumpdir/fbank/${split}_${lang}
      out=$dumpdir/$task/${split}_${lang}
      sig="ctc $task subsampling $subsampling | $(dir_checksum "$src" "$tok/spm.model")"
      if is_done "$out/.done" "$sig"; then
        log "Stage 5: $out already done"; continue
      fi
      rm -rf "$out"
      mkdir -p "$out/log"
      ${cmd} "$out/log/filter_ctc.log" osoup-filter-ctc --in "$src" --out "$out" --token-dir "$tok" \
        --task "$task" --subsampling "$subsampling"
      log "Stage 5: $out: kept $(wc -l < "$out/utt2spk") of $(wc -l < "$src/utt2spk") utterances whose $task targets fit CTC"
      validate "$out"
      mark_done "$out/.done" "$sig"
    done
  done
fi

# Stages 6-9: one experiment per method and seed.
if [ -n "$recipe" ]; then
  methods=$recipe${levels:+:$levels}
fi
read -r -a method_arr <<< "$methods"
exps=()
labels=()
for m in "${method_arr[@]}"; do
  r=${m%%:*}
  lv=""
  if [[ $m == *:* ]]; then lv=${m#*:}; fi
  name=$r${lv:+_$(echo "$lv" | tr '>,' '-+')}
  for s in $(seq "$seeds"); do
    tag=${exp_tag:+${exp_tag}_}$name
    if [ "$seeds" -gt 1 ]; then tag=${tag}_seed$s; fi
    exps+=("exp/$tag|$r|$lv|$s")
    labels+=("$r${lv:+:$lv}")
  done
done
test_dirs=()
for lang in "${langs[@]}"; do
  for split in "${test_arr[@]}"; do test_dirs+=("${split}_${lang}"); done
done

if in_stage 6; then
  for e in "${exps[@]}"; do
    IFS='|' read -r dir r lv s <<< "$e"
    if [ -f "$dir/.train.done" ]; then
      log "Stage 6: $dir already trained"; continue
    fi
    log "Stage 6: training $dir (recipe $r${lv:+, levels $lv}, seed $s)"
    mkdir -p "$dir"
    lv_opts=()
    if [ -n "$lv" ]; then lv_opts=(--levels "$lv"); fi
    ssl_opts=()
    if [ ${#ssl_arr[@]} -gt 0 ]; then  # SSL audio: every training set plus the SSL-only sets
      ssl_list=()
      for lang in "${langs[@]}"; do ssl_list+=("${train_split}_${lang}"); done
      ssl_opts=(--ssl-sets "${ssl_list[*]} ${ssl_arr[*]}")
    fi
    # One process, or torchrun with one process per GPU (or per --nproc CPU worker) on each node.
    dev_opts=()
    per_node=$ngpu
    if [ "$ngpu" -eq 0 ]; then dev_opts=(--device cpu); per_node=$nproc; fi
    launcher=(osoup-train)
    if [ "$per_node" -gt 1 ] || [ "$num_nodes" -gt 1 ]; then
      if [ "$num_nodes" -gt 1 ]; then
        rdzv=(--nnodes "$num_nodes" --rdzv-backend c10d --rdzv-endpoint "$master_addr:$master_port" --rdzv-id "osoup-${dir//\//-}")
      else
        rdzv=(--standalone)
      fi
      launcher=(python -m torch.distributed.run --nproc-per-node "$per_node" "${rdzv[@]}" -m osoup.bin.train)
      log "Stage 6: $num_nodes node(s) x $per_node process(es): ${launcher[*]}"
    fi
    # --resume: a killed run continues from its last checkpoint (--save-every-steps in the config
    # for mid-epoch ones).
    # shellcheck disable=SC2086  # train_opts holds several options
    "${launcher[@]}" --config "$train_config" --exp-dir "$dir" --recipe "$r" "${lv_opts[@]}" --seed "$s" \
      --asr-langs "$asr_langs" --st-langs "$st_langs" --dump-dir "$dumpdir" --token-dir "$tokendir" \
      --train-split "$train_split" --dev-split "$valid_set" "${ssl_opts[@]}" "${dev_opts[@]}" --resume ${train_opts}
    touch "$dir/.train.done"
  done
fi

if in_stage 7; then
  for e in "${exps[@]}"; do
    IFS='|' read -r dir _ _ _ <<< "$e"
    dtag=$search
    if [ "$search" = beam ]; then dtag=beam$beam; fi
    log "Stage 7: decoding ${test_dirs[*]} with $dir/$decode_model ($search)"
    osoup-decode --exp-dir "$dir" --model "$decode_model" --data-dir "$dumpdir/fbank" \
      --sets "${test_dirs[*]}" --search "$search" --beam "$beam" --tag "$dtag"
  done
fi

if in_stage 8; then
  for i in "${!exps[@]}"; do
    IFS='|' read -r dir _ _ s <<< "${exps[$i]}"
    log "Stage 8: scoring $dir"
    osoup-score --exp "$dir" --data "$dumpdir/fbank" --label "${labels[$i]}" --seed "$s"
    log "Stage 8: $dir/RESULTS.md"
  done
fi

if in_stage 9; then
  dirs=()
  for e in "${exps[@]}"; do dirs+=("${e%%|*}"); done
  out=exp/RESULTS_compare${exp_tag:+_$exp_tag}
  log "Stage 9: comparing ${#dirs[@]} experiment(s) -> $out"
  osoup-results --exps "${dirs[@]}" --labels "${labels[@]}" --out "$out" --split "${test_arr[0]}"
  cat "$out/RESULTS.md"
fi

if in_stage 10; then
  # The first method's experiment (first seed). Its suggested_levels.txt starts with the
  # recommended hierarchy: ./run.sh --recipe vm --levels "$(head -1 exp/<tag>/conflict/suggested_levels.txt)"
  IFS='|' read -r dir _ _ _ <<< "${exps[0]}"
  out=$dir/conflict
  sig="conflict $decode_model $conflict_batches $conflict_opts | $(checksum "$dir/$decode_model" "$dir/objectives.json")"
  if is_done "$out/.done" "$sig"; then
    log "Stage 10: $out already done"
  else
    log "Stage 10: gradient conflict of $dir/$decode_model ($conflict_batches batches per objective) -> $out"
    rm -f "$out/.done"
    # shellcheck disable=SC2086  # conflict_opts holds several options
    osoup-conflict --exp-dir "$dir" --model "$decode_model" --dump-dir "$dumpdir" --token-dir "$tokendir" \
      --num-batches "$conflict_batches" --out "$out" --suggest-levels ${conflict_opts}
    mark_done "$out/.done" "$sig"
    log "Stage 10: $out/conflict.md; suggested levels, recommended first: $(paste -sd' ' "$out/suggested_levels.txt")"
  fi
fi

log "Finished stages $stage to $stop_stage (those that exist)."
