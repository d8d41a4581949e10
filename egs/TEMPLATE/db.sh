# shellcheck shell=bash disable=SC2034
# Corpus roots of the real-corpus recipes (covost2, librispeech_aishell link here). Set them here,
# or in the environment (a variable set there wins).
#   COMMONVOICE  Common Voice 4: <lang>/validated.tsv and <lang>/clips/*.mp3 (zh-CN for Chinese)
#   COVOST2      the directory holding covost_v2.<src>_<tgt>.tsv
#   LIBRISPEECH  the directory holding LibriSpeech/<part>/ (train-clean-100, dev-clean, ...)
#   AISHELL      the directory holding data_aishell/ (wav/, transcript/)
#   XLSR_DIR     a local wav2vec 2.0 / XLS-R checkpoint dir (config.json, model.safetensors or
#                pytorch_model.bin, preprocessor_config.json), e.g. facebook/wav2vec2-xls-r-300m
#                saved once with save_pretrained; read by egs/covost2 --train-config conf/train_xlsr.yaml
COMMONVOICE=${COMMONVOICE:-}
COVOST2=${COVOST2:-}
LIBRISPEECH=${LIBRISPEECH:-}
AISHELL=${AISHELL:-}
XLSR_DIR=${XLSR_DIR:-}

# require_corpus VAR WHAT: stop with a message naming VAR unless it names a directory.
require_corpus() {
  local value=${!1:-}
  if [ -z "$value" ]; then
    echo "ERROR: $1 is not set: set it to $2 in db.sh or the environment" >&2
    return 1
  elif [ ! -d "$value" ]; then
    echo "ERROR: $1=$value: no such directory; set it in db.sh or the environment ($2)" >&2
    return 1
  fi
}
