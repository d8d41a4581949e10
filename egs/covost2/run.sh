#!/usr/bin/env bash
# CoVoST 2 on Common Voice 4, the paper's setup: ASR en fr de es ca, S2TT fr de es ca -> en.
# Set COMMONVOICE and COVOST2 in db.sh (or the environment) first. Fewer languages, e.g.
#   ./run.sh --asr-langs "en fr" --st-langs fr    (stage 1 then prepares just these)
#   ./run.sh [any option of ../TEMPLATE/asr.sh, e.g. --stage 3 --nj 16]
set -euo pipefail

../TEMPLATE/asr.sh \
  --asr-langs "en fr de es ca" --st-langs "fr de es ca" \
  --asr-vocab-size 1000 --st-vocab-size 1000 \
  "$@"
