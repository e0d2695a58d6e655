-- netlens migration 5: geolocation. `netlens geo` and `netlens geo lookup` answer "where is this
-- address and whose network is it" for the remote addresses of connections, sockets and flows.
-- `geo` holds one current answer per address and doubles as the cache (answers older than the
-- TTL are looked up again); `geo_runs` records every run; two views put the answers beside the
-- connections and flows they describe.

CREATE TABLE geo_runs (
    run_id        BIGINT PRIMARY KEY,
    command       VARCHAR NOT NULL,
    started_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP NOT NULL,
    sources       VARCHAR NOT NULL,
    addresses     BIGINT NOT NULL,
    local         BIGINT NOT NULL,
    found         BIGINT NOT NULL,
    not_found     BIGINT NOT NULL,
    failed        BIGINT NOT NULL,
    error         VARCHAR
);
COMMENT ON TABLE geo_runs IS 'One row per geolocation run (netlens geo, netlens geo lookup) that stored answers: which sources it asked and how many addresses it answered. A run whose provider failed for some addresses stores the answered ones and says here how many failed and why.';
COMMENT ON COLUMN geo_runs.run_id IS 'Run number, increasing; geo.run_id points here.';
COMMENT ON COLUMN geo_runs.command IS 'geo (fill every pending remote address) or geo lookup (the addresses given).';
COMMENT ON COLUMN geo_runs.started_at IS 'UTC time the run started.';
COMMENT ON COLUMN geo_runs.finished_at IS 'UTC time its answers were stored.';
COMMENT ON COLUMN geo_runs.sources IS 'Sources asked, in order: local (address ranges, always), the .mmdb file names, ip-api (with its URL).';
COMMENT ON COLUMN geo_runs.addresses IS 'Distinct addresses the run had to answer.';
COMMENT ON COLUMN geo_runs.local IS 'Addresses classified locally (private, loopback, link-local, CGNAT, multicast, documentation, reserved, unspecified): never sent anywhere.';
COMMENT ON COLUMN geo_runs.found IS 'Public addresses a source had data for.';
COMMENT ON COLUMN geo_runs.not_found IS 'Public addresses no source had data for (stored with status not_found, so they are not asked again before the TTL).';
COMMENT ON COLUMN geo_runs.failed IS 'Addresses left unanswered because the provider failed (down, timeout, rate limit, malformed answer): nothing is stored for them, the next run asks again.';
COMMENT ON COLUMN geo_runs.error IS 'Why addresses failed; NULL when none did.';

