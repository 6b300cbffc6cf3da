#!/usr/bin/env bash
# Checks the conventions of the alert rules that promtool does not: every alert has a
# `severity` label (critical, warning or info) and the annotations `summary`, `description` and
# `runbook_url`; the runbook_url is URL_PREFIX + the alert name in lower case, and that anchor
# is a heading of the runbook with the four parts of a runbook entry; the unit tests have, for
# every alert, a case where it fires and one where it does not; the required alerts exist;
# every job the rules select (job="..." or job=~"a|b") is scraped by the Prometheus config.
#
#   check-alerts.sh --rules alerts.yml --tests alerts_test.yml [--tests ...] --runbook docs/operations.md \
#       --url-prefix https://.../docs/operations.md# [--config prometheus.yml] [--require Name,Name,...]
#
# Reads the YAML line by line (awk), so it expects the layout of deploy/prometheus: one
# `- alert:` per rule, `severity:` and each annotation on their own line, one-line values.
# Needs bash, awk, sed and grep only. Exit status 0 when every check passes, 1 otherwise.
set -euo pipefail

tests=()
rules="" runbook="" prefix="" require="" config=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rules) rules="$2"; shift 2 ;;
    --tests) tests+=("$2"); shift 2 ;;
    --runbook) runbook="$2"; shift 2 ;;
    --url-prefix) prefix="$2"; shift 2 ;;
    --require) require="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    *) echo "check-alerts: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$rules" || ${#tests[@]} -eq 0 || -z "$runbook" || -z "$prefix" ]]; then
  echo "usage: check-alerts.sh --rules FILE --tests FILE [--tests FILE...] --runbook FILE --url-prefix URL [--config FILE] [--require A,B]" >&2
  exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0
fail() {
  echo "$*" >&2
  status=1
}

# One line per alert: name, severity, has summary, has description, runbook_url.
awk '
  function unquote(v) {
    sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v)
    if (v ~ /^".*"$/ || v ~ /^'\''.*'\''$/) v = substr(v, 2, length(v) - 2)
    return v
  }
  function flush() {
    if (name != "") printf "%s\t%s\t%d\t%d\t%s\n", name, (sev == "" ? "-" : sev), s, d, (rb == "" ? "-" : rb)
    name = ""
  }
  /^[ \t]*-[ \t]+alert:/ { flush(); v = $0; sub(/^[^:]*:/, "", v); name = unquote(v); sev = ""; s = 0; d = 0; rb = ""; next }
  /^[ \t]*-[ \t]+record:/ { flush(); next }
  name != "" && /^[ \t]+severity:/ { v = $0; sub(/^[^:]*:/, "", v); sev = unquote(v) }
  name != "" && /^[ \t]+summary:/ { s = 1 }
  name != "" && /^[ \t]+description:/ { d = 1 }
  name != "" && /^[ \t]+runbook_url:/ { v = $0; sub(/^[^:]*:/, "", v); rb = unquote(v) }
  END { flush() }
' "$rules" >"$tmp/alerts"
[[ -s "$tmp/alerts" ]] || { echo "$rules: no alerts found" >&2; exit 1; }

