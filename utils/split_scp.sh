#!/usr/bin/env bash
# Split an scp into N contiguous parts balanced by line count (Kaldi's split_scp.pl).
#   utils/split_scp.sh [--utt2spk utt2spk] in.scp out.1.scp out.2.scp ...
# Thin wrapper over "python -m osoup.bin.split_scp" (osoup-split-scp); see its --help.
set -euo pipefail
root=$(dirname "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)")
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if [ -x "$root/tools/venv/bin/python" ]; then
  exec "$root/tools/venv/bin/python" -m osoup.bin.split_scp "$@"
fi
exec osoup-split-scp "$@"
