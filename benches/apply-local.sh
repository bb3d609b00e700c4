#!/usr/bin/env bash
# Apply benchmark over the local transport: 1 host × N tasks (default 500), alternating a
# ~200-byte file and a shell command. Two workloads, each in its own manifest directory:
#
#   1. chained in groups of 10 (task i needs task i-1 unless i is a multiple of 10);
#   2. one chain (every task needs the previous one).
#
# For each it reports wall time, tasks/s and peak RSS (the apply runs under /usr/bin/time -v)
# for the first run and for the no-op second run. For the one-chain workload, the one whose
# fsyncs per instance we track, it then runs the first apply once more on a fresh state (state
# dir and written area removed, so it is a real first apply) under
# `strace -f -c -e trace=fsync,fdatasync,sync_file_range`, and prints the number of
# fsync+fdatasync calls and that number per task instance: the durability cost of an apply
# (the store commits each instance's start and outcome). The strace run's wall time is not
# reported (tracing slows it down). Without strace the count is skipped, with a line saying so.
#
#   bash benches/apply-local.sh [N]
#   DROVER_BIN=/path/to/drover bash benches/apply-local.sh 50   (use that binary, no cargo build)
set -euo pipefail
# Resolve DROVER_BIN before leaving the caller's directory, so a relative path works.
bin=
if [ -n "${DROVER_BIN:-}" ]; then
  bin=$(command -v -- "$DROVER_BIN") || { echo "DROVER_BIN=$DROVER_BIN: not an executable" >&2; exit 1; }
  case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
fi
cd "$(dirname "$0")/.."
tasks=${1:-500}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=$PWD/target/release/drover
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# manifests DIR AREA GROUP: the host and the N-task workflow in DIR, writing under AREA;
# tasks are chained in groups of GROUP (0: one chain).
manifests() {
  local dir=$1 area=$2 group=$3 i needs
  mkdir -p "$dir" "$area"
  cat > "$dir/host.yaml" <<YAML
apiVersion: drover/v1
kind: Host
metadata: {name: bench}
spec: {transport: local, vars: {dir: "$area"}}
YAML
  {
    printf 'apiVersion: drover/v1\nkind: Workflow\nmetadata: {name: load}\nspec:\n  hosts: {names: [bench]}\n  tasks:\n'
    for i in $(seq 0 $((tasks - 1))); do
      needs=""
      if [ "$i" -gt 0 ] && { [ "$group" -eq 0 ] || [ $((i % group)) -ne 0 ]; }; then
        needs="needs: [t$((i - 1))], "
      fi
      if [ $((i % 2)) -eq 0 ]; then
        printf '    - {name: t%d, %sfile: {path: "{{ dir }}/f%d.conf", content: "# generated file %d for the apply benchmark\\nkey_%d = value-%d\\n%s\\n"}}\n' \
          "$i" "$needs" "$i" "$i" "$i" "$i" "$(head -c 120 /dev/zero | tr '\0' 'x')"
      else
        printf '    - {name: t%d, %srun: "echo %d >> {{ dir }}/log"}\n' "$i" "$needs" "$i"
      fi
    done
  } > "$dir/load.yaml"
}

# Microseconds since the epoch (EPOCHREALTIME has six decimals).
now_us() { local t=$EPOCHREALTIME; echo "${t/[.,]/}"; }

# measure LABEL DIR: apply DIR under /usr/bin/time -v and print one line. Peak RSS comes from
# time -v; the wall time from EPOCHREALTIME around it (time -v only has centiseconds, which
# turns a fast no-op run into "0.000s, 0.0 tasks/s").
measure() {
  local label=$1 dir=$2 start end
  start=$(now_us)
  if ! /usr/bin/time -v "$bin" apply --auto-approve --color never "$dir" > "$work/out.txt" 2> "$work/time.txt"; then
    echo "$label: drover apply failed:" >&2
    cat "$work/out.txt" "$work/time.txt" >&2
    exit 1
  fi
  end=$(now_us)
  local rss secs
  rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
  secs=$(awk -v us=$((end - start)) 'BEGIN { print us / 1000000 }')
  printf '%-8s wall %6.3fs  %8.1f tasks/s  peak RSS %6.1f MiB  (%s)\n' "$label" "$secs" \
    "$(echo "$tasks $secs" | awk '{ if ($2 > 0) print $1/$2; else print 0 }')" \
    "$(echo "$rss" | awk '{print $1/1024}')" "$(tail -n 3 "$work/out.txt" | head -n 1)"
}

# fsyncs DIR AREA: a real first apply of DIR (fresh state, empty AREA) under strace; prints
# the fsync+fdatasync count and the count per task instance (sync_file_range shown alongside).
fsyncs() {
  local dir=$1 area=$2
  if ! command -v strace > /dev/null 2>&1; then
    echo "fsync count: skipped (strace not found on PATH; apt-get install strace)"
    return
  fi
  rm -rf "$dir/.drover" "$area"
  mkdir -p "$area"
  if ! strace -f -c -e trace=fsync,fdatasync,sync_file_range -o "$work/strace.txt" \
      "$bin" apply --auto-approve --color never "$dir" > "$work/out.txt" 2> "$work/err.txt"; then
    if [ ! -s "$work/strace.txt" ]; then
      echo "fsync count: skipped (strace could not trace drover: $(head -n 1 "$work/err.txt"))"
      return
    fi
    echo "fsync count: drover apply failed under strace:" >&2
    cat "$work/out.txt" "$work/err.txt" >&2
    exit 1
  fi
  # strace -c table: "% time  seconds  usecs/call  calls  [errors]  syscall"; calls is field 4.
  local fsync fdatasync sfr
  fsync=$(awk '$NF == "fsync" { print $4 }' "$work/strace.txt")
  fdatasync=$(awk '$NF == "fdatasync" { print $4 }' "$work/strace.txt")
  sfr=$(awk '$NF == "sync_file_range" { print $4 }' "$work/strace.txt")
  fsync=${fsync:-0} fdatasync=${fdatasync:-0} sfr=${sfr:-0}
  printf 'fsync+fdatasync (first apply, fresh state): %d  (fsync %d, fdatasync %d, sync_file_range %d)\n' \
    $((fsync + fdatasync)) "$fsync" "$fdatasync" "$sfr"
  printf 'fsync+fdatasync per instance: %s\n' \
    "$(awk -v n=$((fsync + fdatasync)) -v t="$tasks" 'BEGIN { printf "%.2f", n / t }')"
}

manifests "$work/manifests" "$work/area" 10
echo "apply: 1 host x $tasks tasks (half files, half commands), local transport"
measure first "$work/manifests"
measure no-op "$work/manifests"

manifests "$work/chain" "$work/chain-area" 0
echo
echo "apply: 1 host x $tasks tasks, one chain (half files, half commands), local transport"
measure first "$work/chain"
measure no-op "$work/chain"
fsyncs "$work/chain" "$work/chain-area"
