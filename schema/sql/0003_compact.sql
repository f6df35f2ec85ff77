-- sockrewind schema v3: history that costs by change. Documented in schema/README.md.
--
-- A socket, a process, a counter or a limit is stored once per *run*: the consecutive
-- snapshots (snapshot_id first..last) in which nothing about it changed. The tables
-- sockets, processes, counters and limits of versions 1-2 become views with the same
-- columns, one row per socket (process, counter, limit) per snapshot, so every query of
-- earlier versions reads a version-3 file unchanged.
--
-- Rules every writer keeps (sockrewind-collect writes one-snapshot runs; pack and the fold
-- write longer ones):
-- * snapshot_id is 1, 2, 3, ... without holes; a run is present in every snapshot from
--   first_snapshot_id to last_snapshot_id, all of one host and boot;
-- * a run never crosses a multiple of 64 (first_snapshot_id >> 6 = last_snapshot_id >> 6),
--   so finding the runs of one snapshot reads at most 64 snapshots' worth of runs;
-- * time-relative fields (expires_ms, ti_last_data_recv_ms, ti_last_ack_recv_ms) are stored
--   as of the run's first snapshot, and the views move them with CLOCK_BOOTTIME: a socket
--   whose only change is time passing stays in its run. They are exact in the first snapshot
--   of a run and, after it, within the capture's own duration + 10 ms of what the kernel said.
-- * sock_id in the views (and in extra_owners and tcp_info, which stay tables) is
--   (run_id << 24) | snapshot_id: one id per socket per snapshot, as before.

-- What identifies a socket (and never changes while it lives). A socket whose identity
-- changes (connect() after bind()) gets a new row.
CREATE TABLE sock_ident (
  ident_id          INTEGER PRIMARY KEY,
  netns_id          INTEGER NOT NULL REFERENCES netns(netns_id),
  family            INTEGER NOT NULL,
  type              INTEGER NOT NULL,
  proto             INTEGER NOT NULL,
  local_addr_id     INTEGER REFERENCES addrs(addr_id),
  local_port        INTEGER,
  remote_addr_id    INTEGER REFERENCES addrs(addr_id),
  remote_port       INTEGER,
  inode             INTEGER NOT NULL,
  cookie            INTEGER,
  uid               INTEGER,
  path              TEXT,
  peer_inode        INTEGER
) STRICT;

-- A socket's changing fields over a run of snapshots.
-- Clustered by first_snapshot_id (WITHOUT ROWID): the runs of one snapshot are found in the
-- table itself, with no index to write or store. run_id numbers the runs of the file.
CREATE TABLE sock_runs (
  run_id            INTEGER NOT NULL,
  ident_id          INTEGER NOT NULL REFERENCES sock_ident(ident_id),
  first_snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  last_snapshot_id  INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  state             INTEGER NOT NULL,
  rx_queue          INTEGER,
  tx_queue          INTEGER,
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
  fd                INTEGER,
  PRIMARY KEY (first_snapshot_id, run_id),
  CHECK (first_snapshot_id <= last_snapshot_id
         AND first_snapshot_id >> 6 = last_snapshot_id >> 6)
) WITHOUT ROWID, STRICT;

-- What identifies a process (pid + start time) and what does not change while it lives.
CREATE TABLE proc_ident (
  proc_id     INTEGER PRIMARY KEY,
  pid         INTEGER NOT NULL,
  start_ticks INTEGER NOT NULL,
  ppid        INTEGER,
  uid         INTEGER,
  comm        TEXT    NOT NULL,
  cmdline     TEXT
) STRICT;

CREATE TABLE proc_runs (
  proc_id           INTEGER NOT NULL REFERENCES proc_ident(proc_id),
  first_snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  last_snapshot_id  INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  netns_id          INTEGER REFERENCES netns(netns_id),
  fd_count          INTEGER,
  socket_fds        INTEGER NOT NULL,
  nofile_soft       INTEGER,
  nofile_hard       INTEGER,
  state             TEXT,
  PRIMARY KEY (first_snapshot_id, proc_id),
  CHECK (first_snapshot_id <= last_snapshot_id
         AND first_snapshot_id >> 6 = last_snapshot_id >> 6)
) WITHOUT ROWID, STRICT;