CREATE TABLE geo (
    ip                     VARCHAR NOT NULL,
    scope                  VARCHAR NOT NULL,
    status                 VARCHAR NOT NULL,
    country_code           VARCHAR,
    country                VARCHAR,
    region                 VARCHAR,
    city                   VARCHAR,
    latitude               DOUBLE,
    longitude              DOUBLE,
    asn                    BIGINT,
    org                    VARCHAR,
    registered_country_code VARCHAR,
    network                VARCHAR,
    source                 VARCHAR NOT NULL,
    note                   VARCHAR,
    looked_up_at           TIMESTAMP NOT NULL,
    run_id                 BIGINT NOT NULL
);
COMMENT ON TABLE geo IS 'Geolocation of IP addresses, one current answer per address (netlens geo fills it for every remote address of connections, sockets and flows; netlens geo lookup for given ones). Also the lookup cache: an address is asked again only when its answer is older than the TTL (--ttl) or with --refresh. Local ranges are classified here without asking anyone; the online provider is opt-in.';
COMMENT ON COLUMN geo.ip IS 'The address, written as in the table it came from (connections.remote_addr, sockets.remote_addr, flows.orig_h / resp_h), so joins on text match; canonical form for geo lookup.';
COMMENT ON COLUMN geo.scope IS 'Kind of address by the IANA special-purpose registries (as sockets.remote_scope): public, private, loopback, link_local, cgnat, multicast, documentation, reserved or unspecified. Only public addresses are looked up.';
COMMENT ON COLUMN geo.status IS 'found (a source had data), not_found (public, but no source had data; note says why) or local (not public, classified locally, never sent anywhere).';
COMMENT ON COLUMN geo.country_code IS 'ISO 3166-1 alpha-2 code of the country the address is located in (mmdb country.iso_code, ip-api countryCode); NULL when unknown.';
COMMENT ON COLUMN geo.country IS 'English name of that country.';
COMMENT ON COLUMN geo.region IS 'First-level subdivision (state, province) in English, from city databases and ip-api; NULL otherwise.';
COMMENT ON COLUMN geo.city IS 'City in English, from city databases and ip-api; NULL when unknown (country and ASN databases have none).';
COMMENT ON COLUMN geo.latitude IS 'Approximate latitude in degrees (city databases, ip-api); a centroid, not a street address.';
COMMENT ON COLUMN geo.longitude IS 'Approximate longitude in degrees.';
COMMENT ON COLUMN geo.asn IS 'Autonomous system number announcing the address (ASN databases, ip-api "as").';
COMMENT ON COLUMN geo.org IS 'Organisation holding that autonomous system (autonomous_system_organization, or the name after the number in ip-api "as").';
COMMENT ON COLUMN geo.registered_country_code IS 'ISO code of the country where the network is registered (mmdb registered_country), which can differ from where it is used; NULL from ip-api.';
COMMENT ON COLUMN geo.network IS 'The network (CIDR) the first answering .mmdb database gives for the address: every address in it has the same answer there; NULL for ip-api and local answers.';
COMMENT ON COLUMN geo.source IS 'Who answered: local, the .mmdb file names that had data (comma-separated, in --mmdb order), or ip-api.';
COMMENT ON COLUMN geo.note IS 'Why a public address has no answer (not in any database, or the provider''s message such as reserved range); NULL otherwise.';
COMMENT ON COLUMN geo.looked_up_at IS 'UTC time of the lookup; answers older than the TTL are looked up again.';
COMMENT ON COLUMN geo.run_id IS 'The run (geo_runs.run_id) that stored this answer.';

CREATE VIEW connections_geo AS
SELECT c.connection_id, c.host, c.proto, c.local_addr, c.local_port, c.remote_addr, c.remote_port,
       c.pid, c.process_name, c.direction, c.remote_scope, c.first_seen, c.last_seen, c.duration_s,
       c.last_state, c.bytes_sent, c.bytes_received,
       g.country_code AS remote_country_code, g.country AS remote_country, g.city AS remote_city,
       g.asn AS remote_asn, g.org AS remote_org, g.status AS geo_status
FROM connections c
LEFT JOIN geo g ON g.ip = c.remote_addr;
COMMENT ON VIEW connections_geo IS 'connections with the geolocation of their remote address (LEFT JOIN geo ON geo.ip = remote_addr): geo columns are NULL until netlens geo has looked the address up, and for sockets without a peer.';
COMMENT ON COLUMN connections_geo.connection_id IS 'As connections.connection_id (join there for the other columns).';
COMMENT ON COLUMN connections_geo.host IS 'As connections.host.';
COMMENT ON COLUMN connections_geo.proto IS 'As connections.proto.';
COMMENT ON COLUMN connections_geo.local_addr IS 'As connections.local_addr.';
COMMENT ON COLUMN connections_geo.local_port IS 'As connections.local_port.';
COMMENT ON COLUMN connections_geo.remote_addr IS 'As connections.remote_addr; geo.ip joins here.';
COMMENT ON COLUMN connections_geo.remote_port IS 'As connections.remote_port.';
COMMENT ON COLUMN connections_geo.pid IS 'As connections.pid.';
COMMENT ON COLUMN connections_geo.process_name IS 'As connections.process_name.';
COMMENT ON COLUMN connections_geo.direction IS 'As connections.direction.';
COMMENT ON COLUMN connections_geo.remote_scope IS 'As connections.remote_scope.';
COMMENT ON COLUMN connections_geo.first_seen IS 'As connections.first_seen.';
COMMENT ON COLUMN connections_geo.last_seen IS 'As connections.last_seen.';
COMMENT ON COLUMN connections_geo.duration_s IS 'As connections.duration_s.';
COMMENT ON COLUMN connections_geo.last_state IS 'As connections.last_state.';
COMMENT ON COLUMN connections_geo.bytes_sent IS 'As connections.bytes_sent.';
COMMENT ON COLUMN connections_geo.bytes_received IS 'As connections.bytes_received.';
COMMENT ON COLUMN connections_geo.remote_country_code IS 'geo.country_code of the remote address.';
COMMENT ON COLUMN connections_geo.remote_country IS 'geo.country of the remote address.';
COMMENT ON COLUMN connections_geo.remote_city IS 'geo.city of the remote address.';
COMMENT ON COLUMN connections_geo.remote_asn IS 'geo.asn of the remote address.';
COMMENT ON COLUMN connections_geo.remote_org IS 'geo.org of the remote address.';
COMMENT ON COLUMN connections_geo.geo_status IS 'geo.status of the remote address (found, not_found, local); NULL when not looked up yet.';

