# shellcheck shell=bash disable=SC2034
# Corpus roots. The mini recipe generates its corpus in stage 0 (local/make_corpus.sh) in the
# Common Voice 4 + CoVoST 2 layout, so both roots point at it. The environment is deliberately
# not read here: COMMONVOICE/COVOST2 there name the real corpora of egs/covost2.
COMMONVOICE=corpus
COVOST2=corpus

# require_corpus VAR WHAT: stop with a message naming VAR unless it names a directory.
require_corpus() {
  local value=${!1:-}
  if [ ! -d "$value" ]; then
    echo "ERROR: $1=$value: no such directory; generate the corpus first (./run.sh --stage 0 --stop-stage 0)" >&2
    return 1
  fi
}
