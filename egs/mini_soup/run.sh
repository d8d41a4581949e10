#!/usr/bin/env bash
# Mini recipe: a synthetic corpus (stage 0, espeak-ng speech from our own grammar) run through
# the CoVoST 2 pipeline, small enough for a 2-core CPU. Default: ASR en es fr, S2TT es fr -> en,
# BEST-RQ.
#   ./run.sh [--utts-per-lang N] [--seed S] [--tiny true] [--asr-langs L] [--st-langs L]
#            [--max-speech-sec S] [--snr "LOW HIGH"] [--backbone conformer|tiny_w2v2]
#            [--st-units-phase2 TYPE:SIZE|none] [any option of ../TEMPLATE/asr.sh]
# Stage 6 trains two experiments at once (--train-jobs 2, one thread each: 1.35x the throughput
# of one at a time with two threads on a 2-core CPU).
# --backbone tiny_w2v2 runs the pretrained-backbone pipeline of paper Table 8 in miniature: a small
# random wav2vec 2.0 (osoup-make-tiny-w2v2, written once to exp/tiny_w2v2) fine-tuned on raw
# waveforms with conf/train_tiny_w2v2.yaml (egs/covost2/conf/train_xlsr.yaml is the real one).
# The generator speaks en fr de es ca zh; e.g. --asr-langs "en fr de es ca zh" --st-langs
# "fr de es ca" gives the paper's CoVoST set-up plus Chinese (needs far more steps, see README).
# README.md: the single and static_sweep baselines, and vm UAS/USA fine-tuned from one two_stage
# pre-training (--init-from exp/two_stage/pretrain.pt) and averaged by stage 11 (--soup-methods).
set -euo pipefail

utts_per_lang=""    # synthetic utterances per language, all splits (default: 1000; 20 if tiny)
seed=1              # corpus seed
tiny=false          # true: a small 6-language corpus and small vocabularies, for tests
asr_langs=""        # default: "en es fr" ("en fr de es ca zh" if tiny)
st_langs=""         # default: "es fr" ("fr de es ca" if tiny)
max_speech_sec=""   # longest planned sentence, estimated seconds of speech (default: 2.8; 4.6 if tiny)
snr=""              # noise SNR range in dB (default: "15 35"; "10 30" if tiny)
backbone=conformer  # conformer: from scratch on fbank; tiny_w2v2: a tiny wav2vec 2.0 on raw waveforms
# The methods compared by default (stages 6-9); --method X [--levels L] trains just one, and
# "vm:st>asr>ssl" (USA) or the baselines (single static_sweep two_stage) can be added.
methods="joint vs vc vm:asr>st>ssl"
# Units: characters first (with a few hundred steps from scratch, CTC over characters leaves its
# all-blank plateau far sooner than over SentencePiece pieces), then a second phase whose fresh
# translation heads predict English unigram pieces, which word-level BLEU rewards (README.md).
# Each method: 480 steps on characters (conf/train.yaml), then 240 on pieces; none: one phase.
st_units_phase2=default  # unigram:300 (unigram:60 if tiny)

# This recipe's options may come anywhere; everything else is for asr.sh.
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --utts-per-lang|--seed|--tiny|--max-speech-sec|--snr|--asr-langs|--st-langs|--methods|--backbone|--st-units-phase2) opt=${1#--}; printf -v "${opt//-/_}" '%s' "${2:?$1 needs a value}"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
# The wav2vec 2.0 set-up keeps one phase (its config's 720 steps on characters).
if [ "$backbone" = tiny_w2v2 ] && [ "$st_units_phase2" = default ]; then st_units_phase2=none; fi
tiny_opts=()
if [ "$tiny" = true ]; then
  utts_per_lang=${utts_per_lang:-20}
  asr_langs=${asr_langs:-"en fr de es ca zh"}
  st_langs=${st_langs:-"fr de es ca"}
  max_speech_sec=${max_speech_sec:-4.6}
  snr=${snr:-"10 30"}
  if [ "$st_units_phase2" = default ]; then st_units_phase2=unigram:60; fi
  tiny_opts=(--nj 2 --asr-vocab-size 40 --asr-vocab-sizes "zh:100" --st-vocab-size 60)
fi
utts_per_lang=${utts_per_lang:-1000}
asr_langs=${asr_langs:-"en es fr"}
st_langs=${st_langs:-"es fr"}
max_speech_sec=${max_speech_sec:-2.8}
snr=${snr:-"15 35"}
case $backbone in
  conformer) train_config=conf/train.yaml ;;
  tiny_w2v2)
    train_config=conf/train_tiny_w2v2.yaml
    if [ ! -f exp/tiny_w2v2/config.json ]; then  # written whole (renamed into place): present = complete
      # shellcheck disable=SC1091
      (
        . ./path.sh
        make_tiny=(osoup-make-tiny-w2v2)  # an install older than the command: the module itself
        if ! command -v osoup-make-tiny-w2v2 > /dev/null; then make_tiny=(python -m osoup.bin.make_tiny_w2v2); fi
        "${make_tiny[@]}" exp/tiny_w2v2 --hidden 64 --layers 2 --seed 0
      )
    fi ;;
  *) echo "ERROR: --backbone $backbone: choose conformer or tiny_w2v2" >&2; exit 1 ;;
esac

if [ "$st_units_phase2" = default ]; then st_units_phase2=unigram:300; fi
phase_opts=()
if [ "$st_units_phase2" != none ]; then
  # Phase 2's heads learn at 4x phase 1's rate (chosen on dev: egs/mini_soup/README.md, "Phase 2's levers").
  phase_opts=(--st-units-phase2 "$st_units_phase2" --phase2-train-opts "--epochs 4 --step-size 3 --lr-heads 1.2e-2")
fi

# asr.sh passes the languages to local/make_corpus.sh and local/data.sh itself.
../TEMPLATE/asr.sh \
  --asr-langs "$asr_langs" --st-langs "$st_langs" \
  --local-corpus-opts "--utts-per-lang $utts_per_lang --seed $seed --max-speech-sec $max_speech_sec --snr ${snr// /,}" \
  --methods "$methods" --train-config "$train_config" \
  --asr-model-types "$(for l in $asr_langs; do printf '%s:char ' "$l"; done)" --st-model-type char \
  --train-jobs 2 "${phase_opts[@]}" "${tiny_opts[@]}" "${args[@]}"
