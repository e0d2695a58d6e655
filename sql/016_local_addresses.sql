-- netlens migration 16: flow_addr_is_local agrees with netaddr::scope (a test checks them on the
-- same addresses). Migration 4's IPv6 patterns took a shortened first group for a full one
-- ('fc::1' is 00fc::1, not unique-local fc00::/7; likewise 'fe8:' and 'ff::'), and IPv4-mapped
-- multicast and broadcast addresses were not local.
CREATE OR REPLACE MACRO flow_addr_is_local(a) AS (
    a LIKE '10.%' OR a LIKE '192.168.%' OR regexp_matches(a, '^172\.(1[6-9]|2[0-9]|3[01])\.')
    OR a LIKE '127.%' OR a LIKE '169.254.%' OR a = '255.255.255.255'
    OR regexp_matches(a, '^(22[4-9]|23[0-9])\.')
    OR lower(a) = '::1' OR regexp_matches(lower(a), '^f[cd][0-9a-f]{2}:') OR regexp_matches(lower(a), '^fe[89ab][0-9a-f]:')
    OR regexp_matches(lower(a), '^ff[0-9a-f]{2}:')
    OR regexp_matches(lower(a), '^::ffff:(10\.|192\.168\.|127\.|169\.254\.|172\.(1[6-9]|2[0-9]|3[01])\.|22[4-9]\.|23[0-9]\.|255\.255\.255\.255$)')
);
COMMENT ON MACRO flow_addr_is_local IS 'True for loopback, private (RFC 1918, ULA), link-local, multicast and broadcast addresses given as text: addresses that stay inside the site. The same rule as netlens''s own classifier (netaddr::scope: local network or multicast).';
