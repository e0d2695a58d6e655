-- netlens migration 2: offline traffic. Imported capture files and Zeek logs become `flows`
-- (Zeek conn.log fields), optionally `packets`, and every import is recorded in `imports`.

CREATE TABLE imports (
    import_id     BIGINT PRIMARY KEY,
    path          VARCHAR NOT NULL,
    format        VARCHAR NOT NULL,
    imported_at   TIMESTAMP NOT NULL,
    file_bytes    BIGINT,
    packets       BIGINT,
    flows         BIGINT NOT NULL,
    skipped       BIGINT NOT NULL,
    first_ts      TIMESTAMP,
    last_ts       TIMESTAMP,
    elapsed_s     DOUBLE,
    complete      BOOLEAN NOT NULL,
    notes         VARCHAR
);
COMMENT ON TABLE imports IS 'One row per imported file (netlens import pcap / import zeek): what was read, how much of it became flows, and what was skipped or damaged.';
COMMENT ON COLUMN imports.import_id IS 'Import number, increasing; flows.import_id and packets.import_id point here.';
COMMENT ON COLUMN imports.path IS 'The file as given on the command line.';
COMMENT ON COLUMN imports.format IS 'File format: pcap, pcapng, zeek-tsv or zeek-json.';
COMMENT ON COLUMN imports.imported_at IS 'UTC time the import finished.';
COMMENT ON COLUMN imports.file_bytes IS 'Bytes read from the file (up to the damage, if reading stopped early).';
COMMENT ON COLUMN imports.packets IS 'Packets read from a capture (every frame, IP or not); NULL for Zeek logs.';
COMMENT ON COLUMN imports.flows IS 'Rows this import added to the flows table.';
COMMENT ON COLUMN imports.skipped IS 'Captures: packets that joined no flow (not IP, not TCP/UDP/ICMP, later IP fragments, unsupported link type, headers cut short). Zeek logs: lines that could not be read.';
COMMENT ON COLUMN imports.first_ts IS 'Time of the earliest packet or flow in the file.';
COMMENT ON COLUMN imports.last_ts IS 'Time of the latest packet or flow start in the file.';
COMMENT ON COLUMN imports.elapsed_s IS 'Seconds the import took.';
COMMENT ON COLUMN imports.complete IS 'False when reading stopped at a truncated or corrupt record; every complete packet before it was imported (notes gives the byte offset).';
COMMENT ON COLUMN imports.notes IS 'What was skipped and why, and where reading stopped on damaged input; NULL when nothing needs saying.';

CREATE TABLE flows (
    import_id         BIGINT NOT NULL,
    ts                TIMESTAMP NOT NULL,
    uid               VARCHAR NOT NULL,
    orig_h            VARCHAR NOT NULL,
    orig_p            INTEGER,
    resp_h            VARCHAR NOT NULL,
    resp_p            INTEGER,
    proto             VARCHAR NOT NULL,
    service           VARCHAR,
    duration          DOUBLE,
    orig_bytes        BIGINT,
    resp_bytes        BIGINT,
    conn_state        VARCHAR,
    missed_bytes      BIGINT,
    history           VARCHAR,
    orig_pkts         BIGINT,
    orig_ip_bytes     BIGINT,
    resp_pkts         BIGINT,
    resp_ip_bytes     BIGINT,
    orig_frame_bytes  BIGINT,
    resp_frame_bytes  BIGINT,
    ip_proto          INTEGER,
    source_file       VARCHAR NOT NULL
);
COMMENT ON TABLE flows IS 'Bidirectional flows with Zeek conn.log fields: built from pcap/pcapng captures (netlens import pcap) or read from Zeek conn.log files (netlens import zeek). One row per connection; the originator sent the first packet.';
COMMENT ON COLUMN flows.import_id IS 'The import (imports.import_id) this row came from.';
COMMENT ON COLUMN flows.ts IS 'UTC time of the flow''s first packet (Zeek ts).';
COMMENT ON COLUMN flows.uid IS 'Zeek-style connection id (C + 17 base-62 characters). For captures it is derived from the first packet (5-tuple, time, position in the file), so re-importing a file gives the same uids; packets.flow_uid joins here (with import_id, since a re-import repeats them). Zeek imports keep Zeek''s uid.';
COMMENT ON COLUMN flows.orig_h IS 'Originator address (Zeek id.orig_h): the sender of the first packet (the SYN''s sender for TCP).';
COMMENT ON COLUMN flows.orig_p IS 'Originator port (Zeek id.orig_p); for ICMP the message type of the first packet.';
COMMENT ON COLUMN flows.resp_h IS 'Responder address (Zeek id.resp_h).';
COMMENT ON COLUMN flows.resp_p IS 'Responder port (Zeek id.resp_p); for ICMP the message code of the first packet.';
COMMENT ON COLUMN flows.proto IS 'Transport protocol: tcp, udp or icmp (ICMPv6 included, as in Zeek).';
COMMENT ON COLUMN flows.service IS 'Application protocol. For captures it is PORT-BASED: guessed from the responder''s well-known port (80 http, 443 ssl, 53 dns, ...), not detected from content as Zeek does; NULL when the port is not a well-known one. Zeek imports keep Zeek''s detected services.';
COMMENT ON COLUMN flows.duration IS 'Seconds from the first to the last packet; for TCP, packets after both sides closed (the final ACK) do not extend it, as in Zeek.';
COMMENT ON COLUMN flows.orig_bytes IS 'Payload bytes the originator sent. TCP: taken from the sequence-number span as Zeek does (so it counts data the capture missed and never counts retransmissions twice); UDP: UDP payload; ICMP: bytes after the 8-byte ICMP header.';
COMMENT ON COLUMN flows.resp_bytes IS 'Payload bytes the responder sent, counted like orig_bytes.';
COMMENT ON COLUMN flows.conn_state IS 'Zeek connection state: S0 attempt without reply, S1 established not closed, SF normal close, REJ rejected, S2/S3 close by originator/responder only, RSTO/RSTR reset by originator/responder, RSTOS0 SYN then originator RST without SYN-ACK, RSTRH responder SYN-ACK then RST without SYN, SH/SHR half-open close, OTH midstream traffic. UDP: SF answered, S0 not. ICMP: OTH.';
COMMENT ON COLUMN flows.missed_bytes IS 'Bytes missed in content gaps, from Zeek logs; NULL for captures (netlens does not reassemble streams).';
COMMENT ON COLUMN flows.history IS 'Zeek history letters, upper case from the originator, lower case from the responder: S SYN, H SYN-ACK, A pure ACK, D data, F FIN, R RST, T retransmission, W zero window, I FIN+RST, Q SYN+FIN or SYN+RST, ^ direction flipped (a SYN-ACK was the first packet seen). S/H/F/R repeat when their sequence number changes; T and W repeat at 1, 10, 100, ... occurrences.';
COMMENT ON COLUMN flows.orig_pkts IS 'Packets the originator sent.';
COMMENT ON COLUMN flows.orig_ip_bytes IS 'IP-level bytes the originator sent (sum of IP total lengths, as on the wire).';
COMMENT ON COLUMN flows.resp_pkts IS 'Packets the responder sent.';
COMMENT ON COLUMN flows.resp_ip_bytes IS 'IP-level bytes the responder sent.';
COMMENT ON COLUMN flows.orig_frame_bytes IS 'Frame bytes the originator sent (original frame lengths including link-layer headers, as tshark counts conversation bytes); NULL for Zeek imports.';
COMMENT ON COLUMN flows.resp_frame_bytes IS 'Frame bytes the responder sent; NULL for Zeek imports.';
COMMENT ON COLUMN flows.ip_proto IS 'IP protocol number from the header (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).';
COMMENT ON COLUMN flows.source_file IS 'The capture or log file the flow was read from, as given on the command line.';

