#!/usr/bin/env bash
# Mini recipe: a synthetic 6-language corpus (stage 0) run through the CoVoST 2 pipeline, small
# enough for a CPU. ASR: en fr de es ca zh; S2TT (into English): fr de es ca.
#   ./run.sh [--utts-per-lang N] [--seed S] [--tiny true] [any option of ../TEMPLATE/asr.sh]
set -euo pipefail

utts_per_lang=""    # synthetic utterances per language, all splits (default: 600; 20 if tiny)
seed=1              # corpus seed
tiny=false          # true: a small corpus and small vocabularies, for tests
asr_langs="en fr de es ca zh"
st_langs="fr de es ca"
# The methods compared by default (stages 6-9); --recipe X [--levels L] trains just one.
# Character units everywhere: with a few hundred steps from scratch, CTC over characters leaves
# its initial all-blank plateau far sooner than over 1000-piece SentencePiece vocabularies.
methods="joint vs vc vm:asr>st>ssl vm:st>asr>ssl"

# This recipe's options may come anywhere; everything else is for asr.sh.
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --utts-per-lang|--seed|--tiny) opt=${1#--}; printf -v "${opt//-/_}" '%s' "${2:?$1 needs a value}"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
tiny_opts=()
if [ "$tiny" = true ]; then
  utts_per_lang=${utts_per_lang:-20}
  tiny_opts=(--nj 2 --asr-vocab-size 40 --asr-vocab-sizes "zh:100" --st-vocab-size 60)
fi
utts_per_lang=${utts_per_lang:-600}

../TEMPLATE/asr.sh \
  --asr-langs "$asr_langs" --st-langs "$st_langs" \
  --local-corpus-opts "--langs '$asr_langs' --utts-per-lang $utts_per_lang --seed $seed" \
  --local-data-opts "--asr-langs '$asr_langs' --st-langs '$st_langs'" \
  --methods "$methods" --train-config conf/train.yaml \
  --asr-model-types "en:char fr:char de:char es:char ca:char zh:char" --st-model-type char \
  "${tiny_opts[@]}" "${args[@]}"
