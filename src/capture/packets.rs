//! Live packets: `netlens capture --packets IFACE` reads packets from an interface and turns
//! them into `flows` (and, when asked, `packets`) through the same flow engine as `import pcap`
//! ([`crate::ingest::FlowAssembly`]), so a live capture and the import of a pcap of the same
//! traffic give the same rows.
//!
//! Why libpcap (the `pcap` crate) and not AF_PACKET through libc: `--filter` takes tcpdump's
//! BPF expressions, and only libpcap compiles them (AF_PACKET takes compiled programs; netlens
//! would have had to carry a compiler of its own or run tcpdump for it). On Linux libpcap reads
//! AF_PACKET TPACKET_V3 rings itself (memory-mapped blocks, no copy or system call per packet),
//! which is the speed the alternative would have had; and it writes `--write-pcap` files that
//! every tool reads. The cost is linking libpcap (libpcap-dev to build, libpcap0.8 to run).
//!
//! Threads: a reader thread owns the libpcap handle; it decodes, assembles flows, ends idle
//! flows once a second, and hands finished flows and packet rows over a bounded channel. The
//! calling thread stores each batch in a transaction of its own, so flows are in the database
//! as they finish; the flows still open are stored when the capture stops (Ctrl-C, the
//! duration, or an error such as the interface going away). The kernel's receive and drop
//! counters are stored per run in `packet_captures`.
//!
//! May use `ingest` (the flow engine, the `imports` row) and `store`; reads the OS only
//! through libpcap.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ingest::{self, Batch, FlowAssembly, ImportReport, PcapOptions};
use crate::interrupt;
use crate::store::Store;

/// libpcap's default snapshot length (tcpdump's too): whole frames.
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// How long libpcap waits for a block of packets before it hands over what it has: the reader
/// sees Ctrl-C, the duration and idle flows at least this often.
const READ_TIMEOUT_MS: i32 = 100;

/// Kernel buffer of the capture: 64 MiB holds about a second of 1 Gbit/s, so a short stall of
/// the reader (a DuckDB checkpoint on the storing thread shares the CPU) drops nothing.
const BUFFER_BYTES: i32 = 64 << 20;

/// Packets may reach the reader this long after their timestamp (libpcap hands over blocks
/// every [`READ_TIMEOUT_MS`]); idle flows are ended only this far behind the clock, so no
/// packet of theirs can still come, and the flows are those an import of the same packets
/// gives.
const LATE_PACKETS_NS: i64 = 2_000_000_000;

/// `capture --packets`: where and how to capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketCaptureRequest {
    /// Interface name (`any` for every interface).
    pub interface: String,
    /// BPF filter expression (tcpdump syntax).
    pub filter: Option<String>,
    pub snaplen: u32,
    /// Also write every captured packet to this pcap file.
    pub write_pcap: Option<PathBuf>,
    /// Also write one `packets` row per packet.
    pub packet_rows: bool,
    /// Stop after this long (else at Ctrl-C).
    pub duration: Option<Duration>,
}

/// A running capture's counters, for `netlens status` while `serve --packets` captures: the
/// values its `packet_captures` and `imports` rows get at the end, as of about a second ago.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// The capture's `imports.import_id`; 0 until the capture has started.
    pub import_id: AtomicI64,
    /// Packets read from the kernel.
    pub packets: AtomicU64,
    /// Flows stored so far.
    pub flows: AtomicU64,
    /// Flows open in memory (stored when they finish).
    pub active_flows: AtomicU64,
    /// libpcap's ps_recv and ps_drop; `u64::MAX` while unknown.
    pub kernel_received: AtomicU64,
    pub kernel_dropped: AtomicU64,
}

impl LiveCounters {
    pub fn new() -> Self {
        let c = LiveCounters::default();
        c.kernel_received.store(u64::MAX, Ordering::Relaxed);
        c.kernel_dropped.store(u64::MAX, Ordering::Relaxed);
        c
    }

