#!/usr/bin/env bash
# Make a data dir valid (sort, keep utterances present in every file, regenerate spk2utt);
# originals are backed up to DIR/.backup/.
#   utils/fix_data_dir.sh [--max-bad-frac 0.05] data/train_fr
# Thin wrapper over "python -m osoup.bin.fix_data_dir" (osoup-fix-data-dir); see its --help.
set -euo pipefail
root=$(dirname "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)")
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if [ -x "$root/tools/venv/bin/python" ]; then
  exec "$root/tools/venv/bin/python" -m osoup.bin.fix_data_dir "$@"
fi
exec osoup-fix-data-dir "$@"
