-- netlens migration 17: flows from captures now carry missed_bytes (content gaps found from TCP
-- sequence numbers and ACKs, as Zeek's reassembler finds them); migration 2's comment said they
-- were NULL for captures. Landed scripts are never edited, so the comment changes here.
COMMENT ON COLUMN flows.missed_bytes IS 'Bytes in content gaps: TCP data the receiver acknowledged but the capture never held, counted as Zeek counts them (only while both sides are established or cleanly closing). From Zeek logs as logged; for captures computed the same way, 0 for UDP and ICMP.';