# Runbook headings as GitHub anchors (lower case, punctuation dropped, spaces to hyphens), and
# for each heading whether its section has the four parts.
awk '
  function anchor(h) {
    h = tolower(h); gsub(/[^a-z0-9 _-]/, "", h); gsub(/ /, "-", h); return h
  }
  function flush() {
    if (cur != "") printf "%s\t%d\n", cur, (parts["What it means"] && parts["Check first"] && parts["Relieve now"] && parts["Lasting fix"])
  }
  /^```/ { fence = !fence; next }
  fence { next }
  /^#+[ \t]/ {
    flush(); h = $0; sub(/^#+[ \t]+/, "", h); sub(/[ \t]+$/, "", h); cur = anchor(h)
    delete parts; next
  }
  /^\*\*What it means\.\*\*/ { parts["What it means"] = 1 }
  /^\*\*Check first\.\*\*/ { parts["Check first"] = 1 }
  /^\*\*Relieve now\.\*\*/ { parts["Relieve now"] = 1 }
  /^\*\*Lasting fix\.\*\*/ { parts["Lasting fix"] = 1 }
  END { flush() }
' "$runbook" >"$tmp/anchors"

# For each alert name in the tests: "pos" for a case expecting it to fire, "neg" for
# `exp_alerts: []`.
awk '
  /^[ \t]*-?[ \t]*alertname:/ { v = $0; sub(/^[^:]*:[ \t]*/, "", v); gsub(/["'\'' \t]/, "", v); name = v; next }
  /^[ \t]*exp_alerts:/ {
    if (name == "") next
    if ($0 ~ /exp_alerts:[ \t]*\[[ \t]*\]/) print name "\tneg"; else print name "\tpos"
    name = ""
  }
' "${tests[@]}" | sort -u >"$tmp/cases"

declare -A seen=()
while IFS=$'\t' read -r name sev has_summary has_description url; do
  if [[ -n "${seen[$name]:-}" ]]; then
    fail "$rules: alert $name is defined twice"
  fi
  seen[$name]=1
  case "$sev" in
    critical | warning | info) ;;
    *) fail "$rules: $name: severity label is \"$sev\", expected critical, warning or info" ;;
  esac
  [[ "$has_summary" == 1 ]] || fail "$rules: $name: no summary annotation"
  [[ "$has_description" == 1 ]] || fail "$rules: $name: no description annotation"
  lower="$(tr '[:upper:]' '[:lower:]' <<<"$name")"
  if [[ "$url" != "$prefix$lower" ]]; then
    fail "$rules: $name: runbook_url is \"$url\", expected \"$prefix$lower\""
  fi
  section="$(awk -F'\t' -v a="$lower" '$1 == a { print $2; exit }' "$tmp/anchors")"
  if [[ -z "$section" ]]; then
    fail "$runbook: no heading for alert $name (anchor #$lower)"
  elif [[ "$section" != 1 ]]; then
    fail "$runbook: section #$lower lacks one of **What it means.** **Check first.** **Relieve now.** **Lasting fix.**"
  fi
  grep -qxF "$name	pos" "$tmp/cases" || fail "${tests[*]}: no case where $name fires"
  grep -qxF "$name	neg" "$tmp/cases" || fail "${tests[*]}: no case where $name must not fire (exp_alerts: [])"
done <"$tmp/alerts"

# Test cases for alerts that do not exist test nothing.
while IFS=$'\t' read -r name _; do
  [[ -n "${seen[$name]:-}" ]] || fail "${tests[*]}: tests alert $name, which $rules does not define"
done <"$tmp/cases"

IFS=',' read -r -a required <<<"$require"
for name in "${required[@]}"; do
  [[ -z "$name" || -n "${seen[$name]:-}" ]] || fail "$rules: required alert $name is missing"
done

# --config: the jobs the rules select must be scraped.
if [[ -n "$config" ]]; then
  sed -n 's/^[[:space:]]*-[[:space:]]*job_name:[[:space:]]*//p' "$config" | tr -d '"'\'' ' | sort -u >"$tmp/jobs"
  grep -oE 'job=~?"[^"]*"' "$rules" | sed -E 's/^job=~?"//; s/"$//' | tr '|' '\n' | sort -u |
    while IFS= read -r job; do
      grep -qxF "$job" "$tmp/jobs" || echo "$rules: selects job \"$job\", which $config does not scrape"
    done >"$tmp/missing_jobs"
  if [[ -s "$tmp/missing_jobs" ]]; then
    cat "$tmp/missing_jobs" >&2
    status=1
  fi
fi

if [[ $status -eq 0 ]]; then
  echo "check-alerts: ok: ${#seen[@]} alerts, each with severity, summary, description," \
    "a runbook section and firing and non-firing tests"
fi
exit $status
