#!/usr/bin/env bash
# The daemon's footprint and reaction time, over the local transport.
#
#   bash benches/watch.sh            (builds target/release/drover; DROVER_BIN=… to skip)
#
# Prints: the stripped size of the shipped build (`cargo build --profile dist`, when
# target/dist/drover exists; build it first, it takes minutes), save → applied latency
# (median of 10 edits, debounce 100 ms), and over a 100-instance state: idle RSS after the
# first round and CPU (user + sys) used over 60 idle seconds.
set -euo pipefail
bin=
if [ -n "${DROVER_BIN:-}" ]; then
  bin=$(command -v -- "$DROVER_BIN") || { echo "DROVER_BIN=$DROVER_BIN: not an executable" >&2; exit 1; }
  case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
fi
cd "$(dirname "$0")/.."
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=$PWD/target/release/drover
fi
idle=${IDLE_SECS:-60}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

for dist in target/dist/drover "${CARGO_TARGET_DIR:-target}/dist/drover"; do
  if [ -x "$dist" ]; then
    printf 'binary: %s bytes (%.1f MiB, dist profile, stripped)\n' "$(stat -c %s "$dist")" "$(awk -v b="$(stat -c %s "$dist")" 'BEGIN { print b / 1048576 }')"
    break
  fi
done

dir=$work/manifests area=$work/area
mkdir -p "$dir" "$area"
printf 'apiVersion: drover/v1\nkind: Host\nmetadata: {name: box}\nspec: {transport: local, vars: {dir: "%s"}}\n' "$area" > "$dir/hosts.yaml"
write_workflow() { # VERSION
  {
    printf 'apiVersion: drover/v1\nkind: Workflow\nmetadata: {name: app}\nspec:\n  hosts: {names: [box]}\n  tasks:\n'
    for i in $(seq 1 99); do
      printf '    - {name: f%d, file: {path: "{{ dir }}/f%d", content: "file %d\\n"}}\n' "$i" "$i" "$i"
    done
    printf '    - {name: version, file: {path: "{{ dir }}/version", content: "%s\\n"}}\n' "$1"
  } > "$dir/app.yaml.tmp"
  mv "$dir/app.yaml.tmp" "$dir/app.yaml"
}
write_workflow 0
"$bin" watch --debounce 100ms --drift-interval 0 --color never "$dir" 2> "$work/watch.log" &
pid=$!
now_ms() { local t=$EPOCHREALTIME; echo $(( ${t/[.,]/} / 1000 )); }
wait_for() { # FILE CONTENT
  local deadline=$(( $(now_ms) + 20000 ))
  until [ "$(cat "$1" 2>/dev/null)" = "$2" ]; do
    [ "$(now_ms)" -lt "$deadline" ] || { echo "timed out; log:" >&2; cat "$work/watch.log" >&2; exit 1; }
    sleep 0.005
  done
}
wait_for "$area/version" 0
latencies=()
for v in $(seq 1 10); do
  sleep 0.3
  start=$(now_ms)
  write_workflow "$v"
  wait_for "$area/version" "$v"
  latencies+=($(( $(now_ms) - start )))
done
sorted=$(printf '%s\n' "${latencies[@]}" | sort -n | tr '\n' ' ')
median=$(printf '%s\n' "${latencies[@]}" | sort -n | sed -n 5p)
echo "save -> applied: median ${median} ms over 10 edits (debounce 100 ms; all: ${sorted})"

sleep 1
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
before=$(ticks)
sleep "$idle"
after=$(ticks)
hz=$(getconf CLK_TCK)
printf 'idle: RSS %.1f MiB over a 100-instance state; CPU %.2f s (user+sys) over %s s\n' \
  "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$(awk -v t=$((after - before)) -v hz="$hz" 'BEGIN { print t / hz }')" "$idle"
