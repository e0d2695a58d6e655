-- netlens migration 23: hourly rollups take a connection's traffic from socket_traffic
-- (migration 20), so an hour's rollup equals the sum of socket_traffic over that hour. Before,
-- the rollup subtracted cumulative counters (the hour's last minus the previous hour's, or minus
-- the connection's first sighting in the hour), which lost what a connection moved before it
-- was first seen. Rollups made before this keep their values.

COMMENT ON COLUMN connection_rollups.bytes_sent IS 'Bytes sent in the bucket: the sum of socket_traffic.bytes_sent over the bucket''s snapshots (rollups made before schema version 23: the counter at the bucket''s last snapshot minus the counter at the end of the previous bucket, or at the first snapshot in this bucket); NULL without kernel counters.';
COMMENT ON COLUMN connection_rollups.bytes_received IS 'Bytes received in the bucket, as bytes_sent; NULL without kernel counters.';
