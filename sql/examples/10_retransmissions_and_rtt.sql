-- Path quality per remote peer from tcp_info: smoothed RTT and retransmitted segments.
SELECT remote_addr, any_value(remote_scope) AS scope, count(DISTINCT connection_id) AS connections,
       round(avg(rtt_us) / 1000, 2) AS avg_rtt_ms, round(max(rtt_us) / 1000, 2) AS max_rtt_ms,
       max(total_retrans) AS max_retransmitted_segments, max(bytes_retrans) AS max_bytes_retransmitted
FROM sockets
WHERE proto = 'tcp' AND remote_addr IS NOT NULL AND rtt_us IS NOT NULL
GROUP BY remote_addr
ORDER BY max_retransmitted_segments DESC, avg_rtt_ms DESC
LIMIT 20;
