#!/usr/bin/env bash
# CoVoST 2 on Common Voice 4, the paper's setup: ASR en fr de es ca, S2TT fr de es ca -> en.
# Set COMMONVOICE and COVOST2 in db.sh (or the environment) first.
#   ./run.sh [any option of ../TEMPLATE/asr.sh, e.g. --stage 3 --nj 16]
set -euo pipefail

asr_langs="en fr de es ca"
st_langs="fr de es ca"

../TEMPLATE/asr.sh \
  --asr-langs "$asr_langs" --st-langs "$st_langs" \
  --local-data-opts "--asr-langs '$asr_langs' --st-langs '$st_langs'" \
  --asr-vocab-size 1000 --st-vocab-size 1000 \
  "$@"