    /// Takes libpcap's kernel counters.
    fn set_kernel(&self, stats: pcap::Stat) {
        self.kernel_received.store(u64::from(stats.received), Ordering::Relaxed);
        self.kernel_dropped.store(u64::from(stats.dropped), Ordering::Relaxed);
    }

    /// A kernel counter, `None` while unknown.
    pub fn kernel(counter: &AtomicU64) -> Option<u64> {
        Some(counter.load(Ordering::Relaxed)).filter(|&v| v != u64::MAX)
    }
}

/// What a live capture did.
#[derive(Debug, Clone)]
pub struct PacketCaptureReport {
    pub import: ImportReport,
    pub link_type: i32,
    pub kernel_received: Option<u64>,
    pub kernel_dropped: Option<u64>,
    pub interface_dropped: Option<u64>,
    pub stop_reason: String,
    /// True when it stopped for an error (the rows before it are stored).
    pub failed: bool,
}

/// Why the reader stopped.
enum Stop {
    Interrupted,
    Duration,
    Failed(String),
}

/// What the reader thread returns.
struct ReaderEnd {
    packets: u64,
    stop: Stop,
    stats: Option<pcap::Stat>,
    assembly: FlowAssembly,
    pcap_error: Option<String>,
}

fn open_error(req: &PacketCaptureRequest, e: pcap::Error) -> Error {
    let text = e.to_string();
    let mut hint = String::new();
    if text.contains("ermission") || text.contains("not permitted") {
        hint = "\n  hint: capturing packets needs root or CAP_NET_RAW (setcap cap_net_raw+ep on the netlens binary)"
            .to_string();
    } else if text.contains("No such device") || text.contains("doesn't exist") || text.contains("no such") {
        let names: Vec<String> = pcap::Device::list()
            .map(|list| list.into_iter().map(|d| d.name).collect())
            .unwrap_or_default();
        hint = format!("\n  hint: interfaces here: {}", names.join(", "));
    }
    Error::Usage(format!(
        "cannot capture packets on interface {:?}: {text}{hint}",
        req.interface
    ))
}

/// Opens the interface, sets the filter and the pcap file. Errors name what failed.
fn open(req: &PacketCaptureRequest) -> Result<(pcap::Capture<pcap::Active>, Option<pcap::Savefile>)> {
    if req.snaplen == 0 || req.snaplen > DEFAULT_SNAPLEN {
        return Err(Error::Usage(format!(
            "--snaplen {} is out of range: give 1 to {DEFAULT_SNAPLEN} bytes",
            req.snaplen
        )));
    }
    let inactive = pcap::Capture::from_device(req.interface.as_str()).map_err(|e| open_error(req, e))?;
    let mut cap = inactive
        .snaplen(req.snaplen as i32)
        .promisc(false)
        .timeout(READ_TIMEOUT_MS)
        .buffer_size(BUFFER_BYTES)
        .precision(pcap::Precision::Nano)
        .open()
        .and_then(|cap| cap.setnonblock())
        .map_err(|e| open_error(req, e))?;
    if let Some(filter) = &req.filter {
        cap.filter(filter, true).map_err(|e| {
            Error::Usage(format!(
                "--filter {filter:?} is not a BPF expression libpcap accepts: {e}\n  hint: it takes tcpdump's syntax, e.g. \"tcp port 443 or udp\""
            ))
        })?;
    }
    let savefile = match &req.write_pcap {
        Some(path) => Some(cap.savefile(path).map_err(|e| Error::Import {
            path: path.clone(),
            reason: format!("cannot write the pcap file: {e}"),
        })?),
        None => None,
    };
    Ok((cap, savefile))
}

