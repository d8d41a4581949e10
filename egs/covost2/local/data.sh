#!/usr/bin/env bash
# Stage 1: CoVoST 2 on Common Voice 4 -> data/{train,dev,test}_<lang>/ (Kaldi data dirs).
# Corpus roots come from db.sh (COMMONVOICE, COVOST2). The parser is osoup-prep-covost2.
#   local/data.sh [--asr-langs "en fr de es ca"] [--st-langs "fr de es ca"] [--nj 4]
#   local/data.sh --list-inputs true [...]   prints the corpus files and directories it reads
set -euo pipefail
asr_langs="en fr de es ca"
st_langs="fr de es ca"
ssl_sets=""                       # SSL-only data dirs: none in this corpus (must stay empty)
en_split_tsv=covost_v2.en_de.tsv  # CoVoST file whose splits English ASR uses
nj=4                              # threads probing audio durations
max_bad_frac=0.05                 # fail if more of a data dir's rows are bad (missing/corrupt audio, empty text)
list_inputs=false                 # true: print what stage 1 reads, one path a line, and exit
# shellcheck disable=SC1091
. ./path.sh
# shellcheck disable=SC1091
. ./db.sh
. utils/parse_options.sh
if [ $# -gt 0 ]; then echo "ERROR: $0: unexpected arguments: $*" >&2; exit 1; fi
if [ -n "$ssl_sets" ]; then
  echo "ERROR: $0: --ssl-sets '$ssl_sets': this corpus has no SSL-only sets" >&2; exit 1
fi

require_corpus COMMONVOICE "the Common Voice 4 root (<lang>/validated.tsv, <lang>/clips/)"
require_corpus COVOST2 "the directory holding covost_v2.<src>_en.tsv"
if [ "$list_inputs" = true ]; then
  # Every language's sentences and clip directory, and every CoVoST table (a few dozen paths).
  printf '%s\n' "$COMMONVOICE"/*/validated.tsv "$COMMONVOICE"/*/clips "$COVOST2"/covost_v2.*.tsv
  case $en_split_tsv in /*) printf '%s\n' "$en_split_tsv" ;; esac
  exit 0
fi
osoup-prep-covost2 --cv-root "$COMMONVOICE" --covost-root "$COVOST2" \
  --asr-langs "$asr_langs" --st-langs "$st_langs" --en-split-tsv "$en_split_tsv" --out data --nj "$nj" --max-bad-frac "$max_bad_frac"
