#!/usr/bin/env bash
# Kaldi-compatible option parsing. Source it from a script after defining the variables
# that may be set from the command line, and optionally a variable help_message:
#
#   stage=1
#   stop_stage=100
#   nj=4
#   help_message="Usage: $0 [options] <arg>"
#   . utils/parse_options.sh
#
# Then "--stage 3 --stop-stage 5 --nj 8" sets stage, stop_stage and nj ("--nj=8" works too).
# Options name lower-case variables: one whose variable is not defined is an error, and one
# whose variable holds true/false accepts only true or false. "--config FILE" sources FILE
# where it appears (later options override it). "--help"/"-h" prints $help_message (or,
# without one, the script's leading comment block) and exits 0. Parsing stops at the first
# argument that is not an option, or after "--"; the remaining arguments stay in "$@".

_po_script=${0##*/}
_po_usage() {
  if [ -n "${help_message:-}" ]; then
    printf '%s\n' "$help_message"
  else
    # The header: the comment lines after the shebang, up to the first non-comment line.
    sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p;}' "$0"
  fi
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      _po_usage
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --*=*)
      _po_opt=${1%%=*}
      _po_val=${1#*=}
      shift
      ;;
    --*)
      _po_opt=$1
      if [ $# -lt 2 ]; then
        echo "$_po_script: option $_po_opt needs a value" >&2
        exit 1
      fi
      _po_val=$2
      shift 2
      ;;
    *)
      break
      ;;
  esac
  _po_name=${_po_opt#--}
  _po_name=${_po_name//-/_}
  if [ "$_po_name" = config ]; then
    if [ ! -f "$_po_val" ]; then
      echo "$_po_script: --config $_po_val: no such file" >&2
      exit 1
    fi
    # shellcheck disable=SC1090
    . "$_po_val"
    continue
  fi
  # Only lower-case script variables can be options (never PATH, HOME, ...).
  if ! [[ $_po_name =~ ^[a-z][a-z0-9_]*$ ]] || [ -z "${!_po_name+set}" ]; then
    echo "$_po_script: unknown option $_po_opt (see $_po_script --help)" >&2
    exit 1
  fi
  _po_old=${!_po_name}
  if { [ "$_po_old" = true ] || [ "$_po_old" = false ]; } && [ "$_po_val" != true ] && [ "$_po_val" != false ]; then
    echo "$_po_script: option $_po_opt expects true or false, got '$_po_val'" >&2
    exit 1
  fi
  printf -v "$_po_name" '%s' "$_po_val"
done
unset _po_opt _po_val _po_name _po_old
true
