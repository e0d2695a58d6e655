//! Writing imported rows: flows, packets and tunnel log lines become Arrow record batches and go
//! into the store through one DuckDB appender per table and import (as `capture::persist` does),
//! inside the one transaction of their file's import. This is the only part of `ingest` that
//! writes.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Array, Int64Builder, ListBuilder,
    StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Appender;

use crate::error::{Error, Result};
use crate::store::{quote_ident, Store, ROW_GROUP_SIZE};
use netlens_packets::decode::{IpPacket, Transport};
use netlens_packets::flow::{FlowRecord, TunnelRecord};

pub use netlens_packets::flow::FLOW_BATCH;
/// One row of `flows`, from a capture or a Zeek log: declared with the Zeek parser.
pub use netlens_parsers::zeek::FlowRow;
/// Packet rows the reading thread gathers before it hands them to the storing one.
pub const PACKET_BATCH: usize = 65_536;
/// Tunnel log lines the reading thread gathers before it hands them to the storing one.
pub const TUNNEL_BATCH: usize = 4096;

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The straightforward conversion, kept as the reference `FlowColumns::push_record` is tested
/// against.
#[cfg(test)]
fn row_of_record(f: FlowRecord) -> FlowRow {
    FlowRow {
        ts_us: f.ts_ns.div_euclid(1000),
        uid: f.uid,
        orig_h: f.orig_h.to_string(),
        orig_p: Some(i32::from(f.orig_p)),
        resp_h: f.resp_h.to_string(),
        resp_p: Some(i32::from(f.resp_p)),
        proto: f.proto.to_string(),
        service: f.service.map(str::to_string),
        duration: Some(f.duration_ns as f64 / 1e9),
        orig_bytes: Some(i64_of(f.orig_bytes)),
        resp_bytes: Some(i64_of(f.resp_bytes)),
        conn_state: Some(f.conn_state.to_string()),
        missed_bytes: Some(i64_of(f.missed_bytes)),
        history: Some(f.history),
        orig_pkts: Some(i64_of(f.orig_pkts)),
        orig_ip_bytes: Some(i64_of(f.orig_ip_bytes)),
        resp_pkts: Some(i64_of(f.resp_pkts)),
        resp_ip_bytes: Some(i64_of(f.resp_ip_bytes)),
        orig_frame_bytes: Some(i64_of(f.orig_frame_bytes)),
        resp_frame_bytes: Some(i64_of(f.resp_frame_bytes)),
        ip_proto: Some(i32::from(f.ip_proto)),
        tunnel_parents: (!f.tunnel_parents.is_empty()).then_some(f.tunnel_parents),
    }
}

/// One row of `packets`.
#[derive(Debug, Clone)]
pub struct PacketRow {
    pub packet_no: u64,
    pub ts_ns: i64,
    pub src: Option<IpAddr>,
    pub src_p: Option<u16>,
    pub dst: Option<IpAddr>,
    pub dst_p: Option<u16>,
    pub proto: PacketProto,
    pub ip_proto: Option<u8>,
    pub frame_len: u32,
    pub cap_len: u32,
    pub ip_len: Option<u32>,
    pub payload_len: Option<u32>,
    pub tcp_flags: Option<u8>,
    /// Flow uids are 18 ASCII characters: kept inline, no allocation per packet.
    pub flow_uid: Option<[u8; 18]>,
    pub from_orig: Option<bool>,
}

