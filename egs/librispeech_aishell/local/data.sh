#!/usr/bin/env bash
# Stage 1: LibriSpeech (en) and AISHELL-1 (zh) -> data/{train,dev,test}_{en,zh}/, plus
# data/ssl_<part>_en/ for each SSL-only set (a LibriSpeech part used only as SSL audio).
# Corpus roots come from db.sh (LIBRISPEECH, AISHELL).
#   local/data.sh [--asr-langs "en zh"] [--ssl-sets "ssl_train-clean-360_en"] [--nj 4]
#                 [--parts train-clean-100:train,dev-clean:dev,test-clean:test]
#   local/data.sh --list-inputs true [...]   prints the corpus files and directories it reads
set -euo pipefail
asr_langs="en zh"      # en: LibriSpeech, zh: AISHELL-1
st_langs=""            # no translation in these corpora (must stay empty)
ssl_sets=""            # e.g. "ssl_train-clean-360_en ssl_train-other-500_en"
parts="train-clean-100:train,dev-clean:dev,test-clean:test"  # LibriSpeech part:split (commas or spaces)
nj=4                   # threads probing audio durations
max_bad_frac=0.05      # fail if more of a data dir's items are bad
list_inputs=false      # true: print what stage 1 reads, one path a line, and exit
# shellcheck disable=SC1091
. ./path.sh
# shellcheck disable=SC1091
. ./db.sh
. utils/parse_options.sh
fail() { echo "ERROR: $0: $*" >&2; exit 1; }
if [ $# -gt 0 ]; then fail "unexpected arguments: $*"; fi
if [ -n "$st_langs" ]; then fail "--st-langs '$st_langs': LibriSpeech and AISHELL-1 have no translations"; fi

read -r -a part_splits <<< "${parts//,/ }"
read -r -a sets <<< "$ssl_sets"
read -r -a langs <<< "$asr_langs"
ssl_parts=()
for s in "${sets[@]}"; do
  part=${s#ssl_}; part=${part%_en}
  if [ "ssl_${part}_en" != "$s" ]; then fail "--ssl-sets: '$s' is not ssl_<LibriSpeech part>_en"; fi
  ssl_parts+=("$part")
done
use_en=false use_zh=false
for lang in "${langs[@]}"; do
  case $lang in
    en) use_en=true ;;
    zh) use_zh=true ;;
    *) fail "--asr-langs: '$lang': this recipe has en (LibriSpeech) and zh (AISHELL-1)" ;;
  esac
done
if [ ${#ssl_parts[@]} -gt 0 ]; then use_en=true; fi

# The corpus dirs the parsers look for: <root>/LibriSpeech and <root>/data_aishell, or root itself.
corpus_dir() { if [ -d "$1/$2" ]; then echo "$1/$2"; else echo "$1"; fi; }
list_tree() {  # list_tree DIR DEPTH GLOB: DIR's subdirectories and files named GLOB, DEPTH levels down
  if [ -d "$1" ]; then find "$1" -maxdepth "$2" \( -type d -o -name "$3" \); else echo "$1"; fi
}
if [ "$list_inputs" = true ]; then
  # Speaker/chapter directories (their mtimes follow added or deleted audio), transcripts, tarballs.
  if [ "$use_en" = true ]; then
    require_corpus LIBRISPEECH "the directory holding LibriSpeech/<part>/"
    root=$(corpus_dir "$LIBRISPEECH" LibriSpeech)
    echo "$root/SPEAKERS.TXT"
    for ps in "${part_splits[@]}" "${ssl_parts[@]}"; do list_tree "$root/${ps%%:*}" 3 '*.trans.txt'; done
  fi
  if [ "$use_zh" = true ]; then
    require_corpus AISHELL "the directory holding data_aishell/"
    root=$(corpus_dir "$AISHELL" data_aishell)
    list_tree "$root/transcript" 1 '*.txt'
    list_tree "$root/wav" 2 '*.tar.gz'
  fi
  exit 0
fi
if [ "$use_en" = true ]; then
  require_corpus LIBRISPEECH "the directory holding LibriSpeech/<part>/"
  en_parts=()
  if [[ " $asr_langs " == *" en "* ]]; then en_parts=("${part_splits[@]}"); fi
  osoup-prep-librispeech --root "$LIBRISPEECH" --parts "${en_parts[*]}" --ssl-parts "${ssl_parts[*]}" --out data \
    --nj "$nj" --max-bad-frac "$max_bad_frac"
fi
if [ "$use_zh" = true ]; then
  require_corpus AISHELL "the directory holding data_aishell/"
  osoup-prep-aishell --root "$AISHELL" --out data --nj "$nj" --max-bad-frac "$max_bad_frac"
fi
