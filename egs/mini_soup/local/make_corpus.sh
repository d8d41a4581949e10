#!/usr/bin/env bash
# Stage 0 of the mini recipe: synthesise a small multilingual corpus (espeak-ng speech, our own
# grammar) in the Common Voice 4 + CoVoST 2 layout, into $COMMONVOICE of db.sh (./corpus).
# A complete corpus is not regenerated on rerun.
#   local/make_corpus.sh [--langs "en fr de es ca zh"] [--utts-per-lang 600] [--seed 1] [--nj 4]
#                        [--max-speech-sec 4.6] [--snr 10,30]
set -euo pipefail
langs="en fr de es ca zh"
utts_per_lang=600
seed=1
nj=4
max_speech_sec=4.6   # longest planned sentence (estimated seconds of speech)
snr=10,30            # noise SNR range LOW,HIGH in dB ("LOW HIGH" works too)
# shellcheck disable=SC1091
. ./path.sh
# shellcheck disable=SC1091
. ./db.sh
# shellcheck disable=SC1091
. utils/parse_options.sh
if [ $# -gt 0 ]; then echo "ERROR: $0: unexpected arguments: $*" >&2; exit 1; fi

read -r -a snr_range <<< "${snr//,/ }"
osoup-make-mini-corpus --out "$COMMONVOICE" --langs "$langs" --utts-per-lang "$utts_per_lang" \
  --seed "$seed" --nj "$nj" --max-speech-sec "$max_speech_sec" --snr "${snr_range[@]}"
