# shellcheck shell=bash
# Environment of an osoup recipe; sourced (by run.sh, TEMPLATE/asr.sh, local/*.sh) from the
# recipe directory egs/<corpus>/.
# OSOUP_ROOT overrides the location (e.g. a copy of a recipe outside the repository).
osoup_root=${OSOUP_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)}
if [ ! -x "$osoup_root/tools/venv/bin/python" ]; then
  echo "path.sh: no Python environment in $osoup_root/tools/venv; run 'bash tools/setup.sh' in $osoup_root first" >&2
  # shellcheck disable=SC2317  # exit when executed instead of sourced
  return 1 2>/dev/null || exit 1
fi
# What "source tools/venv/bin/activate" does, without touching the prompt.
export VIRTUAL_ENV=$osoup_root/tools/venv
export PATH=$osoup_root/utils:$VIRTUAL_ENV/bin:$PATH
export PYTHONPATH=$osoup_root${PYTHONPATH:+:$PYTHONPATH}
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=1
