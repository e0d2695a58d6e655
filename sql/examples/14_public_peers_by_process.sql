-- Which processes talk to public internet addresses, and to how many.
SELECT coalesce(process_name, '?') AS process, count(DISTINCT remote_addr) AS public_peers,
       count(*) AS connections, string_agg(DISTINCT remote_port::VARCHAR, ',') AS remote_ports,
       sum(bytes_sent) AS bytes_sent, sum(bytes_received) AS bytes_received
FROM connections
WHERE remote_scope = 'public'
GROUP BY ALL
ORDER BY public_peers DESC, connections DESC;
