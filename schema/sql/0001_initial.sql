-- sockrewind schema v1. Forward-only: never edit a released migration, add 0002_*.sql instead.
-- Documented column by column in schema/README.md. All tables are STRICT.
-- Conventions: times are integer nanoseconds; durations say their unit in the column name;
-- NULL means "the source did not provide this value" (never "zero").

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

CREATE TABLE snapshots (
  snapshot_id      INTEGER PRIMARY KEY,
  host             TEXT    NOT NULL,
  boot_id          TEXT    NOT NULL,
  kernel           TEXT    NOT NULL,
  realtime_ns      INTEGER NOT NULL,
  boottime_ns      INTEGER NOT NULL,
  realtime_end_ns  INTEGER NOT NULL,
  boottime_end_ns  INTEGER NOT NULL,
  self_netns       INTEGER NOT NULL,
  euid             INTEGER NOT NULL,
  netns_mode       TEXT    NOT NULL,
  sources          TEXT    NOT NULL,
  sockets          INTEGER NOT NULL,
  issues           INTEGER NOT NULL,
  cpu_user_us      INTEGER,
  cpu_sys_us       INTEGER
) STRICT;

-- Network namespaces, numbered once per file (netns_id); inode is the nsfs inode of net:[N].
CREATE TABLE netns (
  netns_id INTEGER PRIMARY KEY,
  inode    INTEGER NOT NULL UNIQUE
) STRICT;

-- Which namespaces each snapshot captured and how they were found.
CREATE TABLE snapshot_netns (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  netns_id    INTEGER NOT NULL REFERENCES netns(netns_id),
  found_via   TEXT    NOT NULL,
  name        TEXT,
  pid         INTEGER,
  status      TEXT    NOT NULL,
  PRIMARY KEY (snapshot_id, netns_id)
) WITHOUT ROWID, STRICT;

-- Per snapshot, namespace and table: where the rows came from and whether that worked.
CREATE TABLE sources (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  netns_id    INTEGER REFERENCES netns(netns_id),
  source      TEXT    NOT NULL,
  method      TEXT    NOT NULL,
  status      TEXT    NOT NULL,
  rows        INTEGER NOT NULL,
  duration_us INTEGER NOT NULL,
  error       TEXT
) STRICT;

-- What the capture could not see: counted per kind, with one example.
CREATE TABLE capture_issues (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  netns_id    INTEGER REFERENCES netns(netns_id),
  source      TEXT    NOT NULL,
  kind        TEXT    NOT NULL,
  count       INTEGER NOT NULL,
  example     TEXT
) STRICT;

-- IP addresses, stored once per file; sockets refer to them by addr_id.
CREATE TABLE addrs (
  addr_id INTEGER PRIMARY KEY,
  family  INTEGER NOT NULL,
  addr    BLOB    NOT NULL UNIQUE,
  text    TEXT    NOT NULL
) STRICT;

-- One row per socket per snapshot. Kernel integers as integers; see schema/README.md for units.
CREATE TABLE sockets (
  sock_id           INTEGER PRIMARY KEY,
  snapshot_id       INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  netns_id          INTEGER NOT NULL REFERENCES netns(netns_id),
  family            INTEGER NOT NULL,
  type              INTEGER NOT NULL,
  proto             INTEGER NOT NULL,
  state             INTEGER NOT NULL,
  local_addr_id     INTEGER REFERENCES addrs(addr_id),
  local_port        INTEGER,
  remote_addr_id    INTEGER REFERENCES addrs(addr_id),
  remote_port       INTEGER,
  rx_queue          INTEGER,
  tx_queue          INTEGER,
  inode             INTEGER NOT NULL,
  cookie            INTEGER,
  uid               INTEGER,
  timer             INTEGER,
  expires_ms        INTEGER,
  retrans           INTEGER,
  shutdown          INTEGER,
  tos               INTEGER,
  skm_rmem_alloc    INTEGER,
  skm_rcvbuf        INTEGER,
  skm_wmem_alloc    INTEGER,
  skm_sndbuf        INTEGER,
  skm_fwd_alloc     INTEGER,
  skm_wmem_queued   INTEGER,
  skm_optmem        INTEGER,
  skm_backlog       INTEGER,
  skm_drops         INTEGER,
  path              TEXT,
  peer_inode        INTEGER,
  ti_rto_us         INTEGER,
  ti_rtt_us         INTEGER,
  ti_rttvar_us      INTEGER,
  ti_snd_cwnd       INTEGER,
  ti_unacked        INTEGER,
  ti_backoff        INTEGER,
  ti_probes         INTEGER,
  ti_total_retrans  INTEGER,
  ti_last_data_recv_ms INTEGER,
  ti_last_ack_recv_ms  INTEGER,
  ti_bytes_acked    INTEGER,
  ti_bytes_received INTEGER,
  ti_segs_out       INTEGER,
  ti_notsent_bytes  INTEGER,
  ti_snd_wnd        INTEGER,
  pid               INTEGER,
  fd                INTEGER
) STRICT;

