#!/usr/bin/env bash
# CoVoST 2 on Common Voice 4, the paper's setup: ASR en fr de es ca, S2TT fr de es ca -> en.
# Set COMMONVOICE and COVOST2 in db.sh (or the environment) first. Fewer languages, e.g.
#   ./run.sh --asr-langs "en fr" --st-langs fr    (stage 1 then prepares just these)
#   ./run.sh [any option of ../TEMPLATE/asr.sh, e.g. --stage 3 --nj 16]
# Paper Table 8 (XLS-R 300M fine-tuned on raw waveforms, appendix F.2): set XLSR_DIR in db.sh to
# a local checkpoint dir (config.json, model.safetensors, preprocessor_config.json), then
#   ./run.sh --train-config conf/train_xlsr.yaml
set -euo pipefail

# shellcheck disable=SC1091
. ./db.sh
# asr.sh uses the checkpoint dir only when the train config names a pretrained backbone.
backbone_opts=()
if [ -n "${XLSR_DIR:-}" ]; then backbone_opts=(--backbone-dir "$XLSR_DIR"); fi

../TEMPLATE/asr.sh \
  --asr-langs "en fr de es ca" --st-langs "fr de es ca" \
  --asr-vocab-size 1000 --st-vocab-size 1000 \
  "${backbone_opts[@]}" "$@"
