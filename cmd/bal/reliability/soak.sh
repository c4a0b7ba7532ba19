#!/usr/bin/env bash
# make soak: the long reliability tests (BAL_SOAK=1) of cmd/bal/reliability,
# then the fuzz targets (FUZZTIME, default 5m, for the config loader and the
# control API; SHORT_FUZZTIME, default 1m, for the others), then one table of
# test -> figure -> pass. Exit status 1 when any test or fuzz run failed.
#   FUZZTIME=30s cmd/bal/reliability/soak.sh       # a shorter run
#   SOAK_RUN='Churn' cmd/bal/reliability/soak.sh   # only matching tests
set -uo pipefail
cd "$(dirname "$0")/../../.."

fuzztime="${FUZZTIME:-5m}"            # config loader and control API
short_fuzztime="${SHORT_FUZZTIME:-1m}" # the smaller parsers
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
report="$work/report.tsv"
: >"$report"
failed=0

echo "== reliability tests (long variants on); a table follows" >&2
if ! BAL_SOAK=1 BAL_SOAK_REPORT="$report" go test -count=1 -timeout 120m -run "${SOAK_RUN:-.}" \
  ./cmd/bal/reliability/... >"$work/tests.log" 2>&1; then
  failed=1
  grep -E '^(--- FAIL|FAIL|panic)' "$work/tests.log" >&2 || tail -n 50 "$work/tests.log" >&2
fi

# Fuzz targets (research test 29).
fuzz() { # id package target time
  local id=$1 pkg=$2 target=$3 t=$4 verdict=pass
  echo "== fuzzing $target in $pkg for $t" >&2
  if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$t" "$pkg" >"$work/fuzz-$target.log" 2>&1; then
    verdict=FAIL
    failed=1
    tail -n 30 "$work/fuzz-$target.log" >&2
  fi
  local execs
  execs=$(grep -oE 'execs: [0-9]+' "$work/fuzz-$target.log" | tail -n 1 | grep -oE '[0-9]+' || echo "?")
  printf '%s\t%s\t%s\t%s\n' "$id" "Fuzz $target ($pkg)" "$t, $execs execs, no panic" "$verdict" >>"$report"
}
fuzz 29 ./engine/config/ FuzzParse "$fuzztime"
fuzz 29 ./engine/control/ FuzzControlRequest "$fuzztime"
fuzz 29 ./cmd/bal/ FuzzCLI "$short_fuzztime"
fuzz 29 ./engine/metrics/ FuzzBackendLabel "$short_fuzztime"
fuzz 29 ./engine/metrics/metricstest/ FuzzParse "$short_fuzztime"

echo
echo "bal soak — $(date -u +%Y-%m-%d) — $(uname -sr), $(nproc) CPUs"
{
  printf 'id\ttest\tfigure\tpass\n'
  sort -t $'\t' -k1,1n -k2,2 "$report"
} | column -t -s $'\t'
if grep -q $'\tFAIL$' "$report"; then failed=1; fi
exit "$failed"