CREATE TABLE packets (
    import_id     BIGINT NOT NULL,
    packet_no     BIGINT NOT NULL,
    ts            TIMESTAMP NOT NULL,
    src_h         VARCHAR,
    src_p         INTEGER,
    dst_h         VARCHAR,
    dst_p         INTEGER,
    proto         VARCHAR NOT NULL,
    ip_proto      INTEGER,
    frame_len     INTEGER NOT NULL,
    cap_len       INTEGER NOT NULL,
    ip_len        INTEGER,
    payload_len   INTEGER,
    tcp_flags     VARCHAR,
    flow_uid      VARCHAR,
    from_orig     BOOLEAN
);
COMMENT ON TABLE packets IS 'One row per captured packet, written only with netlens import pcap --packets: time, addresses, ports, protocol, lengths and TCP flags, for length and protocol distributions.';
COMMENT ON COLUMN packets.import_id IS 'The import (imports.import_id) this packet came from.';
COMMENT ON COLUMN packets.packet_no IS 'Position of the packet in its file, from 1 (as tshark numbers frames).';
COMMENT ON COLUMN packets.ts IS 'UTC capture time of the packet.';
COMMENT ON COLUMN packets.src_h IS 'Source IP address; NULL for packets that are not IP.';
COMMENT ON COLUMN packets.src_p IS 'Source port (TCP/UDP) or ICMP type; NULL otherwise.';
COMMENT ON COLUMN packets.dst_h IS 'Destination IP address; NULL for packets that are not IP.';
COMMENT ON COLUMN packets.dst_p IS 'Destination port (TCP/UDP) or ICMP code; NULL otherwise.';
COMMENT ON COLUMN packets.proto IS 'Protocol: tcp, udp, icmp, icmp6, ip (another IP protocol or a later fragment), or for non-IP frames ethertype-0xNNNN, unsupported-link or broken.';
COMMENT ON COLUMN packets.ip_proto IS 'IP protocol number; NULL for packets that are not IP.';
COMMENT ON COLUMN packets.frame_len IS 'Length of the frame on the wire in bytes.';
COMMENT ON COLUMN packets.cap_len IS 'Bytes of the frame in the capture (less than frame_len when the snap length cut it).';
COMMENT ON COLUMN packets.ip_len IS 'IP total length from the header; NULL for packets that are not IP.';
COMMENT ON COLUMN packets.payload_len IS 'Transport payload bytes (after the TCP/UDP/ICMP header); NULL when there is no transport header.';
COMMENT ON COLUMN packets.tcp_flags IS 'TCP flags as letters (S SYN, F FIN, R RST, P PSH, A ACK, U URG, E ECE, C CWR); NULL for other protocols.';
COMMENT ON COLUMN packets.flow_uid IS 'The flow (flows.uid) the packet belongs to; NULL when it joined none.';
COMMENT ON COLUMN packets.from_orig IS 'True when the flow''s originator sent the packet.';
