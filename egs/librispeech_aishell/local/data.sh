#!/usr/bin/env bash
# Stage 1: LibriSpeech (en) and AISHELL-1 (zh) -> data/{train,dev,test}_{en,zh}/, plus
# data/ssl_<part>_en/ for LibriSpeech parts used only as SSL audio.
# Corpus roots come from db.sh (LIBRISPEECH, AISHELL).
#   local/data.sh [--parts "train-clean-100:train dev-clean:dev test-clean:test"] [--extra-ssl-parts "train-clean-360"] [--nj 4]
set -euo pipefail
parts="train-clean-100:train dev-clean:dev test-clean:test"  # LibriSpeech part:split
extra_ssl_parts=""                                           # e.g. "train-clean-360 train-other-500"
nj=4                                                         # threads probing audio durations
max_bad_frac=0.05                                            # fail if more of a data dir's items are bad
# shellcheck disable=SC1091
. ./path.sh
# shellcheck disable=SC1091
. ./db.sh
. utils/parse_options.sh

require_corpus LIBRISPEECH "the directory holding LibriSpeech/<part>/"
require_corpus AISHELL "the directory holding data_aishell/"
osoup-prep-librispeech --root "$LIBRISPEECH" --parts "$parts" --ssl-parts "$extra_ssl_parts" --out data --nj "$nj" --max-bad-frac "$max_bad_frac"
osoup-prep-aishell --root "$AISHELL" --out data --nj "$nj" --max-bad-frac "$max_bad_frac"