CREATE VIEW flows_geo AS
SELECT f.import_id, f.ts, f.uid, f.orig_h, f.orig_p, f.resp_h, f.resp_p, f.proto, f.service, f.duration,
       f.orig_bytes, f.resp_bytes, f.conn_state,
       o.scope AS orig_scope, o.country_code AS orig_country_code, o.country AS orig_country, o.city AS orig_city,
       o.asn AS orig_asn, o.org AS orig_org,
       r.scope AS resp_scope, r.country_code AS resp_country_code, r.country AS resp_country, r.city AS resp_city,
       r.asn AS resp_asn, r.org AS resp_org
FROM flows f
LEFT JOIN geo o ON o.ip = f.orig_h
LEFT JOIN geo r ON r.ip = f.resp_h;
COMMENT ON VIEW flows_geo IS 'flows with the geolocation of both ends (LEFT JOIN geo on orig_h and on resp_h): geo columns are NULL until netlens geo has looked the address up.';
COMMENT ON COLUMN flows_geo.import_id IS 'As flows.import_id.';
COMMENT ON COLUMN flows_geo.ts IS 'As flows.ts.';
COMMENT ON COLUMN flows_geo.uid IS 'As flows.uid (join there, with import_id, for the other columns).';
COMMENT ON COLUMN flows_geo.orig_h IS 'As flows.orig_h.';
COMMENT ON COLUMN flows_geo.orig_p IS 'As flows.orig_p.';
COMMENT ON COLUMN flows_geo.resp_h IS 'As flows.resp_h.';
COMMENT ON COLUMN flows_geo.resp_p IS 'As flows.resp_p.';
COMMENT ON COLUMN flows_geo.proto IS 'As flows.proto.';
COMMENT ON COLUMN flows_geo.service IS 'As flows.service.';
COMMENT ON COLUMN flows_geo.duration IS 'As flows.duration.';
COMMENT ON COLUMN flows_geo.orig_bytes IS 'As flows.orig_bytes.';
COMMENT ON COLUMN flows_geo.resp_bytes IS 'As flows.resp_bytes.';
COMMENT ON COLUMN flows_geo.conn_state IS 'As flows.conn_state.';
COMMENT ON COLUMN flows_geo.orig_scope IS 'geo.scope of the originator address.';
COMMENT ON COLUMN flows_geo.orig_country_code IS 'geo.country_code of the originator address.';
COMMENT ON COLUMN flows_geo.orig_country IS 'geo.country of the originator address.';
COMMENT ON COLUMN flows_geo.orig_city IS 'geo.city of the originator address.';
COMMENT ON COLUMN flows_geo.orig_asn IS 'geo.asn of the originator address.';
COMMENT ON COLUMN flows_geo.orig_org IS 'geo.org of the originator address.';
COMMENT ON COLUMN flows_geo.resp_scope IS 'geo.scope of the responder address.';
COMMENT ON COLUMN flows_geo.resp_country_code IS 'geo.country_code of the responder address.';
COMMENT ON COLUMN flows_geo.resp_country IS 'geo.country of the responder address.';
COMMENT ON COLUMN flows_geo.resp_city IS 'geo.city of the responder address.';
COMMENT ON COLUMN flows_geo.resp_asn IS 'geo.asn of the responder address.';
COMMENT ON COLUMN flows_geo.resp_org IS 'geo.org of the responder address.';
