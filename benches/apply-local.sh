#!/usr/bin/env bash
# Apply benchmark over the local transport: 1 host × N tasks (default 500), alternating a
# ~200-byte file and a shell command, chained in groups of 10. Reports wall time, tasks/s
# and peak RSS for the first run and for the no-op second run.
#
#   bash benches/apply-local.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-500}
cargo build --release --quiet
bin=$PWD/target/release/drover
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/manifests" "$work/area"
cat > "$work/manifests/host.yaml" <<YAML
apiVersion: drover/v1
kind: Host
metadata: {name: bench}
spec: {transport: local, vars: {dir: "$work/area"}}
YAML
{
  printf 'apiVersion: drover/v1\nkind: Workflow\nmetadata: {name: load}\nspec:\n  hosts: {names: [bench]}\n  tasks:\n'
  for i in $(seq 0 $((tasks - 1))); do
    needs=""
    if [ $((i % 10)) -ne 0 ]; then needs="needs: [t$((i - 1))], "; fi
    if [ $((i % 2)) -eq 0 ]; then
      printf '    - {name: t%d, %sfile: {path: "{{ dir }}/f%d.conf", content: "# generated file %d for the apply benchmark\\nkey_%d = value-%d\\n%s\\n"}}\n' \
        "$i" "$needs" "$i" "$i" "$i" "$i" "$(head -c 120 /dev/zero | tr '\0' 'x')"
    else
      printf '    - {name: t%d, %srun: "echo %d >> {{ dir }}/log"}\n' "$i" "$needs" "$i"
    fi
  done
} > "$work/manifests/load.yaml"

measure() {
  local label=$1
  /usr/bin/time -v "$bin" apply --auto-approve --color never "$work/manifests" > "$work/out.txt" 2> "$work/time.txt"
  local wall rss
  wall=$(grep 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
  rss=$(grep 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
  local secs
  secs=$(echo "$wall" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  printf '%-8s wall %6.3fs  %8.1f tasks/s  peak RSS %6.1f MiB  (%s)\n' "$label" "$secs" \
    "$(echo "$tasks $secs" | awk '{ if ($2 > 0) print $1/$2; else print 0 }')" \
    "$(echo "$rss" | awk '{print $1/1024}')" "$(tail -n 3 "$work/out.txt" | head -n 1)"
}
echo "apply: 1 host x $tasks tasks (half files, half commands), local transport"
measure first
measure no-op