CREATE TABLE counter_names (
  name_id INTEGER PRIMARY KEY,
  file    TEXT    NOT NULL,
  name    TEXT    NOT NULL,
  UNIQUE (file, name)
) STRICT;

CREATE TABLE counter_runs (
  first_snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  netns_id          INTEGER NOT NULL REFERENCES netns(netns_id),
  name_id           INTEGER NOT NULL REFERENCES counter_names(name_id),
  last_snapshot_id  INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  value             INTEGER NOT NULL,
  PRIMARY KEY (first_snapshot_id, netns_id, name_id),
  CHECK (first_snapshot_id <= last_snapshot_id
         AND first_snapshot_id >> 6 = last_snapshot_id >> 6)
) WITHOUT ROWID, STRICT;

CREATE TABLE limit_runs (
  first_snapshot_id INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  netns_id          INTEGER NOT NULL REFERENCES netns(netns_id),
  name              TEXT    NOT NULL,
  last_snapshot_id  INTEGER NOT NULL REFERENCES snapshots(snapshot_id),
  value             TEXT    NOT NULL,
  PRIMARY KEY (first_snapshot_id, netns_id, name),
  CHECK (first_snapshot_id <= last_snapshot_id
         AND first_snapshot_id >> 6 = last_snapshot_id >> 6)
) WITHOUT ROWID, STRICT;

-- The rows of a version-2 file, each its own one-snapshot run (ids kept: run_id = ident_id =
-- the old sock_id).
INSERT INTO sock_ident (ident_id, netns_id, family, type, proto, local_addr_id, local_port,
                        remote_addr_id, remote_port, inode, cookie, uid, path, peer_inode)
  SELECT sock_id, netns_id, family, type, proto, local_addr_id, local_port, remote_addr_id,
         remote_port, inode, cookie, uid, path, peer_inode FROM sockets;
INSERT INTO sock_runs
  SELECT sock_id, sock_id, snapshot_id, snapshot_id, state, rx_queue, tx_queue, timer,
         expires_ms, retrans, shutdown, tos, skm_rmem_alloc, skm_rcvbuf, skm_wmem_alloc,
         skm_sndbuf, skm_fwd_alloc, skm_wmem_queued, skm_optmem, skm_backlog, skm_drops,
         ti_rto_us, ti_rtt_us, ti_rttvar_us, ti_snd_cwnd, ti_unacked, ti_backoff, ti_probes,
         ti_total_retrans, ti_last_data_recv_ms, ti_last_ack_recv_ms, ti_bytes_acked,
         ti_bytes_received, ti_segs_out, ti_notsent_bytes, ti_snd_wnd, pid, fd FROM sockets;
-- New sock_ids, negated first so that no new id meets an old one on the way.
UPDATE extra_owners SET sock_id = -((sock_id << 24)
  | (SELECT snapshot_id FROM sockets s WHERE s.sock_id = extra_owners.sock_id));
UPDATE extra_owners SET sock_id = -sock_id;
UPDATE tcp_info SET sock_id = -((sock_id << 24)
  | (SELECT snapshot_id FROM sockets s WHERE s.sock_id = tcp_info.sock_id));
UPDATE tcp_info SET sock_id = -sock_id;
INSERT INTO proc_ident (pid, start_ticks, ppid, uid, comm, cmdline)
  SELECT DISTINCT pid, start_ticks, ppid, uid, comm, cmdline FROM processes;
INSERT INTO proc_runs
  SELECT i.proc_id, p.snapshot_id, p.snapshot_id, p.netns_id, p.fd_count, p.socket_fds,
         p.nofile_soft, p.nofile_hard, p.state
  FROM processes p JOIN proc_ident i
    ON i.pid = p.pid AND i.start_ticks = p.start_ticks AND i.ppid IS p.ppid
       AND i.uid IS p.uid AND i.comm = p.comm AND i.cmdline IS p.cmdline;
