#!/usr/bin/env bash
# Checks the metric names that Prometheus rule files and Grafana dashboards query: each must be
# one sessiond exports (the Signals table of docs/operations.md) or one of the exporters' on the
# explicit allow-list (deploy/checks/exporter-metrics.txt). Catches a misspelt or renamed metric,
# which would otherwise leave an alert silent or a panel empty.
#
#   check-metric-names.sh --contract docs/operations.md --exporters deploy/checks/exporter-metrics.txt \
#       [--cmake CMAKE] [--source DIR] [--promtool PROMTOOL] FILE...
#
# FILE: rule files (*.yml, *.yaml: every `expr:`) and dashboards (*.json, read by dashboard.cmake,
# which also checks the dashboard's structure).
#   --source DIR      also require every sessiond_*/process_* name used to appear as a string
#                     literal ("name") in the engine's C++ sources under DIR, i.e. to be exported.
#   --promtool PATH   also parse every dashboard query with promtool (Grafana variables replaced
#                     by sample values), so a syntax error in a panel fails here, not in Grafana.
# Needs bash, sed, grep, awk and CMake only. Exit status 0 when every check passes, 1 otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
contract="" exporters="" cmake="cmake" source_dir="" promtool=""
files=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --contract) contract="$2"; shift 2 ;;
    --exporters) exporters="$2"; shift 2 ;;
    --cmake) cmake="$2"; shift 2 ;;
    --source) source_dir="$2"; shift 2 ;;
    --promtool) promtool="$2"; shift 2 ;;
    -*) echo "check-metric-names: unknown option $1" >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
if [[ -z "$contract" || -z "$exporters" || ${#files[@]} -eq 0 ]]; then
  echo "usage: check-metric-names.sh --contract FILE --exporters FILE [--cmake CMAKE] [--source DIR] [--promtool PATH] FILE..." >&2
  exit 2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# PromQL functions, aggregations and keywords, and the Grafana functions of variable queries.
# A word followed by "(" must be one of the functions; any other word that is not a keyword is
# a metric name.
functions=" abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
  clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year
  days_in_month deg delta deriv exp floor histogram_count histogram_fraction histogram_quantile
  histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase irate
  label_join label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time
  minute month pi predict_linear present_over_time quantile_over_time rad rate resets round scalar
  sgn sin sinh sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time
  timestamp vector year
  sum min max avg group stddev stdvar count count_values bottomk topk quantile
  label_values query_result "
functions=" ${functions//$'\n'/ } "
keywords=" and or unless by without on ignoring group_left group_right bool offset atan2 inf nan
  start end "
keywords=" ${keywords//$'\n'/ } "

# Rule files: the value of every `expr:` key, plain, quoted or a block scalar (| or >).
rule_exprs() {
  awk '
    function indent(s) { match(s, /^[ ]*/); return RLENGTH }
    inblock {
      if ($0 ~ /^[ \t]*$/ || indent($0) > ind) { buf = buf " " $0; next }
      print buf; inblock = 0
    }
    /^[ \t-]*expr:/ {
      v = $0; sub(/^[ \t-]*expr:[ \t]*/, "", v)
      if (v ~ /^[|>][-+0-9]*[ \t]*$/) { ind = indent($0); inblock = 1; buf = ""; next }
      if (v ~ /^'\''.*'\''$/) { v = substr(v, 2, length(v) - 2); gsub(/'\'''\''/, "'\''", v) }
      else if (v ~ /^".*"$/) { v = substr(v, 2, length(v) - 2); gsub(/\\"/, "\"", v); gsub(/\\\\/, "\\", v) }
      print v
    }
    END { if (inblock) print buf }
  ' "$1"
}

# Metric names in PromQL read on stdin (one expression per line), one per line with its file.
# shellcheck disable=SC2016 # the sed programs are meant literally
names_in() {
  local file="$1" tok word
  sed -E \
    -e 's/"([^"\\]|\\.)*"//g' \
    -e "s/'([^'\\\\]|\\\\.)*'//g" \
    -e 's/`[^`]*`//g' \
    -e 's/\{[^}]*\}//g' \
    -e 's/\[[^]]*\]//g' \
    -e 's/\$\{[A-Za-z0-9_:]+\}|\$[A-Za-z0-9_]+//g' \
    -e 's/(^|[^A-Za-z0-9_:])(by|without|on|ignoring|group_left|group_right)[ \t]*\([^)]*\)/\1/g' |
    grep -oE '[0-9.]*[A-Za-z_:][A-Za-z0-9_:]*([ \t]*\()?' |
    while IFS= read -r tok; do
      [[ "$tok" =~ ^[0-9.] ]] && continue # a number, a duration, 1e3
      word="${tok%%[ (	]*}"
      [[ "$keywords" == *" $word "* ]] && continue # "or (", "and on (...)"
      if [[ "$tok" == *"(" ]]; then
        [[ "$functions" == *" $word "* ]] || echo "$file	unknown function: $word"
        continue
      fi
      echo "$file	$word"
    done
}

# The expressions of every file, as "file<TAB>expr".
: >"$tmp/used"
dashboard_queries=()
n=0
for f in "${files[@]}"; do
  [[ -r "$f" ]] || { echo "check-metric-names: cannot read $f" >&2; exit 2; }
  n=$((n + 1))
  case "$f" in
    *.json)
      "$cmake" -DDASHBOARD="$f" -DOUT="$tmp/queries.$n" -P "$here/dashboard.cmake"
      dashboard_queries+=("$tmp/queries.$n")
      names_in "$f" <"$tmp/queries.$n" >>"$tmp/used"
      ;;
    *.yml | *.yaml)
      rule_exprs "$f" >"$tmp/queries.$n"
      [[ -s "$tmp/queries.$n" ]] || { echo "$f: no expr found" >&2; exit 1; }
      names_in "$f" <"$tmp/queries.$n" >>"$tmp/used"
      ;;
    *) echo "check-metric-names: $f is neither a rule file (.yml) nor a dashboard (.json)" >&2; exit 2 ;;
  esac