/// Wall-clock time in nanoseconds since the epoch (the clock packets are stamped with).
fn wall_ns() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Waits until `fd` has something to read, at most `timeout_ms`.
fn wait_readable(fd: std::os::fd::RawFd, timeout_ms: i32) {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the length of the call; the descriptor stays open (the
    // capture owns it and outlives the call). An error or EINTR just ends the wait early.
    unsafe {
        libc::poll(&mut poll, 1, timeout_ms);
    }
}

/// What the reader keeps while it reads: the flow engine and the pcap file.
struct Reader {
    linktype: u32,
    packets: u64,
    savefile: Option<pcap::Savefile>,
    assembly: FlowAssembly,
}

impl Reader {
    #[inline]
    fn packet(&mut self, p: &pcap::Packet<'_>) {
        self.packets += 1;
        // Nanosecond precision was asked for: tv_usec holds nanoseconds.
        // time_t and suseconds_t are i64 here, narrower elsewhere.
        #[allow(clippy::unnecessary_cast)]
        let ts_ns = (p.header.ts.tv_sec as i64) * 1_000_000_000 + p.header.ts.tv_usec as i64;
        if let Some(file) = self.savefile.as_mut() {
            file.write(p);
        }
        self.assembly
            .packet(self.packets, ts_ns, p.header.len, self.linktype, p.data);
    }
}

/// Packets between two looks at the clock, Ctrl-C and the storing side while packets come.
const CHECK_EVERY: u64 = 256;

/// The reader thread: packets through the flow engine until told to stop or libpcap fails.
fn read_packets(
    mut cap: pcap::Capture<pcap::Active>,
    savefile: Option<pcap::Savefile>,
    assembly: FlowAssembly,
    deadline: Option<Instant>,
    tx: std::sync::mpsc::SyncSender<Batch>,
    abandoned: &AtomicBool,
    counters: &LiveCounters,
) -> ReaderEnd {
    let fd = cap.as_raw_fd();
    let mut r = Reader {
        linktype: cap.get_datalink().0 as u32,
        packets: 0,
        savefile,
        assembly,
    };
    let mut last_flush = Instant::now();
    let mut pcap_error = None;
    let stop = loop {
        let idle = match cap.next_packet() {
            Ok(p) => {
                r.packet(&p);
                if r.assembly.send_full(&tx).is_err() {
                    break Stop::Failed("storing stopped".to_string());
                }
                false
            }
            // Non-blocking: nothing waiting. Wait for the descriptor a while (libpcap's own
            // timeout does not fire on TPACKET_V3 while no packet comes at all, and Ctrl-C and
            // the duration must be seen on a quiet interface too).
            Err(pcap::Error::TimeoutExpired) => {
                wait_readable(fd, READ_TIMEOUT_MS);
                true
            }
            Err(e) => {
                pcap_error = Some(e.to_string());
                break Stop::Failed(format!("reading packets failed: {e}"));
            }
        };
        if !idle && !r.packets.is_multiple_of(CHECK_EVERY) {
            continue;
        }
        if last_flush.elapsed() >= Duration::from_secs(1) {
            last_flush = Instant::now();
            r.assembly.expire_idle(wall_ns() - LATE_PACKETS_NS);
            counters.packets.store(r.packets, Ordering::Relaxed);
            counters
                .active_flows
                .store(r.assembly.active_flows() as u64, Ordering::Relaxed);
            if let Ok(stats) = cap.stats() {
                counters.set_kernel(stats);
            }
            if r.assembly.send_all(&tx).is_err() {
                break Stop::Failed("storing stopped".to_string());
            }
        }
        if interrupt::requested() {
            break Stop::Interrupted;
        }
        if abandoned.load(Ordering::Relaxed) {
            break Stop::Failed("storing stopped".to_string());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Stop::Duration;
        }
    };
    if matches!(stop, Stop::Interrupted | Stop::Duration) {
        // The kernel hands over a block of packets when it is full or READ_TIMEOUT_MS old: the
        // packets that came just before the stop are still in one. Wait for it, and take them.
        let until = Instant::now() + Duration::from_millis(2 * READ_TIMEOUT_MS as u64);
        loop {
            match cap.next_packet() {
                Ok(p) => r.packet(&p),
                Err(pcap::Error::TimeoutExpired) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    wait_readable(fd, left.as_millis().max(1) as i32);
                }
                Err(_) => break,
            }
            if r.assembly.send_full(&tx).is_err() {
                break;
            }
        }
    }
    let stats = cap.stats().ok();
    if let Some(mut file) = r.savefile.take() {
        if let Err(e) = file.flush() {
            pcap_error.get_or_insert(format!("writing the pcap file: {e}"));
        }
    }
    r.assembly.finish_all();
    let _ = r.assembly.send_all(&tx);
    ReaderEnd {
        packets: r.packets,
        stop,
        stats,
        assembly: r.assembly,
        pcap_error,
    }
}

