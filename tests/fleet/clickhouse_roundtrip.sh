#!/usr/bin/env bash
# fleet.clickhouse_roundtrip: two hosts' series into a real ClickHouse and back, exactly.
# Host "vm": samples/*.sqlite (schema 1), one of them given twice (exported once). Host
# "fleet-b": a live capture by the built sockrewind-collect in a private network and UTS
# namespace with a full listener, CLOSE-WAIT sockets and a UDP receiver that drops. Both are
# exported with `sockrewind-analyze export --to clickhouse`, loaded with
# scripts/load_clickhouse.sh into a clickhouse-server this test starts on loopback with its own
# config in a temporary directory, and checked: rows per table against SQLite's counts, every
# socket's cookie/inode/addresses/ports and every counter bit for bit, and README's fleet
# queries (scripts/fleet_queries) naming the same subjects as `report` on the same files.
# Needs root and the Debian packages clickhouse-server, clickhouse-client (install-deps.sh);
# exits 4 (skip) without them.
#   clickhouse_roundtrip.sh ANALYZE_BIN COLLECT_BIN SOURCE_DIR
set -euo pipefail
analyze=$1 collect=$2 src=$3
skip() { echo "SKIP: $*"; exit 4; }
fail() { echo "FAIL: $*" >&2; exit 1; }
for b in clickhouse-server clickhouse-client sqlite3 jq python3 unshare; do
  command -v "$b" >/dev/null || skip "$b is not installed (tests/scripts/install-deps.sh)"
done
((EUID == 0)) || skip "needs root (network namespace for the live capture)"

tmp=$(mktemp -d /tmp/sockrewind-fleet.XXXXXX)
ns=srfleet$$
server_pid='' scenario_pid=''
cleanup() {
  [[ -n $scenario_pid ]] && kill "$scenario_pid" 2>/dev/null
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  ip netns del "$ns" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
start=$SECONDS

# --- host fleet-b: a live capture ------------------------------------------------------------
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" python3 - "$tmp/ready" <<'PY' &
import socket, sys, time
# A listener that never accepts (backlog 1): its accept queue stays full, SYNs overflow.
l = socket.socket(); l.bind(('127.0.0.1', 7401)); l.listen(1)
clients = []
def knock():
    c = socket.socket(); c.setblocking(False); c.connect_ex(('127.0.0.1', 7401)); clients.append(c)
for _ in range(3):
    knock()
# A server that never closes after its clients did: three sockets in CLOSE-WAIT.
s = socket.socket(); s.bind(('127.0.0.1', 7402)); s.listen(16)
kept = []
for _ in range(3):
    c = socket.create_connection(('127.0.0.1', 7402)); a, _ = s.accept(); kept.append(a); c.close()
# A UDP receiver with a small buffer that never reads: RcvbufErrors grow.
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048); u.bind(('127.0.0.1', 7403))
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
open(sys.argv[1], 'w').close()
while True:
    for _ in range(100):
        tx.sendto(b'x' * 512, ('127.0.0.1', 7403))
    knock()
    time.sleep(0.5)
PY
scenario_pid=$!
for _ in $(seq 100); do [[ -e $tmp/ready ]] && break; sleep 0.1; done
[[ -e $tmp/ready ]] || fail "the scenario did not start"
mkdir "$tmp/hostb"
ip netns exec "$ns" unshare --uts sh -c \
  "hostname fleet-b && exec '$collect' --netns self --quiet --count 7 --interval 1 --out '$tmp/hostb'" \
  >/dev/null
