-- TCP listeners whose accept queue stayed non-empty: in every snapshot of the listener
-- (one socket: host, boot, cookie), over at least 5 s. rx_queue of a listener is its accept
-- queue, tx_queue the backlog (report's accept_queue_backlog, without its draining rule).
SELECT host, netns, local_addr, local_port, count() AS snapshots,
       min(rx_queue) AS min_queue, max(rx_queue) AS max_queue, max(tx_queue) AS backlog,
       min(time) AS since, max(time) AS until
FROM sockets
WHERE proto = 6 AND state = 10
GROUP BY host, boot_id, netns, cookie, local_addr, local_port
HAVING min(rx_queue) > 0 AND max(boottime_ns) - min(boottime_ns) >= 5000000000
ORDER BY host, netns, local_port
