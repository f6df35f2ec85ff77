-- Counter deltas per interval between consecutive snapshots of a host's boot and namespace:
-- TcpExt.ListenOverflows (report's listen_overflow) and Udp.RcvbufErrors (udp_drops), the
-- intervals in which they grew. Counters are UInt64: deltas are taken as Int64.
SELECT host, netns, name, toDateTime(intDiv(rt[i], 1000000000)) AS until,
       (bt[i] - bt[i - 1]) / 1e9 AS seconds, toInt64(vs[i]) - toInt64(vs[i - 1]) AS delta,
       delta / seconds AS per_second
FROM
(
    SELECT host, boot_id, netns, name, arraySort(groupArray((boottime_ns, realtime_ns, value))) AS s,
           arrayMap(x -> tupleElement(x, 1), s) AS bt,
           arrayMap(x -> tupleElement(x, 2), s) AS rt,
           arrayMap(x -> tupleElement(x, 3), s) AS vs
    FROM counters
    WHERE name IN ('TcpExt.ListenOverflows', 'Udp.RcvbufErrors')
    GROUP BY host, boot_id, netns, name
)
ARRAY JOIN arrayEnumerate(bt) AS i
WHERE i > 1 AND delta > 0
ORDER BY host, netns, name, until