impl PacketRow {
    /// Sets the columns that describe an IP packet (addresses, ports, lengths, flags).
    pub fn fill_ip(&mut self, ip: &IpPacket) {
        self.src = Some(ip.src);
        self.dst = Some(ip.dst);
        self.ip_proto = Some(ip.proto);
        self.ip_len = Some(ip.ip_len);
        self.proto = PacketProto::OtherIp;
        match ip.transport {
            Transport::Tcp {
                sport,
                dport,
                flags,
                payload,
                ..
            } => {
                (self.src_p, self.dst_p, self.tcp_flags, self.payload_len) =
                    (Some(sport), Some(dport), Some(flags), Some(payload));
                self.proto = PacketProto::Tcp;
            }
            Transport::Udp { sport, dport, payload } => {
                (self.src_p, self.dst_p, self.payload_len) = (Some(sport), Some(dport), Some(payload));
                self.proto = PacketProto::Udp;
            }
            Transport::Icmp {
                v6,
                icmp_type,
                code,
                payload,
            } => {
                (self.src_p, self.dst_p, self.payload_len) =
                    (Some(u16::from(icmp_type)), Some(u16::from(code)), Some(payload));
                self.proto = if v6 { PacketProto::Icmp6 } else { PacketProto::Icmp };
            }
            Transport::Other => {}
        }
    }
}

/// What a packet was, for `packets.proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketProto {
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    OtherIp,
    EtherType(u16),
    UnsupportedLink,
    Broken,
}

impl PacketProto {
    fn text(self) -> String {
        match self {
            PacketProto::Tcp => "tcp".into(),
            PacketProto::Udp => "udp".into(),
            PacketProto::Icmp => "icmp".into(),
            PacketProto::Icmp6 => "icmp6".into(),
            PacketProto::OtherIp => "ip".into(),
            PacketProto::EtherType(t) => format!("ethertype-0x{t:04x}"),
            PacketProto::UnsupportedLink => "unsupported-link".into(),
            PacketProto::Broken => "broken".into(),
        }
    }
}

fn fail(table: &str) -> impl Fn(duckdb::Error) -> Error + '_ {
    move |e| Error::Import {
        path: table.into(),
        reason: format!("writing to table {table} failed: {e}"),
    }
}

/// Rows DuckDB's appender gathers before it writes them to the table: four whole row groups
/// of the file. Each flush is an INSERT of its own, which cuts what it gets into pieces smaller
/// than a row group and merges and compresses them at its end; flushed every 8 192 flows, the
/// storing thread was the slower of the two. Measured on a 1 000 000-packet capture (176 755
/// flows, medians of 7): flushing every 16 384 rows 0.50 s, every 65 536 0.39 s, every
/// 131 072 0.38 s. With DuckDB on one thread the flush size made no difference (0.46-0.49 s):
/// large flushes are where DuckDB's second thread takes part.
pub const FLUSH_ROWS: usize = 4 * ROW_GROUP_SIZE;

/// One table's appender for the length of an import: batches go in as they come, and reach
/// the table in multiples of [`FLUSH_ROWS`] (the rest at [`TableWriter::finish`]).
pub struct TableWriter<'a> {
    appender: Appender<'a>,
    table: String,
    /// Rows given to the appender since it last flushed.
    pending: usize,
}

impl<'a> TableWriter<'a> {
    pub fn new(store: &'a Store, table: &str) -> Result<Self> {
        Ok(TableWriter {
            appender: store.conn().appender(table).map_err(fail(table))?,
            table: table.to_string(),
            pending: 0,
        })
    }

    /// Appends a batch, flushing whenever a whole [`FLUSH_ROWS`] is gathered (the batch is
    /// split there, without copying).
    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let mut at = 0;
        while at < batch.num_rows() {
            let take = (FLUSH_ROWS - self.pending).min(batch.num_rows() - at);
            self.appender
                .append_record_batch(batch.slice(at, take))
                .map_err(fail(&self.table))?;
            at += take;
            self.pending += take;
            if self.pending == FLUSH_ROWS {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.pending = 0;
        self.appender.flush().map_err(fail(&self.table))
    }

    /// Writes what is left. Without it the rows are still written when the writer is dropped,
    /// but an error there would go unseen.
    pub fn finish(mut self) -> Result<()> {
        self.flush()
    }
}

fn batch(table: &str, columns: Vec<(&'static str, ArrayRef)>) -> Result<RecordBatch> {
    RecordBatch::try_from_iter(columns).map_err(|e| Error::Import {
        path: table.into(),
        reason: format!("building a record batch: {e}"),
    })
}

/// Writes an address in its text form into the value being built. IPv4 by hand: `Display`
/// goes through the formatting machinery, and was about 40 % of the cost of turning a flow
/// into a row.
fn push_addr(b: &mut StringBuilder, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            b.append_value(std::str::from_utf8(&buf[..n]).unwrap_or_default());
        }
        IpAddr::V6(_) => {
            let _ = write!(b, "{a}");
            b.append_value("");
        }
    }
}

