#!/usr/bin/env bash
# SSH apply benchmark against a fleet of real sshd daemons on 127.0.0.1.
#
#   bash e2e/bench.sh            (needs root for sshd; installs nothing)
#
# W(H, T): H hosts in {1, 4}, T tasks per host in {20, 200}; every task writes a ~200-byte
# file and every fifth also runs a shell command, chained per host. For each: drover's first
# run and no-op second run (wall time, SSH connections and channels, peak RSS), side by side
# with floors that do the same remote work with the OpenSSH client:
#   one script per host   one plain `ssh host sh -s < script` per host, all hosts at once: a
#                         fresh connection each, as drover's first run makes. drover's first
#                         run is also printed as a multiple of this floor.
#   ... pre-connected     the same script over a ControlMaster connection opened before the
#                         clock starts (no handshake at all: stricter than drover's case).
#   one cmd per task      one `ssh` per task over ControlMaster, as a shell loop would.
# BENCH_SIZES="1:200 4:200" picks workloads (H:T pairs; default all four). "hosts CPU" is
# what the sshd daemons and everything they ran used during that run. Then `drover drift`
# (every file probed; round trips counted) next to one fresh `ssh host sh -s` per host that
# hashes the same files.
#
# The hosts' files live on a tmpfs where the machine lets us mount one (root), and every
# measured run writes into directories of its own: this measures the SSH path, not the
# controller's disk. On a disk without a journal, ext4 skips inodes freed in the last minutes
# when it allocates new ones, so a run that follows any deletion on the machine pays for
# scanning past them (up to 0.6 ms a file on the machine this was written on), and the
# figures would depend on what ran before. drover's own state stays on disk, as in real use.
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
hostfs=$work/hosts
mkdir -p "$hostfs"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=512m,mode=755 drover-bench "$hostfs" 2>/dev/null; then
  mounted=1
else
  mounted=
  echo "note: the hosts' files are on $(df --output=fstype "$hostfs" | tail -1) (tmpfs needs root)"
fi
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$mounted" ]; then umount "$hostfs" 2>/dev/null || umount -l "$hostfs" || true; fi
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

ssh_opts=(-i "$work/keys/client" -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes)

# Sets $roots to directories no run has used yet, one per host ($roots/root<H>).
runs=0
fresh_roots() {
  runs=$((runs + 1))
  roots=$hostfs/$runs
  for h in 1 2 3 4; do mkdir -p "$roots/root$h"; chown "$user" "$roots/root$h"; done
}

