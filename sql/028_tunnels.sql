-- netlens migration 28: Zeek's tunnel.log for captures. A capture's decapsulated tunnels (IP in IP,
-- GRE, VXLAN, Geneve, Teredo, AYIYA, GTPv1-U) are logged as Zeek's Tunnel framework
-- (base/frameworks/tunnels/main.zeek) logs them: discovered, closed, expired.
CREATE TABLE tunnels (
    import_id   BIGINT NOT NULL,
    ts          TIMESTAMP NOT NULL,
    uid         VARCHAR NOT NULL,
    orig_h      VARCHAR NOT NULL,
    orig_p      INTEGER NOT NULL,
    resp_h      VARCHAR NOT NULL,
    resp_p      INTEGER NOT NULL,
    tunnel_type VARCHAR NOT NULL,
    action      VARCHAR NOT NULL
);
COMMENT ON TABLE tunnels IS 'Zeek tunnel.log of imported and live packet captures: one row each time a tunnel is discovered (a connection inside it is new, or first comes through it), closed (its own UDP flow ended) or expired (no new connection through it for an hour). Rows follow the import that wrote them; Zeek imports write none.';
COMMENT ON COLUMN tunnels.import_id IS 'The import (imports.import_id) whose capture held the tunnel.';
COMMENT ON COLUMN tunnels.ts IS 'UTC capture time of the event: the packet that started or first carried the inner connection (DISCOVER); when the tunnel''s UDP flow ended (CLOSE: its idle timeout ran out, or the capture''s last packet at its end); when the hour without a new connection ran out (EXPIRE).';
COMMENT ON COLUMN tunnels.uid IS 'The tunnel''s uid, as the inner flows'' flows.tunnel_parents names it: the uid of its UDP flow (VXLAN, Geneve, Teredo, AYIYA, GTPv1), or of the IP tunnel''s address pair (IP in IP, GRE), which has no flow.';
COMMENT ON COLUMN tunnels.orig_h IS 'Zeek id.orig_h: the tunnel''s originator (a UDP tunnel''s flow originator; an IP tunnel''s source in the packet that opened it).';
COMMENT ON COLUMN tunnels.orig_p IS 'Zeek id.orig_p: the UDP flow''s originator port; 0 for IP tunnels.';
COMMENT ON COLUMN tunnels.resp_h IS 'Zeek id.resp_h: the tunnel''s responder.';
COMMENT ON COLUMN tunnels.resp_p IS 'Zeek id.resp_p: the UDP flow''s responder port (4789 for VXLAN, ...); 0 for IP tunnels.';
COMMENT ON COLUMN tunnels.tunnel_type IS 'Zeek Tunnel::Type as tunnel.log writes it: Tunnel::IP, Tunnel::GRE, Tunnel::VXLAN, Tunnel::GENEVE, Tunnel::TEREDO, Tunnel::AYIYA, Tunnel::GTPv1.';
COMMENT ON COLUMN tunnels.action IS 'Zeek Tunnel::Action: Tunnel::DISCOVER, Tunnel::CLOSE or Tunnel::EXPIRE.';
