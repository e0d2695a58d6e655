-- netlens migration 33: a seeded sample of flow windows for the dashboard's correlation heatmap
-- (issue 18: every view within a second over the whole history, sampled plots say so).
--
-- The correlation panel computes the flow features (flow_features_between, migration 25) of
-- every 5-minute window of its range and correlates them. Over weeks that groups every
-- connection of the history by window, which alone takes seconds. flow_features_sampled gives
-- the same rows for a sample of the windows when the range has more than at_most connections:
-- the windows whose key (host, source, destination, window start) hashes into 1 of one_in, with
-- one_in the smallest whole number that leaves about at_most connections. The hash is fixed, so
-- the same range gives the same windows every time; a window is kept or left out whole, so each
-- row kept is exactly flow_features_between's row for that window. Each row also says one_in
-- (1: no sample, every window) and how many connections all the range's windows had, so the
-- panel can say what it drew from. at_most NULL keeps every window: flow_features_between is
-- now defined by it, one text for both.

CREATE MACRO flow_features_sampled(width, range_from, range_to, at_most) AS TABLE
WITH e AS MATERIALIZED (
    SELECT * FROM connection_events_between(range_from, range_to + width, NULL)
    WHERE source = 'connections' AND time_bucket(width, start_ts) BETWEEN range_from AND range_to),
k AS (SELECT greatest(1, coalesce(ceil(count(*) / at_most), 1))::BIGINT AS one_in, count(*) AS connections FROM e)
SELECT host || ' ' || src_h || ' -> ' || dst_h || ' @ ' || CAST(time_bucket(width, start_ts) AS VARCHAR) AS flow_id,
       time_bucket(width, start_ts) AS window_start,
       host,
       src_h AS src_ip,
       dst_h AS dst_ip,
       mode(proto) AS protocol,
       mode(direction) AS direction,
       mode(service_port_category(proto, dst_p)) AS service_port,
       count(*) AS connection_count,
       count(DISTINCT src_p) AS unique_local_ports,
       count(DISTINCT dst_p) AS unique_remote_ports,
       min(dst_p) AS remote_port_min,
       max(dst_p) AS remote_port_max,
       avg(dst_p) AS remote_port_mean,
       coalesce(stddev_pop(dst_p), 0) AS remote_port_std,
       avg(duration_s) AS mean_duration_s,
       max(duration_s) AS max_duration_s,
       sum(bytes_out) AS bytes_sent,
       sum(bytes_in) AS bytes_received,
       count(DISTINCT coalesce(process_name, CAST(pid AS VARCHAR))) AS distinct_processes,
       min(start_ts) AS first_seen,
       max(end_ts) AS last_seen,
       any_value(k.one_in) AS one_in,
       any_value(k.connections) AS connections_of
FROM e, k
WHERE k.one_in = 1 OR hash(host, src_h, dst_h, time_bucket(width, start_ts), 'netlens flow sample') % k.one_in = 0
GROUP BY ALL;

-- One column per EXCLUDE: DuckDB keeps an EXCLUDE list as a set and prints a list of two in
-- either order, so a copy of the schema (the template) would differ from the migrated one.
CREATE OR REPLACE MACRO flow_features_between(width, range_from, range_to) AS TABLE
SELECT * EXCLUDE (one_in) FROM (
    SELECT * EXCLUDE (connections_of) FROM flow_features_sampled(width, range_from, range_to, NULL));

COMMENT ON MACRO TABLE flow_features_sampled IS 'flow_features_between rows for a fixed sample of the windows of [range_from, range_to] when they hold more than at_most connections (those whose key hashes into 1 of one_in; each kept window whole), with one_in (1: every window) and connections_of (connections in all the windows of the range); at_most NULL keeps every window.';
COMMENT ON MACRO TABLE flow_features_between IS 'flow_features_by(width) rows whose window_start lies in [range_from, range_to], from the connections of those windows only (flow_features_sampled keeping every window).';
