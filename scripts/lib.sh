# shellcheck shell=bash
# Shared helpers for the scripts in scripts/: repository root, logging, privilege escalation.
# Sourced, never executed; the caller sets `set -euo pipefail` and SESSIOND_SCRIPT (log prefix).

# The repository root, resolved from this file's own location so scripts work from any cwd.
SESSIOND_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
export SESSIOND_ROOT

# log MESSAGE...: one line on stderr, prefixed with the script's name (stdout stays for data).
log() {
  printf '[%s] %s\n' "${SESSIOND_SCRIPT:-sessiond}" "$*" >&2
}

# die MESSAGE...: log and exit 1.
die() {
  log "error: $*"
  exit 1
}

# as_root CMD...: run CMD as root, through sudo when we are not root already.
as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -- "$@"
  else
    die "need root for '$*' and sudo is not installed"
  fi
}

# jobs_default: parallel build jobs (SESSIOND_JOBS, default 2: the CI machine has 2 cores).
jobs_default() {
  printf '%s\n' "${SESSIOND_JOBS:-2}"
}
