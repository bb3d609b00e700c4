#!/usr/bin/env bash
# SSH apply benchmark against a fleet of real sshd daemons on 127.0.0.1.
#
#   bash e2e/bench.sh            (needs root for sshd; installs nothing)
#
# W(H, T): H hosts in {1, 4}, T tasks per host in {20, 200}; every task writes a ~200-byte
# file and every fifth also runs a shell command, chained per host. For each: drover's first
# run and no-op second run (wall time, SSH connections and channels, peak RSS), side by side
# with two floors that do the same remote work with the OpenSSH client and ControlMaster:
# one `ssh` command per task, and one script per host. BENCH_SIZES="1:200 4:200" picks
# workloads (H:T pairs; default all four). "hosts CPU" is what the sshd daemons and
# everything they ran used during drover's run. Then `drover drift` (every file
# probed; round trips counted) next to one fresh `ssh host sh -s` per host that hashes the
# same files.
#   DROVER_BIN=/path/to/drover bash e2e/bench.sh   (that binary, no build: to compare two)
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
sshd=$(command -v sshd || echo /usr/sbin/sshd)
work=$(mktemp -d /tmp/drover-bench.XXXXXX)
pids=()
# The daemons run in a cpuacct cgroup where the machine offers one (root, cgroup v1), so
# "hosts CPU" counts everything they start, even processes that outlive the shell that
# started them (and so are never reaped by a daemon); otherwise it counts reaped children.
cg=
if [ -w /sys/fs/cgroup/cpuacct ] && mkdir "/sys/fs/cgroup/cpuacct/drover-bench-$$" 2>/dev/null; then
  cg=/sys/fs/cgroup/cpuacct/drover-bench-$$
fi
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
  if [ -n "$cg" ]; then
    for _ in $(seq 20); do rmdir "$cg" 2>/dev/null && break; sleep 0.1; done
  fi
}
trap cleanup EXIT
user=root
if [ "$(id -u)" = 0 ]; then
  id drover-e2e >/dev/null 2>&1 || useradd -m -s /bin/sh drover-e2e
  user=drover-e2e
fi
mkdir -p /run/sshd "$work/keys"
chmod 755 "$work"
ssh-keygen -q -t ed25519 -N '' -f "$work/keys/client"
cp "$work/keys/client.pub" "$work/keys/authorized_keys"
chmod 644 "$work/keys/authorized_keys"
: > "$work/known_hosts"
ports=()
for h in 1 2 3 4; do
  port=$((23000 + RANDOM % 20000))
  ssh-keygen -q -t ed25519 -N '' -f "$work/keys/host$h"
  mkdir -p "$work/root$h"; chown "$user" "$work/root$h"
  cat > "$work/sshd$h.conf" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $work/keys/host$h
PidFile $work/sshd$h.pid
AuthorizedKeysFile $work/keys/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
CONF
  (
    if [ -n "$cg" ]; then echo "$BASHPID" > "$cg/cgroup.procs"; fi
    exec "$sshd" -D -e -f "$work/sshd$h.conf" 2> "$work/sshd$h.log"
  ) &
  pids+=($!)
  ports+=("$port")
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/keys/host$h.pub")" >> "$work/known_hosts"
done
for port in "${ports[@]}"; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done
done
payload=$(head -c 170 /dev/zero | tr '\0' 'x')

manifests() { # hosts tasks dir
  local hosts=$1 tasks=$2 dir=$3
  mkdir -p "$dir"
  : > "$dir/hosts.yaml"
  for h in $(seq 1 "$hosts"); do
    rm -rf "$work/root$h/bench"
    cat >> "$dir/hosts.yaml" <<YAML
---
apiVersion: drover/v1
kind: Host
metadata: {name: host-$h, labels: {bench: "yes"}}
spec: {address: 127.0.0.1, port: ${ports[$((h-1))]}, user: $user, identityFile: $work/keys/client, knownHostsFile: $work/known_hosts, vars: {root: $work/root$h}}
YAML
  done
  {
    printf 'apiVersion: drover/v1\nkind: Workflow\nmetadata: {name: w}\nspec:\n  hosts: {matchLabels: {bench: "yes"}}\n  tasks:\n'
    printf '    - {name: t0, run: {command: "mkdir -p {{ root }}/bench", creates: "{{ root }}/bench"}}\n'
    for i in $(seq 1 "$tasks"); do
      printf '    - {name: f%d, needs: [%s], file: {path: "{{ root }}/bench/f%d", content: "file %d %s\\n"}}\n' "$i" "$([ "$i" = 1 ] && echo t0 || echo f$((i-1)))" "$i" "$i" "$payload"
      if [ $((i % 5)) -eq 0 ]; then
        printf '    - {name: r%d, needs: [f%d], run: "echo %d >> {{ root }}/bench/log"}\n' "$i" "$i" "$i"
      fi
    done
  } > "$dir/w.yaml"
}

# CPU seconds the sshd daemons and everything they ran (sessions, shells, commands) used so
# far: from the cgroup, or the daemons' reaped children from /proc. Where the remote side's
# time goes.
hosts_cpu() { # seconds
  if [ -n "$cg" ]; then
    awk '{printf "%.3f", $1 / 1e9}' "$cg/cpuacct.usage"
    return
  fi
  local total=0 p
  for p in "${pids[@]}"; do
    [ -r "/proc/$p/stat" ] || continue
    total=$((total + $(awk '{print $16 + $17}' "/proc/$p/stat")))
  done
  echo "$total $(getconf CLK_TCK)" | awk '{printf "%.3f", $1 / $2}'
}

