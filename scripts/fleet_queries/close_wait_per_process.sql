-- CLOSE-WAIT sockets (with an fd) per process over time, with the process's name and how long
-- its oldest one has been in CLOSE-WAIT (report's close_wait_leak reports a process from 4 s).
-- ClickHouse 18.16 joins two tables per SELECT, so the joins nest.
SELECT host, pid, comm, time, close_wait, oldest_s
FROM
(
    SELECT host, boot_id, boottime_ns, time, pid, close_wait, comm
    FROM
    (
        SELECT host, boot_id, boottime_ns, any(time) AS time, assumeNotNull(pid) AS pid,
               count() AS close_wait
        FROM sockets
        WHERE proto = 6 AND state = 8 AND inode != 0 AND pid IS NOT NULL
        GROUP BY host, boot_id, boottime_ns, pid
    )
    ANY LEFT JOIN
    (
        SELECT host, boot_id, boottime_ns, pid, comm FROM processes
    ) USING (host, boot_id, boottime_ns, pid)
)
ANY LEFT JOIN
(
    SELECT host, boot_id, pid, max(held_ns) / 1e9 AS oldest_s
    FROM
    (
        SELECT host, boot_id, assumeNotNull(pid) AS pid, cookie,
               max(boottime_ns) - min(boottime_ns) AS held_ns
        FROM sockets
        WHERE proto = 6 AND state = 8 AND inode != 0 AND pid IS NOT NULL
        GROUP BY host, boot_id, pid, cookie
    )
    GROUP BY host, boot_id, pid
) USING (host, boot_id, pid)
ORDER BY host, pid, time