/// Column builders of `flows`: flows go in one at a time, a record batch comes out.
pub struct FlowColumns {
    ts: TimestampMicrosecondBuilder,
    uid: StringBuilder,
    orig_h: StringBuilder,
    orig_p: Int32Builder,
    resp_h: StringBuilder,
    resp_p: Int32Builder,
    proto: StringBuilder,
    service: StringBuilder,
    duration: Float64Builder,
    /// orig_bytes, resp_bytes, missed_bytes, orig_pkts, orig_ip_bytes, resp_pkts,
    /// resp_ip_bytes, orig_frame_bytes, resp_frame_bytes: in the table's order.
    counts: [Int64Builder; 9],
    conn_state: StringBuilder,
    history: StringBuilder,
    ip_proto: Int32Builder,
    tunnel_parents: ListBuilder<StringBuilder>,
}

impl Default for FlowColumns {
    fn default() -> Self {
        let n = FLOW_BATCH;
        FlowColumns {
            ts: TimestampMicrosecondBuilder::with_capacity(n),
            uid: StringBuilder::with_capacity(n, n * 18),
            orig_h: StringBuilder::with_capacity(n, n * 14),
            orig_p: Int32Builder::with_capacity(n),
            resp_h: StringBuilder::with_capacity(n, n * 14),
            resp_p: Int32Builder::with_capacity(n),
            proto: StringBuilder::with_capacity(n, n * 4),
            service: StringBuilder::with_capacity(n, n * 4),
            duration: Float64Builder::with_capacity(n),
            counts: std::array::from_fn(|_| Int64Builder::with_capacity(n)),
            conn_state: StringBuilder::with_capacity(n, n * 3),
            history: StringBuilder::with_capacity(n, n * 6),
            ip_proto: Int32Builder::with_capacity(n),
            tunnel_parents: ListBuilder::new(StringBuilder::new()),
        }
    }
}

impl FlowColumns {
    /// Flows added since the last [`FlowColumns::finish`] or [`FlowColumns::finish_arrays`].
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_counts(&mut self, values: [Option<i64>; 9]) {
        for (b, v) in self.counts.iter_mut().zip(values) {
            b.append_option(v);
        }
    }

    /// Adds a row read from a log (Zeek's unset values are nulls).
    pub fn push_row(&mut self, r: &FlowRow) {
        self.ts.append_value(r.ts_us);
        self.uid.append_value(&r.uid);
        self.orig_h.append_value(&r.orig_h);
        self.orig_p.append_option(r.orig_p);
        self.resp_h.append_value(&r.resp_h);
        self.resp_p.append_option(r.resp_p);
        self.proto.append_value(&r.proto);
        self.service.append_option(r.service.as_deref());
        self.duration.append_option(r.duration);
        self.push_counts([
            r.orig_bytes,
            r.resp_bytes,
            r.missed_bytes,
            r.orig_pkts,
            r.orig_ip_bytes,
            r.resp_pkts,
            r.resp_ip_bytes,
            r.orig_frame_bytes,
            r.resp_frame_bytes,
        ]);
        self.conn_state.append_option(r.conn_state.as_deref());
        self.history.append_option(r.history.as_deref());
        self.ip_proto.append_option(r.ip_proto);
        self.push_tunnel_parents(r.tunnel_parents.as_deref());
    }

    /// A NULL when unset (outside any tunnel), else the list of uids.
    fn push_tunnel_parents(&mut self, parents: Option<&[String]>) {
        match parents {
            Some(uids) => {
                for uid in uids {
                    self.tunnel_parents.values().append_value(uid);
                }
                self.tunnel_parents.append(true);
            }
            None => self.tunnel_parents.append_null(),
        }
    }