done

# What may be used: sessiond's own metrics (table rows of the runbook's Signals section whose
# first cell is one `name`) and the exporters' allow-list (first word of each line).
# shellcheck disable=SC2016
grep -oE '^\|[ ]*`(sessiond|process)_[A-Za-z0-9_:]*`[ ]*\|' "$contract" | tr -d '|` ' | sort -u >"$tmp/contract"
sed -e 's/#.*//' "$exporters" | awk 'NF { print $1 }' | sort -u >"$tmp/exporters"
[[ -s "$tmp/contract" ]] || { echo "$contract: no metric table rows found" >&2; exit 1; }
[[ -s "$tmp/exporters" ]] || { echo "$exporters: empty allow-list" >&2; exit 1; }
cat "$tmp/contract" "$tmp/exporters" | sort -u >"$tmp/allowed"

# base NAME: the family a sample name belongs to (a histogram's _bucket, _sum and _count).
base() {
  local name="$1" stem
  for suffix in _bucket _sum _count; do
    stem="${name%"$suffix"}"
    if [[ "$stem" != "$name" ]] && grep -qxF "$stem" "$tmp/allowed"; then
      echo "$stem"
      return
    fi
  done
  echo "$name"
}

status=0
checked=0
while IFS=$'\t' read -r file name; do
  if [[ "$name" == "unknown function: "* ]]; then
    echo "$file: $name" >&2
    status=1
    continue
  fi
  checked=$((checked + 1))
  family="$(base "$name")"
  if ! grep -qxF "$family" "$tmp/allowed"; then
    echo "$file: unknown metric: $name (not in the Signals table of $contract nor in $exporters)" >&2
    status=1
    continue
  fi
  if [[ -n "$source_dir" && "$family" =~ ^(sessiond|process)_ ]]; then
    echo "$family" >>"$tmp/to_export"
  fi
done < <(sort -u "$tmp/used")

# --source: the engine must register every sessiond_/process_ family the files use.
if [[ -n "$source_dir" && -s "$tmp/to_export" ]]; then
  while IFS= read -r family; do
    if ! grep -rqF --include='*.cpp' --include='*.hpp' --include='*.h' \
      --exclude-dir=tests --exclude-dir=deploy --exclude-dir=.git --exclude-dir='build*' \
      --exclude-dir=.local "\"$family\"" "$source_dir"; then
      echo "not exported: $family (no \"$family\" in the C++ sources under $source_dir)" >&2
      status=1
    fi
  done < <(sort -u "$tmp/to_export")
fi

# --promtool: every dashboard query must parse; promtool checks them as recording rules.
if [[ -n "$promtool" && ${#dashboard_queries[@]} -gt 0 ]]; then
  {
    echo "groups:"
    echo "  - name: dashboard-queries"
    echo "    rules:"
    i=0
    # shellcheck disable=SC2016 # Grafana's variables, replaced by sample values
    cat "${dashboard_queries[@]}" |
      sed -e 's/\$__rate_interval/1m/g; s/\$__interval/1m/g; s/\$__range/1h/g' \
        -e 's/\$\(job\)/sessiond/g; s/\$[A-Za-z_][A-Za-z0-9_]*/.*/g' |
      while IFS= read -r q; do
        i=$((i + 1))
        echo "      - record: dashboard:query:$i"
        echo "        expr: |"
        echo "          $q"
      done
  } >"$tmp/dashboard-rules.yml"
  if ! "$promtool" check rules "$tmp/dashboard-rules.yml" >"$tmp/promtool.out" 2>&1; then
    cat "$tmp/promtool.out" >&2
    echo "dashboard queries: promtool cannot parse them (see above; dashboard:query:N is line N of the queries)" >&2
    status=1
  fi
fi

if [[ $status -eq 0 ]]; then
  echo "check-metric-names: ok: $checked metric references in ${#files[@]} file(s), all known" \
    "($(wc -l <"$tmp/contract") sessiond, $(wc -l <"$tmp/exporters") exporter names allowed)"
fi
exit $status