manifests() { # hosts tasks dir (host H's files go under $roots/rootH)
  local hosts=$1 tasks=$2 dir=$3
  mkdir -p "$dir"
  : > "$dir/hosts.yaml"
  for h in $(seq 1 "$hosts"); do
    cat >> "$dir/hosts.yaml" <<YAML
---
apiVersion: drover/v1
kind: Host
metadata: {name: host-$h, labels: {bench: "yes"}}
spec: {address: 127.0.0.1, port: ${ports[$((h-1))]}, user: $user, identityFile: $work/keys/client, knownHostsFile: $work/known_hosts, vars: {root: $roots/root$h}}
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

run_drover() { # label dir; sets drover_wall
  local label=$1 dir=$2 before after
  before=$(hosts_cpu)
  /usr/bin/time -v "$bin" apply --auto-approve --color never --report "$work/report.json" "$dir" > "$work/out" 2> "$work/time"
  sleep 0.2 # the daemons reap their sessions just after drover hangs up
  after=$(hosts_cpu)
  local rss conns chans cpu
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$work/time")
  drover_wall=$(grep 'Elapsed (wall clock)' "$work/time" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(grep 'Maximum resident set size' "$work/time" | awk '{print $NF/1024}')
  conns=$(python3 -c "import json;print(json.load(open('$work/report.json'))['contacts']['connections'])")
  chans=$(python3 -c "import json;print(json.load(open('$work/report.json'))['contacts']['channels'])")
  printf '  %-22s %7.3fs  connections %3s  channels %5s  peak RSS %5.1f MiB  drover CPU %5.2fs  hosts CPU %5.2fs\n' "$label" "$drover_wall" "$conns" "$chans" "$rss" "$cpu" "$(echo "$before $after" | awk '{printf "%.2f", $2 - $1}')"
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
  start=$(date +%s.%N)
  for h in $(seq 1 "$hosts"); do
    printf 'cd %s/bench && sha256sum f* > /dev/null\n' "$roots/root$h" | ssh "${ssh_opts[@]}" -p "${ports[$((h-1))]}" "$user@127.0.0.1" sh -s &
    jobs+=($!)
  done
  wait "${jobs[@]}"
  end=$(date +%s.%N)
  printf '  %-22s %7.3fs\n' "ssh: sh -s hashing files" "$(echo "$end $start" | awk '{print $1-$2}')"
}

floor_line() { # label start end hosts-CPU-before; sets floor_wall
  sleep 0.2 # the daemons reap their sessions just after the client hangs up
  floor_wall=$(echo "$3 $2" | awk '{print $1-$2}')
  printf '  %-22s %7.3fs  %66s hosts CPU %5.2fs\n' "$1" "$floor_wall" "" \
    "$(echo "$4 $(hosts_cpu)" | awk '{printf "%.2f", $2 - $1}')"
}

# The script that does host H's work of W(hosts, tasks) under $roots/rootH, one command a line.
floor_script() { # host tasks
  local r=$roots/root$1 i
  echo "mkdir -p $r/bench"
  for i in $(seq 1 "$2"); do
    echo "printf 'file %d %s\\n' $i $payload > $r/bench/f$i"
    if [ $((i % 5)) -eq 0 ]; then echo "echo $i >> $r/bench/log"; fi
  done
}

# One script per host, all hosts at once: `ssh host sh -s < script`, over a fresh connection,
# or over a ControlMaster connection opened before the clock starts when given "pre".
script_floor() { # hosts tasks [pre]
  local hosts=$1 tasks=$2 pre=${3:-} start before h label="ssh: one script per host"
  local jobs=() opts=("${ssh_opts[@]}")
  fresh_roots
  for h in $(seq 1 "$hosts"); do floor_script "$h" "$tasks" > "$work/script$h"; done
  if [ -n "$pre" ]; then
    label="  ... pre-connected"
    opts+=(-o ControlMaster=auto -o ControlPath="$work/cm-%p" -o ControlPersist=60)
    for h in $(seq 1 "$hosts"); do ssh "${opts[@]}" -p "${ports[$((h-1))]}" "$user@127.0.0.1" true; done
  fi
  before=$(hosts_cpu)
  start=$(date +%s.%N)
  for h in $(seq 1 "$hosts"); do
    ssh "${opts[@]}" -p "${ports[$((h-1))]}" "$user@127.0.0.1" sh -s < "$work/script$h" &
    jobs+=($!)
  done
  wait "${jobs[@]}"
  floor_line "$label" "$start" "$(date +%s.%N)" "$before"
  if [ -n "$pre" ]; then
    for h in $(seq 1 "$hosts"); do ssh "${opts[@]}" -p "${ports[$((h-1))]}" -O exit "$user@127.0.0.1" 2>/dev/null || true; done
  fi
}

# One `ssh` per task over ControlMaster (opened before the clock starts), hosts at once.
per_task_floor() { # hosts tasks
  local hosts=$1 tasks=$2 start before h
  local jobs=() opts=("${ssh_opts[@]}" -o ControlMaster=auto -o ControlPath="$work/cm-%p" -o ControlPersist=60)
  fresh_roots
  for h in $(seq 1 "$hosts"); do ssh "${opts[@]}" -p "${ports[$((h-1))]}" "$user@127.0.0.1" true; done
  before=$(hosts_cpu)
  start=$(date +%s.%N)
  for h in $(seq 1 "$hosts"); do
    (
      p=${ports[$((h-1))]}; r=$roots/root$h
      ssh "${opts[@]}" -p "$p" "$user@127.0.0.1" "mkdir -p $r/bench"
      for i in $(seq 1 "$tasks"); do
        printf 'file %d %s\n' "$i" "$payload" | ssh "${opts[@]}" -p "$p" "$user@127.0.0.1" "cat > $r/bench/.f$i.tmp && mv $r/bench/.f$i.tmp $r/bench/f$i"
        if [ $((i % 5)) -eq 0 ]; then ssh "${opts[@]}" -p "$p" "$user@127.0.0.1" "echo $i >> $r/bench/log"; fi
      done
    ) &
    jobs+=($!)
  done
  wait "${jobs[@]}"
  floor_line "ssh: one cmd per task" "$start" "$(date +%s.%N)" "$before"
  for h in $(seq 1 "$hosts"); do ssh "${opts[@]}" -p "${ports[$((h-1))]}" -O exit "$user@127.0.0.1" 2>/dev/null || true; done
}

# BENCH_SIZES="4:200" runs only those workloads (H:T pairs, space-separated).
for size in ${BENCH_SIZES:-1:20 1:200 4:20 4:200}; do
  hosts=${size%%:*} tasks=${size##*:}
  {
    dir=$work/m-$hosts-$tasks
    fresh_roots
    manifests "$hosts" "$tasks" "$dir"
    echo "W(H=$hosts, T=$tasks): $((hosts * (tasks + tasks / 5 + 1))) instances"
    run_drover "drover first run" "$dir"
    first_wall=$drover_wall
    run_drover "drover no-op" "$dir"
    run_drift "$dir"
    drift_floor "$hosts"
    script_floor "$hosts" "$tasks"
    printf '  %-22s %7.1fx\n' "first run / floor" "$(echo "$first_wall $floor_wall" | awk '{print $1 / $2}')"
    script_floor "$hosts" "$tasks" pre
    per_task_floor "$hosts" "$tasks"
  }
done