INSERT INTO counter_names (file, name) SELECT DISTINCT file, name FROM counters;
INSERT INTO counter_runs
  SELECT c.snapshot_id, c.netns_id, n.name_id, c.snapshot_id, c.value
  FROM counters c JOIN counter_names n ON n.file = c.file AND n.name = c.name;
INSERT INTO limit_runs SELECT snapshot_id, netns_id, name, snapshot_id, value FROM limits;

DROP VIEW sockets_v;
DROP VIEW socket_owners;
DROP VIEW counters_v;
DROP TABLE sockets;
DROP TABLE processes;
DROP TABLE counters;
DROP TABLE limits;

-- One row per socket per snapshot, columns as the version-2 table.
CREATE VIEW sockets AS
  SELECT (r.run_id << 24) | sn.snapshot_id AS sock_id, sn.snapshot_id, i.netns_id, i.family,
         i.type, i.proto, r.state, i.local_addr_id, i.local_port, i.remote_addr_id,
         i.remote_port, r.rx_queue, r.tx_queue, i.inode, i.cookie, i.uid, r.timer,
         iif(r.timer IS NULL OR r.timer = 0, r.expires_ms,
             max(0, r.expires_ms - (sn.boottime_ns - f.boottime_ns) / 1000000)) AS expires_ms,
         r.retrans, r.shutdown, r.tos, r.skm_rmem_alloc, r.skm_rcvbuf, r.skm_wmem_alloc,
         r.skm_sndbuf, r.skm_fwd_alloc, r.skm_wmem_queued, r.skm_optmem, r.skm_backlog,
         r.skm_drops, i.path, i.peer_inode, r.ti_rto_us, r.ti_rtt_us, r.ti_rttvar_us,
         r.ti_snd_cwnd, r.ti_unacked, r.ti_backoff, r.ti_probes, r.ti_total_retrans,
         r.ti_last_data_recv_ms + (sn.boottime_ns - f.boottime_ns) / 1000000
           AS ti_last_data_recv_ms,
         r.ti_last_ack_recv_ms + (sn.boottime_ns - f.boottime_ns) / 1000000
           AS ti_last_ack_recv_ms,
         r.ti_bytes_acked, r.ti_bytes_received, r.ti_segs_out, r.ti_notsent_bytes,
         r.ti_snd_wnd, r.pid, r.fd
  FROM sock_runs r
  JOIN snapshots sn ON sn.snapshot_id BETWEEN r.first_snapshot_id AND r.last_snapshot_id
                   AND r.first_snapshot_id >= (sn.snapshot_id >> 6) << 6
  JOIN snapshots f ON f.snapshot_id = r.first_snapshot_id
  JOIN sock_ident i ON i.ident_id = r.ident_id;

CREATE VIEW processes AS
  SELECT sn.snapshot_id, i.pid, i.start_ticks, i.ppid, i.uid, r.netns_id, i.comm, i.cmdline,
         r.fd_count, r.socket_fds, r.nofile_soft, r.nofile_hard, r.state
  FROM proc_runs r
  JOIN snapshots sn ON sn.snapshot_id BETWEEN r.first_snapshot_id AND r.last_snapshot_id
                   AND r.first_snapshot_id >= (sn.snapshot_id >> 6) << 6
  JOIN proc_ident i ON i.proc_id = r.proc_id;

CREATE VIEW counters AS
  SELECT sn.snapshot_id, r.netns_id, n.file, n.name, r.value
  FROM counter_runs r
  JOIN snapshots sn ON sn.snapshot_id BETWEEN r.first_snapshot_id AND r.last_snapshot_id
                   AND r.first_snapshot_id >= (sn.snapshot_id >> 6) << 6
  JOIN counter_names n ON n.name_id = r.name_id;

CREATE VIEW limits AS
  SELECT sn.snapshot_id, r.netns_id, r.name, r.value
  FROM limit_runs r
  JOIN snapshots sn ON sn.snapshot_id BETWEEN r.first_snapshot_id AND r.last_snapshot_id
                   AND r.first_snapshot_id >= (sn.snapshot_id >> 6) << 6;

-- The convenience views of version 1, unchanged, over the views above.
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
