//! Writing imported rows: flows and packets go into the store as Arrow record batches through
//! DuckDB's appender (as `store::snapshot` does), a bounded batch at a time, inside the one
//! transaction of their file's import. This is the only part of `ingest` that writes.

use std::net::IpAddr;
use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use duckdb::arrow::record_batch::RecordBatch;

use super::flow::FlowRecord;
use crate::error::{Error, Result};
use crate::store::{quote_ident, Store};

/// Flows buffered before an append.
pub const FLOW_BATCH: usize = 8192;
/// Packets buffered before an append.
pub const PACKET_BATCH: usize = 65_536;

/// One row of `flows`, from a capture or a Zeek log (Zeek's unset values are `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowRow {
    pub ts_us: i64,
    pub uid: String,
    pub orig_h: String,
    pub orig_p: Option<i32>,
    pub resp_h: String,
    pub resp_p: Option<i32>,
    pub proto: String,
    pub service: Option<String>,
    pub duration: Option<f64>,
    pub orig_bytes: Option<i64>,
    pub resp_bytes: Option<i64>,
    pub conn_state: Option<String>,
    pub missed_bytes: Option<i64>,
    pub history: Option<String>,
    pub orig_pkts: Option<i64>,
    pub orig_ip_bytes: Option<i64>,
    pub resp_pkts: Option<i64>,
    pub resp_ip_bytes: Option<i64>,
    pub orig_frame_bytes: Option<i64>,
    pub resp_frame_bytes: Option<i64>,
    pub ip_proto: Option<i32>,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl From<FlowRecord> for FlowRow {
    fn from(f: FlowRecord) -> Self {
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
            missed_bytes: None,
            history: Some(f.history),
            orig_pkts: Some(i64_of(f.orig_pkts)),
            orig_ip_bytes: Some(i64_of(f.orig_ip_bytes)),
            resp_pkts: Some(i64_of(f.resp_pkts)),
            resp_ip_bytes: Some(i64_of(f.resp_ip_bytes)),
            orig_frame_bytes: Some(i64_of(f.orig_frame_bytes)),
            resp_frame_bytes: Some(i64_of(f.resp_frame_bytes)),
            ip_proto: Some(i32::from(f.ip_proto)),
        }
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

fn append(store: &Store, table: &str, batch: RecordBatch) -> Result<()> {
    let mut appender = store.conn().appender(table).map_err(fail(table))?;
    appender.append_record_batch(batch).map_err(fail(table))?;
    appender.flush().map_err(fail(table))
}

fn batch(table: &str, columns: Vec<(&'static str, ArrayRef)>) -> Result<RecordBatch> {
    RecordBatch::try_from_iter(columns).map_err(|e| Error::Import {
        path: table.into(),
        reason: format!("building a record batch: {e}"),
    })
}

/// Appends flows to `table` (which has the columns of `flows`).
pub fn append_flows(store: &Store, table: &str, import_id: i64, source: &str, rows: &[FlowRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let n = rows.len();
    let mut import = Int64Builder::with_capacity(n);
    let mut ts = TimestampMicrosecondBuilder::with_capacity(n);
    let mut uid = StringBuilder::with_capacity(n, n * 18);
    let mut orig_h = StringBuilder::with_capacity(n, n * 14);
    let mut orig_p = Int32Builder::with_capacity(n);
    let mut resp_h = StringBuilder::with_capacity(n, n * 14);
    let mut resp_p = Int32Builder::with_capacity(n);
    let mut proto = StringBuilder::with_capacity(n, n * 3);
    let mut service = StringBuilder::with_capacity(n, n * 4);
    let mut duration = Float64Builder::with_capacity(n);
    let mut ints: Vec<Int64Builder> = (0..9).map(|_| Int64Builder::with_capacity(n)).collect();
    let mut conn_state = StringBuilder::with_capacity(n, n * 3);
    let mut history = StringBuilder::with_capacity(n, n * 6);
    let mut ip_proto = Int32Builder::with_capacity(n);
    let mut source_file = StringBuilder::with_capacity(n, n * source.len());
    for r in rows {
        import.append_value(import_id);
        ts.append_value(r.ts_us);
        uid.append_value(&r.uid);
        orig_h.append_value(&r.orig_h);
        orig_p.append_option(r.orig_p);
        resp_h.append_value(&r.resp_h);
        resp_p.append_option(r.resp_p);
        proto.append_value(&r.proto);
        service.append_option(r.service.as_deref());
        duration.append_option(r.duration);
        conn_state.append_option(r.conn_state.as_deref());
        history.append_option(r.history.as_deref());
        for (b, v) in ints.iter_mut().zip([
            r.orig_bytes,
            r.resp_bytes,
            r.missed_bytes,
            r.orig_pkts,
            r.orig_ip_bytes,
            r.resp_pkts,
            r.resp_ip_bytes,
            r.orig_frame_bytes,
            r.resp_frame_bytes,
        ]) {
            b.append_option(v);
        }
        ip_proto.append_option(r.ip_proto);
        source_file.append_value(source);
    }
    let mut ints = ints.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut next = || ints.next().ok_or_else(|| Error::Usage("internal: column count".into()));
    let (orig_bytes, resp_bytes, missed_bytes) = (next()?, next()?, next()?);
    let (orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes) = (next()?, next()?, next()?, next()?);
    let (orig_frame_bytes, resp_frame_bytes) = (next()?, next()?);
    let columns: Vec<(&'static str, ArrayRef)> = vec![
        ("import_id", Arc::new(import.finish())),
        ("ts", Arc::new(ts.finish())),
        ("uid", Arc::new(uid.finish())),
        ("orig_h", Arc::new(orig_h.finish())),
        ("orig_p", Arc::new(orig_p.finish())),
        ("resp_h", Arc::new(resp_h.finish())),
        ("resp_p", Arc::new(resp_p.finish())),
        ("proto", Arc::new(proto.finish())),
        ("service", Arc::new(service.finish())),
        ("duration", Arc::new(duration.finish())),
        ("orig_bytes", orig_bytes),
        ("resp_bytes", resp_bytes),
        ("conn_state", Arc::new(conn_state.finish())),
        ("missed_bytes", missed_bytes),
        ("history", Arc::new(history.finish())),
        ("orig_pkts", orig_pkts),
        ("orig_ip_bytes", orig_ip_bytes),
        ("resp_pkts", resp_pkts),
        ("resp_ip_bytes", resp_ip_bytes),
        ("orig_frame_bytes", orig_frame_bytes),
        ("resp_frame_bytes", resp_frame_bytes),
        ("ip_proto", Arc::new(ip_proto.finish())),
        ("source_file", Arc::new(source_file.finish())),
    ];
    append(store, table, batch(table, columns)?)
}

/// Appends packet rows to `packets`.
pub fn append_packets(store: &Store, import_id: i64, rows: &[PacketRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
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
        flags.append_option(r.tcp_flags.map(super::decode::flag_letters));
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
    append(store, "packets", batch("packets", columns)?)
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
