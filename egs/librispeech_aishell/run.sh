#!/usr/bin/env bash
# LibriSpeech train-clean-100 (en) + AISHELL-1 (zh): bilingual ASR, no translation.
# Set LIBRISPEECH and AISHELL in db.sh (or the environment) first.
#   ./run.sh [--extra-ssl-parts "train-clean-360 train-other-500"] [any option of ../TEMPLATE/asr.sh]
set -euo pipefail

extra_ssl_parts=""  # more LibriSpeech parts used only as SSL audio (data/ssl_<part>_en)

# This recipe's option may come anywhere; everything else is for asr.sh.
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --extra-ssl-parts) extra_ssl_parts=${2?--extra-ssl-parts needs a value}; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
read -r -a parts <<< "$extra_ssl_parts"
ssl_sets=""
for part in "${parts[@]}"; do ssl_sets+=" ssl_${part}_en"; done

../TEMPLATE/asr.sh \
  --asr-langs "en zh" \
  --ssl-sets "${ssl_sets# }" \
  --asr-vocab-size 1000 --asr-vocab-sizes "zh:5000" \
  --methods "vm:en>zh>ssl" \
  "${args[@]}"
