#!/usr/bin/env bash
# Set up the osoup environment in tools/venv (idempotent).
#   bash tools/setup.sh            # create or update tools/venv
#   OSOUP_PYTHON=python3.11 bash tools/setup.sh
set -euo pipefail
tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$tools_dir")
venv="$tools_dir/venv"
python=${OSOUP_PYTHON:-python3}
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') (setup.sh:${BASH_LINENO[0]}) $*" >&2; }

stamp="$venv/.osoup_setup_done"
want=$(cat "$tools_dir/requirements.txt" "$root/setup.py" | sha1sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import osoup" 2>/dev/null; then
  log "environment in $venv is up to date"
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  log "creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
log "installing dependencies (torch is a large download on first install)"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$tools_dir/requirements.txt"
"$venv/bin/python" -m pip install --quiet --no-deps -e "$root"
echo "$want" > "$stamp"
log "done: activate with 'source $venv/bin/activate'"
