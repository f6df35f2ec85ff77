#!/usr/bin/env bash
# The main job: install what is missing, build, collect a short series on this host, show what
# was captured and print the analysis (`sockrewind-analyze report`). Run as root from the
# repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DWARNINGS_AS_ERRORS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target sockrewind-collect sockrewind-analyze >/dev/null
out=${SOCKREWIND_OUT:-/var/lib/sockrewind}
file=$(build/collector/sockrewind-collect --out "$out" --count 5 --interval 1)
echo "== $file"
sqlite3 -readonly -box "$file" "
  SELECT snapshot_id AS snap, strftime('%H:%M:%S', realtime_ns/1e9, 'unixepoch') AS utc,
         sockets, issues, (realtime_end_ns - realtime_ns)/1000000 AS ms, sources
  FROM snapshots;
  SELECT proto, state, count(*) AS sockets, sum(rx_queue) AS recv_q, sum(tx_queue) AS send_q
  FROM sockets_v WHERE snapshot_id = (SELECT max(snapshot_id) FROM snapshots)
  GROUP BY proto, state ORDER BY sockets DESC;
  SELECT local, rx_queue AS accept_q, tx_queue AS backlog, pid, comm
  FROM sockets_v WHERE snapshot_id = (SELECT max(snapshot_id) FROM snapshots)
    AND state = 'LISTEN' AND proto = 'tcp' ORDER BY rx_queue DESC LIMIT 10;
  SELECT source, kind, sum(count) AS count, min(example) AS example
  FROM capture_issues GROUP BY source, kind;"
echo; build/analyzer/sockrewind-analyze info "$file"
echo; build/analyzer/sockrewind-analyze report "$file"