/// What a live capture inside a server (`serve --packets`) shares with it.
pub struct ServerHold<'a> {
    /// Held shared by everything that uses the database, this capture whenever it writes, so
    /// the server's upkeep, which takes it alone, never runs in the middle of a write.
    pub in_use: &'a std::sync::RwLock<()>,
    /// True while the server's file is detached because attaching it again failed: writes
    /// would fail, so they wait (the reader then waits too, and the kernel counts the packets
    /// it drops).
    pub detached: &'a AtomicBool,
}

impl ServerHold<'_> {
    /// Holds the lock shared once the file is attached (or the capture is asked to stop).
    pub(crate) fn before_writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        loop {
            let held = self.in_use.read().unwrap_or_else(|p| p.into_inner());
            if !self.detached.load(Ordering::Relaxed) || interrupt::requested() {
                return held;
            }
            drop(held);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Runs a live capture into `store` until Ctrl-C, the duration, or an error; stores the flows
/// as they finish and the open ones at the end, and the run in `imports` and `packet_captures`.
pub fn run(store: &Store, req: &PacketCaptureRequest) -> Result<PacketCaptureReport> {
    run_counted(store, req, Arc::new(LiveCounters::new()), None)
}

/// [`run`], keeping `counters` up to date (about once a second) while it runs.
/// `server`: the hold of the server this capture runs in, if any.
pub fn run_counted(
    store: &Store,
    req: &PacketCaptureRequest,
    counters: Arc<LiveCounters>,
    server: Option<ServerHold<'_>>,
) -> Result<PacketCaptureReport> {
    let using = || server.as_ref().map(ServerHold::before_writing);
    let started = Instant::now();
    let started_at = Utc::now();
    let opts = PcapOptions {
        table: "flows".to_string(),
        packets: req.packet_rows,
        timeouts: Default::default(),
    };
    if store.is_read_only() {
        return Err(Error::Usage(format!(
            "{} is open read-only; capture needs to write\n  hint: drop --read-only",
            store.location().display()
        )));
    }
    let (cap, savefile) = open(req)?;
    let link_type = cap.get_datalink().0;
    let source = format!("live:{}", req.interface);
    let import_id = {
        let _using = using();
        ingest::start_live_import(store, &source, &opts)?
    };
    counters.import_id.store(import_id, Ordering::Relaxed);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
    let abandoned = Arc::new(AtomicBool::new(false));
    let assembly = FlowAssembly::new(&opts);
    let deadline = req.duration.map(|d| started + d);
    let reader_abandoned = Arc::clone(&abandoned);
    let reader_counters = Arc::clone(&counters);
    let reader = std::thread::Builder::new()
        .name("netlens-packets".to_string())
        .spawn(move || {
            read_packets(
                cap,
                savefile,
                assembly,
                deadline,
                tx,
                &reader_abandoned,
                &reader_counters,
            )
        })
        .map_err(|e| Error::Usage(format!("cannot start the packet reader thread: {e}")))?;
    // A capture of its own (not a server's, whose store is shared) attaches the file again
    // every so many rows, as the snapshot capture does, to free DuckDB's descriptions of the
    // row groups written.
    let store_held = |batch: Batch| {
        let rows = match &batch {
            Batch::Flows(flows) => flows.len(),
            Batch::Packets(rows) if opts.packets => rows.len(),
            Batch::Packets(_) => 0,
            Batch::Tunnels(lines) => lines.len(),
        };
        let _using = using();
        let flows = ingest::store_live_batch(store, &opts, import_id, &source, batch)?;
        store.stored_rows(rows)?;
        Ok(flows)
    };
    let mut flows = 0u64;
    let mut store_error = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(batch) => match store_held(batch) {
                Ok(n) => {
                    flows += n;
                    counters.flows.store(flows, Ordering::Relaxed);
                }
                Err(e) => {
                    abandoned.store(true, Ordering::Relaxed);
                    store_error = Some(e);
                    break;
                }
            },
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    drop(rx);
    let end = reader
        .join()
        .map_err(|_| Error::Usage("the packet reader stopped unexpectedly (a bug: please report it)".to_string()))?;
    if let Some(e) = store_error {
        return Err(e);
    }
    let mut import = ImportReport {
        import_id,
        path: PathBuf::from(&source),
        format: "live".to_string(),
        packets: end.packets,
        flows,
        ..Default::default()
    };
    end.assembly.fill_report(&mut import);
    let (stop_reason, failed) = match end.stop {
        Stop::Interrupted => ("ctrl-c".to_string(), false),
        Stop::Duration => ("duration".to_string(), false),
        Stop::Failed(reason) => (reason, true),
    };
    import.complete = !failed;
    if let Some(e) = &end.pcap_error {
        if !failed {
            import.warnings.push(e.clone());
        }
    }
    if failed {
        // For imports.notes; the reply's failure line says it on the terminal.
        import.notes.push(format!("the capture stopped: {stop_reason}"));
    }
    import.elapsed = started.elapsed();
    counters.packets.store(end.packets, Ordering::Relaxed);
    counters.active_flows.store(0, Ordering::Relaxed);
    if let Some(stats) = end.stats {
        counters.set_kernel(stats);
    }
    let report = PacketCaptureReport {
        import,
        link_type,
        kernel_received: end.stats.map(|s| u64::from(s.received)),
        kernel_dropped: end.stats.map(|s| u64::from(s.dropped)),
        interface_dropped: end.stats.map(|s| u64::from(s.if_dropped)),
        stop_reason,
        failed,
    };
    let _using = using();
    store.in_transaction(|conn| {
        ingest::end_live_import(store, &report.import)?;
        record_run(conn, req, &report, started_at)
    })?;
    Ok(report)
}

fn record_run(
    conn: &duckdb::Connection,
    req: &PacketCaptureRequest,
    r: &PacketCaptureReport,
    started_at: DateTime<Utc>,
) -> Result<()> {
    let n = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    conn.execute(
        "INSERT INTO packet_captures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        duckdb::params![
            r.import.import_id,
            req.interface,
            req.filter,
            i64::from(req.snaplen),
            r.link_type,
            req.write_pcap.as_ref().map(|p| p.to_string_lossy().into_owned()),
            started_at,
            Utc::now(),
            i64::try_from(r.import.packets).unwrap_or(i64::MAX),
            n(r.kernel_received),
            n(r.kernel_dropped),
            n(r.interface_dropped),
            r.stop_reason
        ],
    )
    .map_err(Error::sql)?;
    Ok(())
}

/// The summary line of a capture.
pub fn summary(r: &PacketCaptureReport, req: &PacketCaptureRequest) -> String {
    let counter = |v: Option<u64>| v.map_or("unknown".to_string(), |v| v.to_string());
    format!(
        "captured {} packets on {}{} in {:.1} s ({:.0} packets/s): {} flows, {} packets joined no flow; \
         kernel: {} received, {} dropped; stop: {}; import id {}",
        r.import.packets,
        req.interface,
        req.filter.as_ref().map(|f| format!(" ({f})")).unwrap_or_default(),
        r.import.elapsed.as_secs_f64(),
        r.import.packets as f64 / r.import.elapsed.as_secs_f64().max(1e-9),
        r.import.flows,
        r.import.skipped,
        counter(r.kernel_received),
        counter(r.kernel_dropped),
        r.stop_reason,
        r.import.import_id
    )
}