-- Owners beyond the first (sockets.pid/fd): fork, dup, SCM_RIGHTS.
CREATE TABLE extra_owners (
  sock_id INTEGER NOT NULL REFERENCES sockets(sock_id),
  pid     INTEGER NOT NULL,
  fd      INTEGER NOT NULL,
  PRIMARY KEY (sock_id, pid, fd)
) WITHOUT ROWID, STRICT;

-- Processes that held at least one socket fd in the snapshot (identity = pid + start_ticks).
CREATE TABLE processes (
  snapshot_id   INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  pid           INTEGER NOT NULL,
  start_ticks   INTEGER NOT NULL,
  ppid          INTEGER,
  uid           INTEGER,
  netns_id      INTEGER REFERENCES netns(netns_id),
  comm          TEXT    NOT NULL,
  cmdline       TEXT,
  fd_count      INTEGER,
  socket_fds    INTEGER NOT NULL,
  nofile_soft   INTEGER,
  nofile_hard   INTEGER,
  PRIMARY KEY (snapshot_id, pid)
) WITHOUT ROWID, STRICT;

-- Full struct tcp_info, written only with `sockrewind-collect --tcp-info full`.
-- A NULL field was beyond the length the running kernel returned.
CREATE TABLE tcp_info (
  sock_id INTEGER PRIMARY KEY REFERENCES sockets(sock_id),
  cong TEXT,
  state INTEGER, ca_state INTEGER, retransmits INTEGER, probes INTEGER, backoff INTEGER,
  options INTEGER, snd_wscale INTEGER, rcv_wscale INTEGER, delivery_rate_app_limited INTEGER,
  fastopen_client_fail INTEGER,
  rto_us INTEGER, ato_us INTEGER, snd_mss INTEGER, rcv_mss INTEGER,
  unacked INTEGER, sacked INTEGER, lost INTEGER, retrans INTEGER, fackets INTEGER,
  last_data_sent_ms INTEGER, last_ack_sent_ms INTEGER, last_data_recv_ms INTEGER,
  last_ack_recv_ms INTEGER,
  pmtu INTEGER, rcv_ssthresh INTEGER, rtt_us INTEGER, rttvar_us INTEGER, snd_ssthresh INTEGER,
  snd_cwnd INTEGER, advmss INTEGER, reordering INTEGER,
  rcv_rtt_us INTEGER, rcv_space INTEGER, total_retrans INTEGER,
  pacing_rate INTEGER, max_pacing_rate INTEGER, bytes_acked INTEGER, bytes_received INTEGER,
  segs_out INTEGER, segs_in INTEGER,
  notsent_bytes INTEGER, min_rtt_us INTEGER, data_segs_in INTEGER, data_segs_out INTEGER,
  delivery_rate INTEGER, busy_time_us INTEGER, rwnd_limited_us INTEGER, sndbuf_limited_us INTEGER,
  delivered INTEGER, delivered_ce INTEGER, bytes_sent INTEGER, bytes_retrans INTEGER,
  dsack_dups INTEGER, reord_seen INTEGER, rcv_ooopack INTEGER, snd_wnd INTEGER,
  rcv_wnd INTEGER, rehash INTEGER, total_rto INTEGER, total_rto_recoveries INTEGER,
  total_rto_time_ms INTEGER,
  info_len INTEGER NOT NULL
) STRICT;

