-- netlens migration 10: live packet capture (`netlens capture --packets IFACE`). Its flows and
-- packets go into `flows` and `packets` like an import's, under an `imports` row of format
-- 'live'; this table keeps what only a live capture has: the interface, the filter, and the
-- kernel's counters.

CREATE TABLE packet_captures (
    import_id          BIGINT PRIMARY KEY,
    interface          VARCHAR NOT NULL,
    filter             VARCHAR,
    snaplen            INTEGER NOT NULL,
    link_type          INTEGER NOT NULL,
    pcap_file          VARCHAR,
    started_at         TIMESTAMP NOT NULL,
    stopped_at         TIMESTAMP NOT NULL,
    packets            BIGINT NOT NULL,
    kernel_received    BIGINT,
    kernel_dropped     BIGINT,
    interface_dropped  BIGINT,
    stop_reason        VARCHAR NOT NULL
);
COMMENT ON TABLE packet_captures IS 'One row per live packet capture (netlens capture --packets): where and how it captured, and the kernel''s receive and drop counters at its end. Its flows and packets have flows.import_id / packets.import_id = import_id; imports holds its totals.';
COMMENT ON COLUMN packet_captures.import_id IS 'The capture''s imports.import_id (format live); flows.import_id and packets.import_id point here too.';
COMMENT ON COLUMN packet_captures.interface IS 'Interface captured on, as given (any = every interface).';
COMMENT ON COLUMN packet_captures.filter IS 'BPF filter expression (tcpdump syntax, compiled by libpcap) applied in the kernel; NULL for every packet.';
COMMENT ON COLUMN packet_captures.snaplen IS 'Most bytes kept of each frame; flows count the frames'' full lengths whatever it is.';
COMMENT ON COLUMN packet_captures.link_type IS 'Link-layer header type of the interface (DLT number: 1 Ethernet, 113 Linux cooked for any, ...).';
COMMENT ON COLUMN packet_captures.pcap_file IS 'File every captured packet was also written to (--write-pcap); NULL without one.';
COMMENT ON COLUMN packet_captures.started_at IS 'UTC time the capture started.';
COMMENT ON COLUMN packet_captures.stopped_at IS 'UTC time it stopped.';
COMMENT ON COLUMN packet_captures.packets IS 'Packets netlens read (and turned into flows) from the kernel.';
COMMENT ON COLUMN packet_captures.kernel_received IS 'Packets the kernel passed the filter for this capture (libpcap ps_recv, which on Linux includes the dropped ones); NULL when the counters could not be read.';
COMMENT ON COLUMN packet_captures.kernel_dropped IS 'Packets the kernel dropped because the capture''s buffer was full (libpcap ps_drop): these are in no flow. Zero when netlens kept up.';
COMMENT ON COLUMN packet_captures.interface_dropped IS 'Packets the interface or its driver dropped (libpcap ps_ifdrop), where the platform counts them.';
COMMENT ON COLUMN packet_captures.stop_reason IS 'Why it stopped: ctrl-c (or SIGTERM), duration, or the error that ended it (the interface went away, ...); every packet read before it is stored.';

COMMENT ON TABLE imports IS 'One row per imported file (netlens import pcap / import zeek) or live packet capture (format live, netlens capture --packets; packet_captures has its details): what was read, how much of it became flows, and what was skipped or damaged.';
COMMENT ON COLUMN imports.path IS 'The file as given on the command line; live:IFACE for a live capture.';
COMMENT ON COLUMN imports.format IS 'File format: pcap, pcapng, zeek-tsv or zeek-json; live for a live capture (packet_captures).';
COMMENT ON COLUMN imports.complete IS 'False when reading stopped at a truncated or corrupt record (every complete packet before it was imported; notes gives the byte offset), or for a live capture still running or ended by an error (packet_captures.stop_reason).';
