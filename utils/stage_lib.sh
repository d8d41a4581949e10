# shellcheck shell=bash
# Helpers of the shared stage script (egs/TEMPLATE/asr.sh), sourced after it defines log():
# stage markers that hold a signature, cheap signatures of corpus inputs, one lock per stage,
# and option strings split into words without eval. test/test_stages.py exercises them.

# A marker file holds the signature of the options and inputs its outputs were made from.
is_done() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }  # is_done MARKER SIGNATURE
mark_done() { printf '%s\n' "$2" > "$1.tmp" && mv "$1.tmp" "$1"; }  # mark_done MARKER SIGNATURE (atomic)

checksum() { md5sum "$@" | md5sum | cut -c1-32; }  # checksum FILE...: one checksum of their contents

dir_checksum() {  # dir_checksum DIR [FILE...]: the data dir's utterance files and .done, plus FILEs
  local f files=("${@:2}")
  for f in wav.scp text text.en utt2spk utt2dur feats.scp utt2num_frames .done; do
    if [ -f "$1/$f" ]; then files+=("$1/$f"); fi
  done
  checksum "${files[@]}"
}

# inputs_checksum < PATHS: one checksum of the name, size and modification time (to the
# nanosecond) of every path read from stdin, one a line, following symlinks. A directory counts
# by its own entry: adding, deleting or renaming a file in it changes its mtime. Contents are not
# read, so this stays cheap on a corpus of a million clips. A missing path counts as "absent".
inputs_checksum() {
  local p present=()
  {
    while IFS= read -r p; do
      if [ -z "$p" ]; then continue; fi
      if [ -e "$p" ]; then present+=("$p"); else printf '%s absent\n' "$p"; fi
    done
    if [ ${#present[@]} -gt 0 ]; then
      printf '%s\0' "${present[@]}" | xargs -0 stat -L -c '%n %s %y' --
    fi
  } | md5sum | cut -c1-32
}

# split_opts ARRAY OPTION VALUE: split the option string VALUE (of --OPTION) into the array
# named ARRAY at whitespace. Nothing is evaluated, so quotes would reach the command verbatim:
# a value with a quote or backslash is refused (list values take commas, e.g. --snr 10,30).
split_opts() {
  local -n _so_out=$1
  if [[ $3 == *[\'\"\\]* ]]; then
    log "ERROR: --$2 '$3': quotes and backslashes are not interpreted; write words separated by spaces (list values: comma-separated)"
    return 1
  fi
  read -r -a _so_out <<< "$3"
}

# pid_running PID: true when PID is a live process. A killed process whose parent has not reaped
# it yet (a zombie; in a container whose PID 1 never reaps orphans it stays one) holds no files
# and counts as gone, though kill -0 still reaches it.
pid_running() {
  local state
  if ! kill -0 "$1" 2> /dev/null; then return 1; fi
  if [ -r "/proc/$1/stat" ]; then
    state=$(sed 's/^.*) //' "/proc/$1/stat" 2> /dev/null | cut -c1)
    if [ "$state" = Z ] || [ "$state" = X ]; then return 1; fi
  fi
  return 0
}

# take_lock FILE WHAT: hold the lock FILE (flock) until release_lock or exit; when another
# process holds it, say which (its PID is in FILE) and exit 1 at once instead of waiting.
take_lock() {
  if ! command -v flock > /dev/null; then
    log "WARNING: flock not found (util-linux); running $2 without a lock"
    return 0
  fi
  mkdir -p "$(dirname "$1")"
  exec {stage_lock_fd}>> "$1"  # appending: the holder's PID stays readable
  if ! flock -n "$stage_lock_fd"; then
    local holder
    holder=$(head -c 20 "$1" | tr -dc '0-9')
    # A killed run's children inherit the lock and may take a moment to exit: when the run
    # that took the lock is gone, wait a little for them; a live holder fails at once.
    if [ -n "$holder" ] && ! pid_running "$holder" && flock -w 30 "$stage_lock_fd"; then
      log "the run that held the lock of $2 (PID $holder) is gone; its processes have exited"
    else
      log "ERROR: another run (PID ${holder:-unknown}) holds the lock of $2 in $PWD ($1); wait for it to finish or stop it"
      exit 1
    fi
  fi
  printf '%s\n' "$$" > "$1"
}

release_lock() {  # release_lock: let go of the lock of take_lock
  if [ -n "${stage_lock_fd:-}" ]; then
    exec {stage_lock_fd}>&-
    stage_lock_fd=""
  fi
}