    /// Adds a flow assembled from packets: the same values as `push_row(&row_of_record(f))`
    /// (a test holds them equal), without a string allocated per field.
    pub fn push_record(&mut self, f: &FlowRecord) {
        self.ts.append_value(f.ts_ns.div_euclid(1000));
        self.uid.append_value(&f.uid);
        push_addr(&mut self.orig_h, f.orig_h);
        self.orig_p.append_value(i32::from(f.orig_p));
        push_addr(&mut self.resp_h, f.resp_h);
        self.resp_p.append_value(i32::from(f.resp_p));
        self.proto.append_value(f.proto);
        self.service.append_option(f.service);
        self.duration.append_value(f.duration_ns as f64 / 1e9);
        self.push_counts([
            Some(i64_of(f.orig_bytes)),
            Some(i64_of(f.resp_bytes)),
            Some(i64_of(f.missed_bytes)),
            Some(i64_of(f.orig_pkts)),
            Some(i64_of(f.orig_ip_bytes)),
            Some(i64_of(f.resp_pkts)),
            Some(i64_of(f.resp_ip_bytes)),
            Some(i64_of(f.orig_frame_bytes)),
            Some(i64_of(f.resp_frame_bytes)),
        ]);
        self.conn_state.append_value(f.conn_state);
        self.history.append_value(&f.history);
        self.ip_proto.append_value(i32::from(f.ip_proto));
        self.push_tunnel_parents((!f.tunnel_parents.is_empty()).then_some(&f.tunnel_parents[..]));
    }

    /// The flows added so far as a batch of `table`'s columns, all from import `import_id` of
    /// `source`; the builders start over empty.
    pub fn finish(&mut self, table: &str, import_id: i64, source: &str) -> Result<RecordBatch> {
        self.finish_arrays().into_batch(table, import_id, source)
    }

    /// The flows added so far as columns, without the two that say which import they are from:
    /// a capture's reading thread builds these before the database is open. The builders start
    /// over empty.
    pub fn finish_arrays(&mut self) -> FlowArrays {
        // Builders give up their buffers when they finish: start over with full-size ones, not
        // empty ones that grow by doubling again.
        let mut full = std::mem::take(self);
        let [orig_bytes, resp_bytes, missed_bytes, orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes, orig_frame_bytes, resp_frame_bytes] =
            full.counts.each_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        FlowArrays {
            len: full.len(),
            columns: [
                Arc::new(full.ts.finish()),
                Arc::new(full.uid.finish()),
                Arc::new(full.orig_h.finish()),
                Arc::new(full.orig_p.finish()),
                Arc::new(full.resp_h.finish()),
                Arc::new(full.resp_p.finish()),
                Arc::new(full.proto.finish()),
                Arc::new(full.service.finish()),
                Arc::new(full.duration.finish()),
                orig_bytes,
                resp_bytes,
                Arc::new(full.conn_state.finish()),
                missed_bytes,
                Arc::new(full.history.finish()),
                orig_pkts,
                orig_ip_bytes,
                resp_pkts,
                resp_ip_bytes,
                orig_frame_bytes,
                resp_frame_bytes,
                Arc::new(full.ip_proto.finish()),
            ],
            tunnel_parents: Arc::new(full.tunnel_parents.finish()),
        }
    }
}

/// The columns of `flows` between `import_id` and `source_file`, in the table's order.
const FLOW_ARRAY_NAMES: [&str; 21] = [
    "ts",
    "uid",
    "orig_h",
    "orig_p",
    "resp_h",
    "resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "orig_frame_bytes",
    "resp_frame_bytes",
    "ip_proto",
];

/// A batch of flows in columns, all but `import_id` and `source_file` (see
/// [`FlowColumns::finish_arrays`]).
pub struct FlowArrays {
    len: usize,
    columns: [ArrayRef; 21],
    /// After `source_file` in the table (migration 21 added it).
    tunnel_parents: ArrayRef,
}

