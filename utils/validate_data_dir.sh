#!/usr/bin/env bash
# Check Kaldi data dirs; lists every problem and exits 1 if one is invalid.
#   utils/validate_data_dir.sh [--no-text] data/train_fr [more dirs]
# Thin wrapper over "python -m osoup.bin.validate_data_dir" (osoup-validate-data-dir); see its --help.
set -euo pipefail
root=$(dirname "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)")
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if [ -x "$root/tools/venv/bin/python" ]; then
  exec "$root/tools/venv/bin/python" -m osoup.bin.validate_data_dir "$@"
fi
exec osoup-validate-data-dir "$@"
