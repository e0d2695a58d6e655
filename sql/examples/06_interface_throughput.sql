-- Interface throughput over time: bytes and packets per second between consecutive snapshots
-- (from the stored deltas; NULL after a counter reset).
SELECT ts, name,
       round(rx_bytes_delta / interval_s) AS rx_bytes_per_s,
       round(tx_bytes_delta / interval_s) AS tx_bytes_per_s,
       round(rx_packets_delta / interval_s, 1) AS rx_packets_per_s,
       round(tx_packets_delta / interval_s, 1) AS tx_packets_per_s,
       rx_errors_delta + tx_errors_delta AS errors
FROM interfaces
WHERE interval_s > 0
ORDER BY ts, name;