impl FlowArrays {
    /// Flows in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The batch of `table`'s columns, all from import `import_id` of `source`.
    pub fn into_batch(self, table: &str, import_id: i64, source: &str) -> Result<RecordBatch> {
        let n = self.len;
        let import: ArrayRef = Arc::new(Int64Array::from_value(import_id, n));
        let source: ArrayRef = Arc::new(StringArray::from_iter_values(std::iter::repeat_n(source, n)));
        let columns = std::iter::once(("import_id", import))
            .chain(FLOW_ARRAY_NAMES.into_iter().zip(self.columns))
            .chain(std::iter::once(("source_file", source)))
            .chain(std::iter::once(("tunnel_parents", self.tunnel_parents)));
        batch(table, columns.collect())
    }
}

/// Packet rows as a batch of `packets`' columns.
pub fn packet_batch(import_id: i64, rows: &[PacketRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut import = Int64Builder::with_capacity(n);
    let mut no = Int64Builder::with_capacity(n);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n);
    let mut src = StringBuilder::with_capacity(n, n * 14);
    let mut src_p = Int32Builder::with_capacity(n);
    let mut dst = StringBuilder::with_capacity(n, n * 14);
    let mut dst_p = Int32Builder::with_capacity(n);
    let mut proto = StringBuilder::with_capacity(n, n * 3);
    let mut ip_proto = Int32Builder::with_capacity(n);
    let mut frame_len = Int32Builder::with_capacity(n);
    let mut cap_len = Int32Builder::with_capacity(n);
    let mut ip_len = Int32Builder::with_capacity(n);
    let mut payload_len = Int32Builder::with_capacity(n);
    let mut flags = StringBuilder::with_capacity(n, n * 2);
    let mut uid = StringBuilder::with_capacity(n, n * 18);
    let mut from_orig = BooleanBuilder::with_capacity(n);
    let as_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    for r in rows {
        import.append_value(import_id);
        no.append_value(i64_of(r.packet_no));
        ts.append_value(r.ts_ns.div_euclid(1000));
        src.append_option(r.src.map(|a| a.to_string()));
        src_p.append_option(r.src_p.map(i32::from));
        dst.append_option(r.dst.map(|a| a.to_string()));
        dst_p.append_option(r.dst_p.map(i32::from));
        proto.append_value(r.proto.text());
        ip_proto.append_option(r.ip_proto.map(i32::from));
        frame_len.append_value(as_i32(r.frame_len));
        cap_len.append_value(as_i32(r.cap_len));
        ip_len.append_option(r.ip_len.map(as_i32));
        payload_len.append_option(r.payload_len.map(as_i32));
        flags.append_option(r.tcp_flags.map(netlens_packets::decode::flag_letters));
        uid.append_option(r.flow_uid.as_ref().and_then(|u| std::str::from_utf8(&u[..]).ok()));
        from_orig.append_option(r.from_orig);
    }
    let columns: Vec<(&'static str, ArrayRef)> = vec![
        ("import_id", Arc::new(import.finish())),
        ("packet_no", Arc::new(no.finish())),
        ("ts", Arc::new(ts.finish())),
        ("src_h", Arc::new(src.finish())),
        ("src_p", Arc::new(src_p.finish())),
        ("dst_h", Arc::new(dst.finish())),
        ("dst_p", Arc::new(dst_p.finish())),
        ("proto", Arc::new(proto.finish())),
        ("ip_proto", Arc::new(ip_proto.finish())),
        ("frame_len", Arc::new(frame_len.finish())),
        ("cap_len", Arc::new(cap_len.finish())),
        ("ip_len", Arc::new(ip_len.finish())),
        ("payload_len", Arc::new(payload_len.finish())),
        ("tcp_flags", Arc::new(flags.finish())),
        ("flow_uid", Arc::new(uid.finish())),
        ("from_orig", Arc::new(from_orig.finish())),
    ];
    batch("packets", columns)
}

