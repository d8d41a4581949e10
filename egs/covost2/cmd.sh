# shellcheck shell=bash
# How stage jobs run. utils/run.pl runs them on this machine, in parallel; add
# "--max-jobs-run N" to limit how many run at once.
export cmd="run.pl"
export train_cmd="run.pl"
export decode_cmd="run.pl"
