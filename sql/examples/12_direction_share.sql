-- Traffic direction shares: connections and bytes by direction (inbound, outbound, internal).
SELECT direction, count(*) AS connections,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct_connections,
       sum(coalesce(bytes_sent, 0) + coalesce(bytes_received, 0)) AS bytes,
       round(100.0 * sum(coalesce(bytes_sent, 0) + coalesce(bytes_received, 0))
             / nullif(sum(sum(coalesce(bytes_sent, 0) + coalesce(bytes_received, 0))) OVER (), 0), 1) AS pct_bytes
FROM connections
WHERE direction <> 'listen'
GROUP BY direction
ORDER BY connections DESC;