/// Lines of Zeek's tunnel.log as a batch of `tunnels`' columns.
pub fn tunnel_batch(import_id: i64, lines: &[TunnelRecord]) -> Result<RecordBatch> {
    let n = lines.len();
    let mut import = Int64Builder::with_capacity(n);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n);
    let mut uid = StringBuilder::with_capacity(n, n * 18);
    let mut orig_h = StringBuilder::with_capacity(n, n * 14);
    let mut orig_p = Int32Builder::with_capacity(n);
    let mut resp_h = StringBuilder::with_capacity(n, n * 14);
    let mut resp_p = Int32Builder::with_capacity(n);
    let mut kind = StringBuilder::with_capacity(n, n * 14);
    let mut action = StringBuilder::with_capacity(n, n * 16);
    for l in lines {
        let (oh, op, rh, rp) = l.endpoints;
        import.append_value(import_id);
        ts.append_value(l.ts_ns.div_euclid(1000));
        uid.append_value(&l.uid);
        push_addr(&mut orig_h, oh);
        orig_p.append_value(i32::from(op));
        push_addr(&mut resp_h, rh);
        resp_p.append_value(i32::from(rp));
        kind.append_value(format!("Tunnel::{}", l.tunnel.name()));
        action.append_value(l.action.name());
    }
    let columns: Vec<(&'static str, ArrayRef)> = vec![
        ("import_id", Arc::new(import.finish())),
        ("ts", Arc::new(ts.finish())),
        ("uid", Arc::new(uid.finish())),
        ("orig_h", Arc::new(orig_h.finish())),
        ("orig_p", Arc::new(orig_p.finish())),
        ("resp_h", Arc::new(resp_h.finish())),
        ("resp_p", Arc::new(resp_p.finish())),
        ("tunnel_type", Arc::new(kind.finish())),
        ("action", Arc::new(action.finish())),
    ];
    batch("tunnels", columns)
}

