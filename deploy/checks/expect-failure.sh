#!/usr/bin/env bash
# Runs a check that must fail, and requires its output to name each expected problem: the
# checks' own tests, so that a check which stops catching what it is for fails too.
#
#   expect-failure.sh 'expected text' ['expected text' ...] -- command [args...]
set -uo pipefail

expected=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
  expected+=("$1")
  shift
done
[[ $# -gt 1 && ${#expected[@]} -gt 0 ]] || { echo "usage: expect-failure.sh TEXT... -- COMMAND..." >&2; exit 2; }
shift

output="$("$@" 2>&1)"
code=$?
status=0
if [[ $code -eq 0 ]]; then
  echo "expect-failure: the command succeeded, expected it to fail: $*" >&2
  status=1
fi
for text in "${expected[@]}"; do
  if [[ "$output" != *"$text"* ]]; then
    echo "expect-failure: the output does not mention: $text" >&2
    status=1
  fi
done
if [[ $status -ne 0 ]]; then
  echo "--- output of: $*" >&2
  echo "$output" >&2
else
  echo "expect-failure: ok: failed (exit $code) naming all ${#expected[@]} expected problem(s)"
fi
exit $status