-- Kernel counters and gauges: /proc/net/{netstat,snmp,snmp6,sockstat,sockstat6}, per netns.
CREATE TABLE counters (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  netns_id    INTEGER NOT NULL REFERENCES netns(netns_id),
  file        TEXT    NOT NULL,
  name        TEXT    NOT NULL,
  value       INTEGER NOT NULL,
  PRIMARY KEY (snapshot_id, netns_id, file, name)
) WITHOUT ROWID, STRICT;

-- Limits (sysctls and file-nr), per netns where the kernel keeps them per netns.
CREATE TABLE limits (
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  netns_id    INTEGER NOT NULL REFERENCES netns(netns_id),
  name        TEXT    NOT NULL,
  value       TEXT    NOT NULL,
  PRIMARY KEY (snapshot_id, netns_id, name)
) WITHOUT ROWID, STRICT;

-- Convenience views for the sqlite3 shell (ss-style names and endpoints; port 0 shows as *).
-- Not used by sockrewind-analyze.
CREATE VIEW socket_owners AS
  SELECT sock_id, pid, fd FROM sockets WHERE pid IS NOT NULL
  UNION ALL
  SELECT sock_id, pid, fd FROM extra_owners;

CREATE VIEW sockets_v AS
  SELECT s.sock_id, s.snapshot_id,
         strftime('%Y-%m-%dT%H:%M:%fZ', sn.realtime_ns / 1e9, 'unixepoch') AS time,
         sn.host, n.inode AS netns,
         CASE s.family WHEN 1 THEN 'unix' WHEN 2 THEN 'inet' WHEN 10 THEN 'inet6'
                       ELSE s.family END AS family,
         CASE WHEN s.family = 1 THEN
                CASE s.type WHEN 1 THEN 'u_str' WHEN 2 THEN 'u_dgr' WHEN 5 THEN 'u_seq'
                            ELSE 'u_' || s.type END
              ELSE CASE s.proto WHEN 6 THEN 'tcp' WHEN 17 THEN 'udp' WHEN 136 THEN 'udplite'
                                WHEN 255 THEN 'raw' ELSE s.proto END END AS proto,
         CASE s.state WHEN 1 THEN 'ESTAB' WHEN 2 THEN 'SYN-SENT' WHEN 3 THEN 'SYN-RECV'
                      WHEN 4 THEN 'FIN-WAIT-1' WHEN 5 THEN 'FIN-WAIT-2' WHEN 6 THEN 'TIME-WAIT'
                      WHEN 7 THEN 'UNCONN' WHEN 8 THEN 'CLOSE-WAIT' WHEN 9 THEN 'LAST-ACK'
                      WHEN 10 THEN 'LISTEN' WHEN 11 THEN 'CLOSING' ELSE s.state END AS state,
         s.rx_queue, s.tx_queue,
         CASE WHEN s.family = 1 THEN coalesce(s.path, '*')
              ELSE iif(s.family = 10, '[' || la.text || ']', la.text) || ':'
                   || iif(s.local_port = 0, '*', s.local_port) END AS local,
         CASE WHEN s.family = 1 THEN coalesce(s.peer_inode, '*')
              ELSE iif(s.family = 10, '[' || ra.text || ']', ra.text) || ':'
                   || iif(s.remote_port = 0, '*', s.remote_port) END AS remote,
         s.inode, s.cookie, s.uid, s.pid, s.fd, p.comm, p.cmdline
  FROM sockets s
  JOIN snapshots sn USING (snapshot_id)
  JOIN netns n ON n.netns_id = s.netns_id
  LEFT JOIN addrs la ON la.addr_id = s.local_addr_id
  LEFT JOIN addrs ra ON ra.addr_id = s.remote_addr_id
  LEFT JOIN processes p ON p.snapshot_id = s.snapshot_id AND p.pid = s.pid;

CREATE VIEW counters_v AS
  SELECT c.snapshot_id, sn.host,
         strftime('%Y-%m-%dT%H:%M:%fZ', sn.realtime_ns / 1e9, 'unixepoch') AS time,
         n.inode AS netns, c.file, c.name, c.value
  FROM counters c JOIN snapshots sn USING (snapshot_id) JOIN netns n USING (netns_id);