/// Makes sure `table` can take flows: `flows` itself, or a table of the same columns
/// (created, with the same column descriptions, when it does not exist yet).
pub fn ensure_flow_table(store: &Store, table: &str) -> Result<()> {
    if table.eq_ignore_ascii_case("flows") {
        return Ok(());
    }
    let want = store.columns_of("flows")?;
    if store.relation_exists(table)? {
        let have = store.columns_of(table)?;
        if have != want {
            return Err(Error::Usage(format!(
                "table '{table}' exists but does not have the columns of flows ({})\n  hint: pick another --table name, or drop that table",
                want.join(", ")
            )));
        }
        return Ok(());
    }
    let t = quote_ident(table);
    let sql = format!(
        "CREATE TABLE {t} AS SELECT * FROM flows LIMIT 0; \
         COMMENT ON TABLE {t} IS 'Flows imported with --table {}: the same columns as flows (see its column comments).';",
        table.replace('\'', "''")
    );
    store.conn().execute_batch(&sql).map_err(Error::sql)?;
    // Carry the column descriptions over, so .schema explains this table too.
    let comments: Vec<(String, String)> = store
        .conn()
        .prepare(
            "SELECT column_name, comment FROM duckdb_columns() WHERE table_name = 'flows' AND comment IS NOT NULL \
             AND database_name = current_database()",
        )
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(Error::sql)?;
    for (column, comment) in comments {
        store
            .conn()
            .execute_batch(&format!(
                "COMMENT ON COLUMN {t}.{} IS '{}'",
                quote_ident(&column),
                comment.replace('\'', "''")
            ))
            .map_err(Error::sql)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;

    #[test]
    fn the_writer_flushes_in_whole_row_groups_and_keeps_every_row() {
        let store = Store::open(&Location::Memory, false).unwrap();
        store.conn().execute_batch("CREATE TABLE t (x BIGINT)").unwrap();
        let count = || -> usize {
            store
                .conn()
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap()
        };
        let rows = |from: i64, n: usize| {
            let column: ArrayRef = Arc::new(Int64Array::from_iter_values(from..from + n as i64));
            RecordBatch::try_from_iter([("x", column)]).unwrap()
        };
        let mut writer = TableWriter::new(&store, "t").unwrap();
        writer.write(rows(0, FLUSH_ROWS - 1)).unwrap();
        assert_eq!(count(), 0, "nothing is flushed before a whole FLUSH_ROWS");
        // This batch crosses the boundary: its first row completes the flush, the rest waits.
        writer.write(rows(FLUSH_ROWS as i64 - 1, 10)).unwrap();
        assert_eq!(count(), FLUSH_ROWS);
        writer.write(rows(FLUSH_ROWS as i64 + 9, 0)).unwrap();
        // A batch over two boundaries: two flushes in it, and 14 rows left.
        writer.write(rows(FLUSH_ROWS as i64 + 9, 2 * FLUSH_ROWS + 5)).unwrap();
        assert_eq!(count(), 3 * FLUSH_ROWS);
        writer.finish().unwrap();
        let total = 3 * FLUSH_ROWS + 14;
        assert_eq!(count(), total);
        let (distinct, max): (usize, i64) = store
            .conn()
            .query_row("SELECT count(DISTINCT x), max(x) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((distinct, max), (total, total as i64 - 1));
    }

    fn record(orig_h: IpAddr, resp_h: IpAddr) -> FlowRecord {
        FlowRecord {
            uid: "CAbcdefghijklmnopq".to_string(),
            ts_ns: -1_500,
            duration_ns: 2_500_000_001,
            orig_h,
            orig_p: 65535,
            resp_h,
            resp_p: 443,
            proto: "tcp",
            ip_proto: 6,
            service: Some("ssl"),
            orig_bytes: u64::MAX,
            resp_bytes: 7,
            conn_state: "SF",
            history: "ShADadFf".to_string(),
            orig_pkts: 10,
            orig_ip_bytes: 1000,
            resp_pkts: 9,
            resp_ip_bytes: 900,
            orig_frame_bytes: 1140,
            resp_frame_bytes: 1026,
            orig_payload_seen: 5,
            resp_payload_seen: 7,
            first_packet: 3,
            missed_bytes: 12,
            tunnel_parents: Vec::new(),
            carried_tunnel: false,
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut b = StringBuilder::new();
        let addrs: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "192.168.1.10",
            "1.22.133.4",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.1.2.3",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for a in &addrs {
            push_addr(&mut b, *a);
        }
        let out = b.finish();
        for (i, a) in addrs.iter().enumerate() {
            assert_eq!(out.value(i), a.to_string());
        }
    }

    #[test]
    fn a_record_gives_the_same_row_as_through_flow_row() {
        let mut tunneled = record("10.9.0.1".parse().unwrap(), "10.9.0.2".parse().unwrap());
        tunneled.tunnel_parents = vec!["CParent1".to_string(), "CParent2".to_string()];
        let flows = [
            record("10.0.0.1".parse().unwrap(), "93.184.216.34".parse().unwrap()),
            record("fe80::1".parse().unwrap(), "2001:db8::2".parse().unwrap()),
            tunneled,
        ];
        let (mut direct, mut via_row) = (FlowColumns::default(), FlowColumns::default());
        for f in &flows {
            direct.push_record(f);
            via_row.push_row(&row_of_record(f.clone()));
        }
        assert_eq!(direct.len(), 3);
        let a = direct.finish("flows", 7, "a.pcap").unwrap();
        let b = via_row.finish("flows", 7, "a.pcap").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.num_columns(), 24);
        // Outside a tunnel the parents are unset (NULL), as Zeek leaves them.
        let parents = a.column_by_name("tunnel_parents").unwrap();
        assert_eq!(
            (parents.is_null(0), parents.is_null(1), parents.is_null(2)),
            (true, true, false)
        );
        assert!(direct.is_empty(), "finish starts the builders over");
    }
}