run_drover() { # label dir
  local label=$1 dir=$2 before after
  before=$(hosts_cpu)
  /usr/bin/time -v "$bin" apply --auto-approve --color never --report "$work/report.json" "$dir" > "$work/out" 2> "$work/time"
  sleep 0.2 # the daemons reap their sessions just after drover hangs up
  after=$(hosts_cpu)
  local wall rss conns chans cpu
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$work/time")
  wall=$(grep 'Elapsed (wall clock)' "$work/time" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(grep 'Maximum resident set size' "$work/time" | awk '{print $NF/1024}')
  conns=$(python3 -c "import json;print(json.load(open('$work/report.json'))['contacts']['connections'])")
  chans=$(python3 -c "import json;print(json.load(open('$work/report.json'))['contacts']['channels'])")
  printf '  %-22s %7.3fs  connections %3s  channels %5s  peak RSS %5.1f MiB  drover CPU %5.2fs  hosts CPU %5.2fs\n' "$label" "$wall" "$conns" "$chans" "$rss" "$cpu" "$(echo "$before $after" | awk '{printf "%.2f", $2 - $1}')"
}

run_drift() { # dir
  local dir=$1 start end trips
  start=$(date +%s.%N)
  "$bin" drift --format json --color never "$dir" > "$work/drift.json"
  end=$(date +%s.%N)
  trips=$(python3 -c "import json;print(sum(h['roundTrips'] for h in json.load(open('$work/drift.json'))['hosts']))")
  printf '  %-22s %7.3fs  round trips %3s\n' "drover drift" "$(echo "$end $start" | awk '{print $1-$2}')" "$trips"
}

drift_floor() { # hosts: one fresh `ssh host sh -s` per host that hashes the same files
  local hosts=$1 start end
  local jobs=()
  local opts=(-i "$work/keys/client" -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes)
  start=$(date +%s.%N)
  for h in $(seq 1 "$hosts"); do
    printf 'cd %s/bench && sha256sum f* > /dev/null\n' "$work/root$h" | ssh "${opts[@]}" -p "${ports[$((h-1))]}" "$user@127.0.0.1" sh -s &
    jobs+=($!)
  done
  wait "${jobs[@]}"
  end=$(date +%s.%N)
  printf '  %-22s %7.3fs\n' "ssh: sh -s hashing files" "$(echo "$end $start" | awk '{print $1-$2}')"
}

floor_line() { # label start end hosts-CPU-before
  sleep 0.2 # the daemons reap their sessions just after the client hangs up
  printf '  %-22s %7.3fs  %66s hosts CPU %5.2fs\n' "$1" "$(echo "$3 $2" | awk '{print $1-$2}')" "" \
    "$(echo "$4 $(hosts_cpu)" | awk '{printf "%.2f", $2 - $1}')"
}

floor() { # hosts tasks
  local hosts=$1 tasks=$2 start end before
  local jobs=()
  local opts=(-i "$work/keys/client" -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes -o ControlMaster=auto -o ControlPath="$work/cm-%p" -o ControlPersist=60)
  for h in $(seq 1 "$hosts"); do rm -rf "$work/root$h/bench"; ssh "${opts[@]}" -p "${ports[$((h-1))]}" "$user@127.0.0.1" true; done
  before=$(hosts_cpu)
  start=$(date +%s.%N)
  for h in $(seq 1 "$hosts"); do
    (
      p=${ports[$((h-1))]}; r=$work/root$h
      ssh "${opts[@]}" -p "$p" "$user@127.0.0.1" "mkdir -p $r/bench"
      for i in $(seq 1 "$tasks"); do
        printf 'file %d %s\n' "$i" "$payload" | ssh "${opts[@]}" -p "$p" "$user@127.0.0.1" "cat > $r/bench/.f$i.tmp && mv $r/bench/.f$i.tmp $r/bench/f$i"
        if [ $((i % 5)) -eq 0 ]; then ssh "${opts[@]}" -p "$p" "$user@127.0.0.1" "echo $i >> $r/bench/log"; fi
      done
    ) &
    jobs+=($!)
  done
  wait "${jobs[@]}"; jobs=()
  end=$(date +%s.%N)
  floor_line "ssh: one cmd per task" "$start" "$end" "$before"
  before=$(hosts_cpu)
  start=$(date +%s.%N)
  for h in $(seq 1 "$hosts"); do
    (
      p=${ports[$((h-1))]}; r=$work/root$h
      script="mkdir -p $r/bench"
      for i in $(seq 1 "$tasks"); do
        script="$script; printf 'file %d %s\\\\n' $i $payload > $r/bench/f$i"
        if [ $((i % 5)) -eq 0 ]; then script="$script; echo $i >> $r/bench/log"; fi
      done
      ssh "${opts[@]}" -p "$p" "$user@127.0.0.1" "$script"
    ) &
    jobs+=($!)
  done
  wait "${jobs[@]}"; jobs=()
  end=$(date +%s.%N)
  floor_line "ssh: one script per host" "$start" "$end" "$before"
  for h in $(seq 1 "$hosts"); do ssh "${opts[@]}" -p "${ports[$((h-1))]}" -O exit "$user@127.0.0.1" 2>/dev/null || true; done
}

# BENCH_SIZES="4:200" runs only those workloads (H:T pairs, space-separated).
for size in ${BENCH_SIZES:-1:20 1:200 4:20 4:200}; do
  hosts=${size%%:*} tasks=${size##*:}
  {
    dir=$work/m-$hosts-$tasks
    manifests "$hosts" "$tasks" "$dir"
    echo "W(H=$hosts, T=$tasks): $((hosts * (tasks + tasks / 5 + 1))) instances"
    run_drover "drover first run" "$dir"
    run_drover "drover no-op" "$dir"
    run_drift "$dir"
    drift_floor "$hosts"
    floor "$hosts" "$tasks"
  }
done
