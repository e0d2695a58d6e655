-- netlens migration 21: flows carry Zeek's tunnel_parents. Captures now decapsulate the tunnels
-- Zeek decapsulates (IP in IP, GRE, VXLAN, Geneve, Teredo, AYIYA, GTPv1-U); a packet from inside a
-- tunnel forms a flow of its own, and this column names the tunnel that carried it.
ALTER TABLE flows ADD COLUMN tunnel_parents VARCHAR[];
COMMENT ON COLUMN flows.tunnel_parents IS 'Zeek tunnel_parents: uids of the tunnels that carried this flow''s packets (the innermost encapsulation of each packet). A UDP tunnel (VXLAN, Geneve, Teredo, AYIYA, GTPv1) is named by the uid of its own UDP flow, which stays a row of this table; an IP tunnel (IP in IP, GRE) by a uid of the tunnel''s address pair, which has no row. NULL for flows outside any tunnel, for Zeek imports, and for captures imported before version 21.';