kill "$scenario_pid"
scenario_pid=''
mapfile -t live < <(ls "$tmp"/hostb/*.sqlite)
((${#live[@]} >= 1)) || fail "no live capture"
# pack joins the runs of consecutive snapshots (schema 3): the export expands them again.
"$analyze" pack "${live[@]}" -o "$tmp/hostb.sqlite" >/dev/null 2>&1 || fail "pack"
[[ $(sqlite3 -readonly "$tmp/hostb.sqlite" "SELECT count(*) FROM sock_runs WHERE last_snapshot_id > first_snapshot_id") -gt 0 ]] \
  || fail "the packed capture has no run longer than one snapshot"
samples=("$src"/samples/*.sqlite)
inputs=("${samples[@]}" "$tmp/hostb.sqlite")

# --- export (a file given twice is exported once) ----------------------------------------------
"$analyze" export "${inputs[@]}" "$src/samples/close-wait-leak.sqlite" --to clickhouse \
  --out "$tmp/export" >/dev/null 2>"$tmp/export.err" || { cat "$tmp/export.err"; fail "export"; }
grep -q "duplicates skipped" "$tmp/export.err" || fail "the duplicate file was not noticed"

# --- a ClickHouse server of our own --------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tcp_port=$(free_port) http_port=$(free_port)
ch=$tmp/ch
mkdir -p "$ch"/{data,tmp,user_files,format_schemas,log}
cat >"$ch/config.xml" <<XML
<yandex>
  <logger><level>warning</level><log>$ch/log/server.log</log><errorlog>$ch/log/error.log</errorlog></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$tcp_port</tcp_port>
  <http_port>$http_port</http_port>
  <path>$ch/data/</path>
  <tmp_path>$ch/tmp/</tmp_path>
  <user_files_path>$ch/user_files/</user_files_path>
  <format_schema_path>$ch/format_schemas/</format_schema_path>
  <users_config>$ch/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
</yandex>
XML
cat >"$ch/users.xml" <<XML
<yandex>
  <profiles><default/></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default/></quotas>
</yandex>
XML
clickhouse-server --config-file="$ch/config.xml" >"$ch/log/stdout" 2>&1 &
server_pid=$!
q() { clickhouse-client --port "$tcp_port" --database sr --query "$1"; }
for _ in $(seq 120); do
  clickhouse-client --port "$tcp_port" --query 'SELECT 1' >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$ch/log/stdout" "$ch/log/error.log"; fail "clickhouse-server exited"; }
  sleep 0.25
done
clickhouse-client --port "$tcp_port" --query 'SELECT 1' >/dev/null || fail "clickhouse-server did not answer"
"$src/scripts/load_clickhouse.sh" --port "$tcp_port" --database sr --analyze "$analyze" "$tmp/export"

# --- rows per table: SQLite's counts over the distinct files ------------------------------------
sq() { sqlite3 -readonly -separator $'\t' -nullvalue '\N' "$@"; }
count() { # SQL per file, summed
  local n=0 f
  for f in "${inputs[@]}"; do n=$((n + $(sq "$f" "$1"))); done
  echo "$n"
}
check_count() {
  local table=$1 want=$2 have
  have=$(q "SELECT count() FROM $table")
  [[ $have == "$want" ]] || fail "$table: ClickHouse has $have rows, the files $want"
  echo "ok: $table $have rows"
}
for t in snapshots sockets processes counters limits capture_issues; do
  check_count "$t" "$(count "SELECT count(*) FROM $t")"
done
check_count owners "$(count "SELECT (SELECT count(*) FROM sockets WHERE pid IS NOT NULL) + (SELECT count(*) FROM extra_owners)")"
[[ $(q "SELECT count(DISTINCT host) FROM snapshots") == 2 ]] || fail "not two hosts"
[[ $(q "SELECT version FROM sockrewind_schema") == $("$analyze" export --to clickhouse --ddl | sed -n '1s/.*schema \([0-9]*\).*/\1/p') ]] \
  || fail "schema version"

# --- values bit for bit: every socket's identity, every counter --------------------------------
for f in "${inputs[@]}"; do
  sq "$f" "SELECT sn.host, sn.boottime_ns, n.inode, s.inode, s.cookie, la.text, s.local_port,
                  ra.text, s.remote_port, s.state, s.rx_queue, s.tx_queue, s.pid, s.path,
                  s.timer, s.expires_ms, s.ti_last_data_recv_ms, s.ti_last_ack_recv_ms,
                  s.ti_bytes_acked
           FROM sockets s JOIN snapshots sn USING (snapshot_id) JOIN netns n USING (netns_id)
           LEFT JOIN addrs la ON la.addr_id = s.local_addr_id
           LEFT JOIN addrs ra ON ra.addr_id = s.remote_addr_id"
done | sort >"$tmp/sockets.sqlite.tsv"
q "SELECT host, boottime_ns, netns, inode, toInt64(cookie), local_addr, local_port, remote_addr,
          remote_port, state, rx_queue, tx_queue, pid, path, timer, expires_ms,
          ti_last_data_recv_ms, ti_last_ack_recv_ms, toInt64(ti_bytes_acked)
   FROM sockets FORMAT TabSeparated" \
  | sort >"$tmp/sockets.ch.tsv"
cmp -s "$tmp/sockets.sqlite.tsv" "$tmp/sockets.ch.tsv" \
  || { diff "$tmp/sockets.sqlite.tsv" "$tmp/sockets.ch.tsv" | head; fail "sockets differ"; }
[[ $(grep -c '' "$tmp/sockets.ch.tsv") -gt 100 ]] || fail "too few sockets compared"
echo "ok: $(grep -c '' "$tmp/sockets.ch.tsv") sockets' cookies, inodes, addresses, timers equal"
for f in "${inputs[@]}"; do
  sq "$f" "SELECT sn.host, sn.boottime_ns, n.inode, c.file, c.name, c.value
           FROM counters c JOIN snapshots sn USING (snapshot_id) JOIN netns n USING (netns_id)"
done | sort >"$tmp/counters.sqlite.tsv"
q "SELECT host, boottime_ns, netns, file, name, toInt64(value) FROM counters FORMAT TabSeparated" \
  | sort >"$tmp/counters.ch.tsv"
cmp -s "$tmp/counters.sqlite.tsv" "$tmp/counters.ch.tsv" \
  || { diff "$tmp/counters.sqlite.tsv" "$tmp/counters.ch.tsv" | head; fail "counters differ"; }
echo "ok: $(grep -c '' "$tmp/counters.ch.tsv") counter values equal"
# A cookie as ClickHouse's UInt64 is the kernel's u64: the file's signed 64 bits mod 2^64.
read -r c_sqlite < <(sq "$tmp/hostb.sqlite" "SELECT cookie FROM sockets WHERE cookie IS NOT NULL ORDER BY cookie LIMIT 1")
c_ch=$(q "SELECT toString(cookie) FROM sockets WHERE host = 'fleet-b' AND toInt64(cookie) = $c_sqlite LIMIT 1")
[[ $c_ch == $(python3 -c "print($c_sqlite % 2**64)") ]] || fail "cookie $c_sqlite reads $c_ch"

# --- README's fleet queries name report's subjects ---------------------------------------------
"$analyze" report "${inputs[@]}" --format json >"$tmp/report.json"
subjects() { jq -r --arg d "$1" ".findings[] | select(.detector == \$d) | .subject | $2" "$tmp/report.json" | sort -u; }
query() { sed '/^--/d' "$src/scripts/fleet_queries/$1.sql"; }
for name in listeners_backlogged close_wait_per_process counter_deltas; do # README quotes them
  python3 -c 'import sys; sys.exit(sys.argv[1] not in open(sys.argv[2]).read())' \
    "$(query "$name")" "$src/README.md" || fail "README does not quote scripts/fleet_queries/$name.sql"
done
same() {
  local what=$1 want=$2 have=$3
  [[ -n $want ]] || fail "$what: report found nothing to compare"
  [[ $want == "$have" ]] || fail "$what: report names [$want], ClickHouse [$have]"
  echo "ok: $what: $(tr '\n' ' ' <<<"$have")"
}
same "listeners whose accept queue stayed non-empty" \
  "$(subjects accept_queue_backlog '"\(.host) \(.netns) \(.local)"')" \
  "$(q "SELECT DISTINCT concat(host, ' ', toString(netns), ' ',
          if(position(local_addr, ':') > 0, concat('[', local_addr, ']'), local_addr), ':',
          toString(local_port)) FROM ($(query listeners_backlogged))" | sort -u)"
same "processes with CLOSE-WAIT sockets" \
  "$(subjects close_wait_leak '"\(.host) \(.pid)"')" \
  "$(q "SELECT DISTINCT concat(host, ' ', toString(pid)) FROM ($(query close_wait_per_process))
        WHERE oldest_s >= 4" | sort -u)"
same "ListenOverflows per host and netns" \
  "$(subjects listen_overflow '"\(.host) \(.netns)"')" \
  "$(q "SELECT DISTINCT concat(host, ' ', toString(netns)) FROM ($(query counter_deltas))
        WHERE name = 'TcpExt.ListenOverflows'" | sort -u)"
same "RcvbufErrors per host and netns" \
  "$(subjects udp_drops '"\(.host) \(.netns)"')" \
  "$(q "SELECT DISTINCT concat(host, ' ', toString(netns)) FROM ($(query counter_deltas))
        WHERE name = 'Udp.RcvbufErrors'" | sort -u)"
grep -q 'fleet-b' <<<"$(q "SELECT DISTINCT host FROM ($(query counter_deltas))")" \
  || fail "the live host has no counter deltas"
echo "PASS in $((SECONDS - start)) s"
