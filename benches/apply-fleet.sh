#!/usr/bin/env bash
# Fleet apply benchmark over the local transport: H hosts × T chained tasks (defaults H=1000,
# T=50, so 50,000 task instances).
#
# Every host is `transport: local` with its own directory (`vars: {dir: <area>/h<N>}`) and the
# label `fleet: bench`; one workflow selects them all by that label. Its tasks form one chain
# per host (task i needs task i-1): t0 creates the directory (`mkdir -p`, `creates:` it), then
# every task i writes a ~200-byte file `{{ dir }}/f<i>`, except every 5th (i = 5, 10, ...)
# which runs `test -f {{ dir }}/f<i-1>`.
#
# Measured, each under /usr/bin/time -v (peak RSS from it; wall time from bash's
# EPOCHREALTIME around it, for millisecond resolution):
#   first   `drover apply --auto-approve --color never DIR` on a fresh state: wall s,
#           instances/s, peak RSS MiB
#   no-op   the same apply again (nothing to do): wall s, instances/s, peak RSS MiB
#   plan    no-op `drover plan --color never DIR`: wall ms, best of 5 runs, peak RSS MiB
#   drift   `drover drift --color never DIR`: every host probed once; wall s, peak RSS MiB
#
#   bash benches/apply-fleet.sh [H] [T]
#   DROVER_BIN=/path/to/drover bash benches/apply-fleet.sh 100 50   (that binary, no build)
#   PARALLELISM=64 bash benches/apply-fleet.sh                       (passes --parallelism 64)
#
# Without DROVER_BIN it builds with `cargo build --release --quiet` and uses
# target/release/drover. --parallelism is passed only when PARALLELISM is set (otherwise
# drover's default applies). The full 1000 × 50 run takes minutes; everything lives in a
# mktemp directory removed on exit.
set -euo pipefail
# Resolve DROVER_BIN before leaving the caller's directory, so a relative path works.
bin=
if [ -n "${DROVER_BIN:-}" ]; then
  bin=$(command -v -- "$DROVER_BIN") || { echo "DROVER_BIN=$DROVER_BIN: not an executable" >&2; exit 1; }
  case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
fi
cd "$(dirname "$0")/.."
hosts=${1:-1000}
tasks=${2:-50}
case "$hosts$tasks" in *[!0-9]*) echo "usage: $0 [HOSTS] [TASKS]" >&2; exit 2 ;; esac
if [ "$hosts" -lt 1 ] || [ "$tasks" -lt 1 ]; then echo "usage: $0 [HOSTS>=1] [TASKS>=1]" >&2; exit 2; fi
instances=$((hosts * tasks))
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=$PWD/target/release/drover
fi
par=()
if [ -n "${PARALLELISM:-}" ]; then par=(--parallelism "$PARALLELISM"); fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir=$work/manifests
area=$work/area
mkdir -p "$dir" "$area"

# Hosts: one file, one document each.
for h in $(seq 1 "$hosts"); do
  printf -- '---\napiVersion: drover/v1\nkind: Host\nmetadata: {name: h%d, labels: {fleet: bench}}\nspec: {transport: local, vars: {dir: "%s/h%d"}}\n' \
    "$h" "$area" "$h"
done > "$dir/hosts.yaml"
# The workflow: one chain of T tasks per host. File content is ~200 bytes once rendered.
payload=$(head -c 178 /dev/zero | tr '\0' 'x')
{
  printf 'apiVersion: drover/v1\nkind: Workflow\nmetadata: {name: fleet}\nspec:\n  hosts: {matchLabels: {fleet: bench}}\n  tasks:\n'
  printf '    - {name: t0, run: {command: "mkdir -p {{ dir }}", creates: "{{ dir }}"}}\n'
  for i in $(seq 1 $((tasks - 1))); do
    if [ $((i % 5)) -eq 0 ]; then
      printf '    - {name: t%d, needs: [t%d], run: "test -f {{ dir }}/f%d"}\n' "$i" $((i - 1)) $((i - 1))
    else
      printf '    - {name: t%d, needs: [t%d], file: {path: "{{ dir }}/f%d", content: "fleet bench file %d %s\\n"}}\n' \
        "$i" $((i - 1)) "$i" "$i" "$payload"
    fi
  done
} > "$dir/fleet.yaml"

# Microseconds since the epoch (EPOCHREALTIME has six decimals).
now_us() { local t=$EPOCHREALTIME; echo "${t/[.,]/}"; }

# timed CMD...: run drover CMD... under /usr/bin/time -v; sets wall_ms and rss_mib, leaves the
# output in $work/out.txt. Exits the script, showing the output, if drover fails.
wall_ms=0 rss_mib=0
timed() {
  local start end
  start=$(now_us)
  if ! /usr/bin/time -v "$bin" "$@" > "$work/out.txt" 2> "$work/time.txt"; then
    echo "drover $1 failed:" >&2
    tail -n 40 "$work/out.txt" "$work/time.txt" >&2
    exit 1
  fi
  end=$(now_us)
  wall_ms=$(awk -v us=$((end - start)) 'BEGIN { printf "%.3f", us / 1000 }')
  rss_mib=$(awk '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }' "$work/time.txt")
}
# The summary line drover prints last but one or two ("Apply complete: ...", "No changes. ...").
summary() { grep -E '^(Apply complete|Apply failed|No changes)' "$work/out.txt" | tail -n 1 || true; }

apply_line() { # LABEL
  timed apply --auto-approve --color never ${par[@]+"${par[@]}"} "$dir"
  printf '%-6s wall %8.3fs  %9.1f instances/s  peak RSS %7.1f MiB  (%s)\n' "$1" \
    "$(awk -v ms="$wall_ms" 'BEGIN { print ms / 1000 }')" \
    "$(awk -v n="$instances" -v ms="$wall_ms" 'BEGIN { print (ms > 0) ? n * 1000 / ms : 0 }')" \
    "$rss_mib" "$(summary)"
}

echo "apply-fleet: H=$hosts hosts x T=$tasks chained tasks = $instances instances, local transport, parallelism ${PARALLELISM:-default}"
apply_line first
apply_line no-op
best='' best_rss=''
for _ in 1 2 3 4 5; do
  timed plan --color never "$dir"
  if [ -z "$best" ] || awk -v a="$wall_ms" -v b="$best" 'BEGIN { exit !(a < b) }'; then
    best=$wall_ms best_rss=$rss_mib
  fi
done
printf '%-6s wall %8.1fms (best of 5)  peak RSS %7.1f MiB  (%s)\n' plan "$best" "$best_rss" "$(summary)"
# Drift: every host is probed once (one `sh -s` each); wall time and the summary line.
timed drift --color never ${par[@]+"${par[@]}"} "$dir"
printf '%-6s wall %8.3fs  peak RSS %7.1f MiB  (%s)\n' drift \
  "$(awk -v ms="$wall_ms" 'BEGIN { print ms / 1000 }')" "$rss_mib" "$(tail -n 1 "$work/out.txt")"
