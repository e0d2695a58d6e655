//! `netlens demo`: a synthetic but realistic database, so every command and stage can be tried on
//! a machine with no traffic and no root. Two parts:
//!
//! - A day (by default) of host history from [`DemoSource`], a [`Source`] like the live one,
//!   stored through the same capture path, so `connections`, `tcp_transitions` and every view are
//!   derived exactly as for live data. Snapshots carry `source = 'demo'`. Ordinary activity
//!   (a browser by day, DNS, an API server with LAN clients, a database pool, hourly backups) is
//!   mixed with injected behaviours at fixed fractions of the window: a backup burst (10 %), a
//!   long inbound SSH session (35-50 %), a SYN port scan of a LAN host (58 %), a stuck CLOSE_WAIT
//!   connection (60-68 %) and an exfiltration-like upload to a never-seen peer (86-89 %), plus
//!   a beacon every 5 minutes with 10 % jitter all day. Remote "internet" peers use the
//!   documentation ranges (RFC 5737 / RFC 3849), so no real host is named.
//! - `demo_traffic`: prototype 002's labelled 10-feature table (15 % anomalies of its 8 types).
//!
//! Everything is drawn from one seeded generator and the end time is passed in, so the same seed
//! and end time give the same rows. This module writes through `capture::run` and creates
//! `demo_traffic` and a `datasets` row; it refuses a database that holds other data.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::run::{self, Observer, Pace, RunReport};
use super::{InterfaceRecord, ProcessRecord, Proto, Snapshot, SocketRecord, Source, TcpCounterFields};
use crate::error::{Error, Result};
use crate::store::Store;

/// Host name of the synthetic history.
pub const DEMO_HOST: &str = "demo-host";
const HOST_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 10);
const HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Where each injected behaviour sits, as fractions of the window (documented in docs/import.md, "The demo").
pub mod injected {
    pub const BACKUP_BURST: f64 = 0.10;
    pub const SSH_SESSION: (f64, f64) = (0.35, 0.50);
    pub const PORT_SCAN: f64 = 0.58;
    pub const CLOSE_WAIT: (f64, f64) = (0.60, 0.68);
    pub const EXFILTRATION: (f64, f64) = (0.86, 0.89);
    /// The beacon's period and jitter (uniform, +-10 %).
    pub const BEACON_PERIOD_S: f64 = 300.0;
    pub const BEACON_JITTER: f64 = 0.10;
    pub const SCANNER: &str = "nmap";
    pub const SCAN_TARGET: &str = "192.168.1.30";
    pub const BEACON_PEER: &str = "203.0.113.66";
    pub const BEACON_PORT: u16 = 4433;
    pub const EXFIL_PEER: &str = "198.51.100.77";
}

/// A synthetic database: hours of host history ending at the run's end time, and the labelled
/// dataset's size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DemoRequest {
    pub hours: u32,
    /// Time between synthetic snapshots.
    pub interval: Duration,
    /// Seed of the generator: the same seed and end time give the same database.
    pub seed: u64,
    /// Rows of the labelled 10-feature dataset (demo_traffic).
    pub traffic_rows: u32,
}

/// What `demo` stored.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub capture: RunReport,
    pub traffic_rows: u64,
    pub traffic_anomalies: u64,
}

/// Builds the demo into `store`: refuses a database with other data, then stores the
/// synthetic snapshots and the labelled table. `end` is the time of the last snapshot.
pub fn run(store: &Store, args: &DemoRequest, end: DateTime<Utc>, observer: &mut dyn Observer) -> Result<DemoReport> {
    check_empty(store)?;
    let mut source = DemoSource::new(args.hours, args.interval, args.seed, end)?;
    let ticks = source.ticks();
    let pace = Pace {
        interval: args.interval,
        duration: None,
        count: Some(ticks),
        wait: false,
        // Stored in batches as large as the bounds allow: a day of demo snapshots is thousands.
        commit_every: Duration::MAX,
    };
    let clock = || end;
    let capture = run::run(store, &mut source, pace, None, &clock, observer)?;
    if capture.interrupted {
        return Err(Error::Usage(format!(
            "demo interrupted: {} of {ticks} synthetic snapshots are stored (marked demo), demo_traffic is not\n  hint: build the demo into a fresh file with --db OTHER_FILE",
            capture.snapshots
        )));
    }
    let (rows, anomalies) = write_traffic_table(store, args, &capture)?;
    Ok(DemoReport {
        capture,
        traffic_rows: rows,
        traffic_anomalies: anomalies,
    })
}

fn check_empty(store: &Store) -> Result<()> {
    if store.is_read_only() {
        return Err(Error::Usage(format!(
            "{} is open read-only; demo needs to write\n  hint: drop --read-only",
            store.location().display()
        )));
    }
    let conn = store.conn();
    let count = |sql: &str| -> Result<i64> { conn.query_row(sql, [], |r| r.get(0)).map_err(Error::sql) };
    let demo = count("SELECT count(*) FROM snapshots WHERE source = 'demo'")?;
    let finished = count("SELECT count(*) FROM datasets WHERE kind = 'demo'")?;
    let other = count("SELECT count(*) FROM snapshots WHERE source <> 'demo'")?
        + count("SELECT count(*) FROM flows")?
        + count("SELECT count(*) FROM datasets WHERE kind <> 'demo'")?;
    let location = store.location().display();
    if finished > 0 {
        return Err(Error::Usage(format!(
            "{location} already holds the demo\n  hint: query it as it is, or build a fresh one with --db OTHER_FILE"
        )));
    }
    if demo > 0 || store.relation_exists("demo_traffic")? {
        return Err(Error::Usage(format!(
            "{location} holds an unfinished demo (it was interrupted)\n  hint: build the demo into a fresh file with --db OTHER_FILE"
        )));
    }
    if other > 0 {
        return Err(Error::Usage(format!(
            "{location} holds captured or imported data; the demo never mixes synthetic rows with real ones\n  hint: netlens demo --db demo.duckdb"
        )));
    }
    Ok(())
}

fn record(store: &Store, args: &DemoRequest, capture: &RunReport, traffic_rows: u64) -> Result<()> {
    let notes = format!(
        "synthetic: seed {}, {} h of snapshots every {:?} ({} snapshots, {} socket rows, host {DEMO_HOST}); NOT real traffic",
        args.seed, args.hours, args.interval, capture.snapshots, capture.socket_rows
    );
    let columns = "id:BIGINT, packet_size:DOUBLE, duration:DOUBLE, src_bytes:BIGINT, dst_bytes:BIGINT, protocol_type:INTEGER, flag:INTEGER, src_port:INTEGER, dst_port:INTEGER, packet_rate:DOUBLE, error_rate:DOUBLE, label:INTEGER, anomaly_type:VARCHAR";
    store
        .conn()
        .execute(
            "INSERT INTO datasets VALUES ('demo_traffic', 'demo', NULL, ?, ?, ?, 'create', ?, ?)",
            duckdb::params![
                Utc::now(),
                i64::try_from(traffic_rows).unwrap_or(i64::MAX),
                columns,
                capture.elapsed.as_secs_f64(),
                notes
            ],
        )
        .map_err(Error::sql)?;
    Ok(())
}

/// One connection the generator planned: its endpoints, owner, the ticks it is seen in, and
/// how its counters grow.
#[derive(Debug, Clone)]
struct Planned {
    proto: Proto,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    pid: u32,
    /// First tick it is seen, and the tick after its last (exclusive).
    open: u64,
    close: u64,
    /// State in every tick it is seen (`ESTABLISHED`, `SYN_SENT`, `CLOSE_WAIT`, `CONNECTED`).
    state: &'static str,
    /// After closing, one tick in TIME_WAIT with no owner (an active close).
    time_wait: bool,
    sent_per_tick: u64,
    recv_per_tick: u64,
    rtt_us: u32,
    inode: u64,
}

/// A process the generator runs: seen from `from` to `until` (ticks, exclusive).
#[derive(Debug, Clone)]
struct DemoProcess {
    pid: u32,
    ppid: u32,
    name: &'static str,
    exe: &'static str,
    cmdline: &'static str,
    user: &'static str,
    uid: u32,
    cpu: f64,
    rss_mib: u64,
    from: u64,
    until: u64,
}

/// Replays the synthetic day, one snapshot per call; see the module doc.
pub struct DemoSource {
    start: DateTime<Utc>,
    interval: Duration,
    ticks: u64,
    tick: u64,
    planned: Vec<Planned>,
    /// Indices into `planned` of the connections seen at each tick (TIME_WAIT tick included).
    by_tick: Vec<Vec<u32>>,
    listeners: Vec<SocketRecord>,
    processes: Vec<DemoProcess>,
    rng: Xoshiro256PlusPlus,
    eth0: [u64; 6],
    lo: [u64; 6],
}

impl DemoSource {
    /// Plans `hours` of history ending at `end`, one snapshot every `interval`.
    pub fn new(hours: u32, interval: Duration, seed: u64, end: DateTime<Utc>) -> Result<Self> {
        let secs = interval.as_secs_f64();
        if !(1.0..=3600.0).contains(&secs) {
            return Err(Error::Usage(format!(
                "demo --interval must be between 1s and 1h, not {interval:?}"
            )));
        }
        let ticks = ((f64::from(hours) * 3600.0) / secs).floor() as u64 + 1;
        let span = chrono::Duration::from_std(interval.mul_f64((ticks - 1) as f64))
            .map_err(|e| Error::Usage(format!("demo window too long: {e}")))?;
        let start = end - span;
        let mut planner = Planner::new(ticks, secs, start, seed);
        planner.plan_all();
        let mut by_tick = vec![Vec::new(); ticks as usize];
        for (i, p) in planner.planned.iter().enumerate() {
            let last = if p.time_wait { p.close + 1 } else { p.close };
            for t in p.open..last.min(ticks) {
                by_tick[t as usize].push(i as u32);
            }
        }
        Ok(DemoSource {
            start,
            interval,
            ticks,
            tick: 0,
            planned: planner.planned,
            by_tick,
            listeners: listeners(),
            processes: processes(ticks),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x005e_ed0f_de30),
            eth0: [9_000_000_000, 1_200_000_000, 7_000_000, 2_100_000, 0, 0],
            lo: [400_000_000, 400_000_000, 900_000, 900_000, 0, 0],
        })
    }

    /// How many snapshots the source yields.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    fn socket(&self, p: &Planned, tick: u64) -> SocketRecord {
        let age = tick - p.open + 1;
        let in_time_wait = p.time_wait && tick >= p.close;
        let counters = (p.proto == Proto::Tcp && !in_time_wait).then(|| {
            let sent = p.sent_per_tick * age;
            let recv = p.recv_per_tick * age;
            let syn_only = p.state == "SYN_SENT";
            TcpCounterFields {
                bytes_sent: Some(sent),
                bytes_acked: Some(sent),
                bytes_received: Some(recv),
                bytes_retrans: Some(0),
                segs_out: Some(if syn_only {
                    1 + age / 2
                } else {
                    2 + sent / 1400 + recv / 2800
                }),
                segs_in: Some(if syn_only { 0 } else { 2 + recv / 1400 + sent / 2800 }),
                data_segs_out: Some(sent / 1400),
                data_segs_in: Some(recv / 1400),
                rtt_us: Some(p.rtt_us),
                rttvar_us: Some(p.rtt_us / 4),
                min_rtt_us: Some(p.rtt_us * 9 / 10),
                retransmits: Some(u32::from(syn_only)),
                total_retrans: Some(if syn_only { age as u32 } else { 0 }),
                lost: Some(0),
                unacked: Some(u32::from(syn_only)),
                snd_cwnd: Some(10),
                delivery_rate_bps: Some((sent + recv) * 8 / 30),
                last_data_sent_ms: Some(1200),
                last_data_recv_ms: Some(1200),
            }
            .into()
        });
        SocketRecord {
            proto: p.proto,
            local_addr: p.local.0,
            local_port: p.local.1,
            remote_addr: Some(p.remote.0),
            remote_port: Some(p.remote.1),
            state: if in_time_wait {
                "TIME_WAIT".into()
            } else {
                p.state.into()
            },
            pids: if in_time_wait { Vec::new() } else { vec![p.pid] },
            uid: Some(0),
            inode: (!in_time_wait).then_some(p.inode),
            recv_queue: Some(0),
            send_queue: Some(0),
            tcp: counters,
        }
    }

    fn process_rows(&mut self, tick: u64, ts: DateTime<Utc>) -> Vec<ProcessRecord> {
        let day = diurnal(ts);
        let start = self.start;
        let interval = self.interval;
        let rng = &mut self.rng;
        self.processes
            .iter()
            .filter(|p| p.from <= tick && tick < p.until)
            .map(|p| {
                let wobble = 0.7 + 0.6 * rng.gen::<f64>();
                ProcessRecord {
                    pid: p.pid,
                    ppid: Some(p.ppid),
                    name: p.name.to_string(),
                    exe: Some(p.exe.to_string()),
                    cmdline: Some(p.cmdline.to_string()),
                    user_name: Some(p.user.to_string()),
                    uid: Some(p.uid),
                    status: Some("Sleeping".to_string()),
                    cpu_percent: (tick > p.from).then_some(p.cpu * wobble * (0.3 + day)),
                    memory_rss_bytes: Some((p.rss_mib << 20) + rng.gen_range(0..(4u64 << 20))),
                    memory_virtual_bytes: Some((p.rss_mib << 22) + (64 << 20)),
                    start_time: Some(
                        start + chrono::Duration::from_std(interval.mul_f64(p.from as f64)).unwrap_or_default(),
                    ),
                    disk_read_bytes: Some(tick * p.rss_mib * 1024),
                    disk_written_bytes: Some(tick * p.rss_mib * 512),
                }
            })
            .collect()
    }

    fn interface_rows(&mut self, tick: u64) -> Vec<InterfaceRecord> {
        for p in self.by_tick[tick as usize].iter().map(|&i| &self.planned[i as usize]) {
            let counters = if p.remote.0.is_loopback() {
                &mut self.lo
            } else {
                &mut self.eth0
            };
            counters[0] += p.recv_per_tick + 120;
            counters[1] += p.sent_per_tick + 120;
            counters[2] += p.recv_per_tick / 1400 + 2;
            counters[3] += p.sent_per_tick / 1400 + 2;
        }
        // Background traffic nobody on this host owns a socket for (ARP, broadcasts, other
        // hosts' multicast), and a rare receive error.
        self.eth0[0] += self.rng.gen_range(2_000..40_000);
        self.eth0[2] += self.rng.gen_range(5..60);
        if self.rng.gen::<f64>() < 0.002 {
            self.eth0[4] += 1;
        }
        let row = |name: &str, mac: Option<&str>, addrs: &str, c: &[u64; 6]| InterfaceRecord {
            name: name.to_string(),
            mac: mac.map(str::to_string),
            addresses: Some(addrs.to_string()),
            rx_bytes: c[0],
            tx_bytes: c[1],
            rx_packets: c[2],
            tx_packets: c[3],
            rx_errors: c[4],
            tx_errors: c[5],
        };
        vec![
            row("lo", None, "127.0.0.1/8,::1/128", &self.lo),
            row(
                "eth0",
                Some("02:00:5e:10:00:0a"),
                "192.168.1.10/24,2001:db8::10/64",
                &self.eth0,
            ),
        ]
    }
}

impl Source for DemoSource {
    fn name(&self) -> &'static str {
        "demo"
    }

    fn snapshot(&mut self, _now: DateTime<Utc>) -> Result<Option<Snapshot>> {
        if self.tick >= self.ticks {
            return Ok(None);
        }
        let tick = self.tick;
        self.tick += 1;
        let ts = self.start + chrono::Duration::from_std(self.interval.mul_f64(tick as f64)).unwrap_or_default();
        let mut sockets = self.listeners.clone();
        sockets.extend(
            self.by_tick[tick as usize]
                .iter()
                .map(|&i| self.socket(&self.planned[i as usize], tick)),
        );
        let processes = self.process_rows(tick, ts);
        let interfaces = self.interface_rows(tick);
        Ok(Some(Snapshot {
            ts,
            host: DEMO_HOST.to_string(),
            collect_ms: None,
            sockets,
            processes,
            interfaces,
            gaps: Vec::new(),
        }))
    }
}

/// Activity level by hour of day (UTC): 0.05 at night, 1.0 in working hours.
fn diurnal(ts: DateTime<Utc>) -> f64 {
    match ts.hour() {
        8..=18 => 1.0,
        7 | 19..=21 => 0.5,
        _ => 0.05,
    }
}

fn tcp_listener(addr: IpAddr, port: u16, pid: u32, inode: u64) -> SocketRecord {
    SocketRecord {
        proto: Proto::Tcp,
        local_addr: addr,
        local_port: port,
        remote_addr: None,
        remote_port: None,
        state: "LISTEN".into(),
        pids: vec![pid],
        uid: Some(0),
        inode: Some(inode),
        recv_queue: Some(0),
        send_queue: Some(128),
        tcp: None,
    }
}

fn listeners() -> Vec<SocketRecord> {
    let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let mut resolver = tcp_listener(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)), 53, pids::RESOLVED, 10_005);
    resolver.proto = Proto::Udp;
    resolver.state = "UNCONN".into();
    resolver.send_queue = Some(0);
    vec![
        tcp_listener(any4, 22, pids::SSHD, 10_001),
        tcp_listener(any6, 22, pids::SSHD, 10_002),
        tcp_listener(LOOPBACK, 5432, pids::POSTGRES, 10_003),
        tcp_listener(any4, 8080, pids::API, 10_004),
        resolver,
    ]
}

mod pids {
    pub const RESOLVED: u32 = 530;
    pub const SSHD: u32 = 812;
    pub const POSTGRES: u32 = 950;
    pub const API: u32 = 1400;
    pub const FIREFOX: u32 = 2100;
    pub const UPDATER: u32 = 3300;
    pub const NMAP: u32 = 4100;
    pub const BACKUP: u32 = 5000;
    pub const SSH_SESSION: u32 = 6200;
    pub const SYNCD: u32 = 7000;
    pub const AGENT: u32 = 7100;
}

fn processes(ticks: u64) -> Vec<DemoProcess> {
    let at = |f: f64| (f * ticks as f64) as u64;
    let always = |pid, ppid, name, exe, cmdline, user, uid, cpu, rss_mib| DemoProcess {
        pid,
        ppid,
        name,
        exe,
        cmdline,
        user,
        uid,
        cpu,
        rss_mib,
        from: 0,
        until: ticks,
    };
    vec![
        always(
            1,
            0,
            "systemd",
            "/usr/lib/systemd/systemd",
            "/sbin/init",
            "root",
            0,
            0.1,
            12,
        ),
        always(
            pids::RESOLVED,
            1,
            "systemd-resolve",
            "/usr/lib/systemd/systemd-resolved",
            "/usr/lib/systemd/systemd-resolved",
            "systemd-resolve",
            990,
            0.2,
            9,
        ),
        always(
            pids::SSHD,
            1,
            "sshd",
            "/usr/sbin/sshd",
            "sshd: /usr/sbin/sshd -D [listener]",
            "root",
            0,
            0.0,
            8,
        ),
        always(
            pids::POSTGRES,
            1,
            "postgres",
            "/usr/lib/postgresql/16/bin/postgres",
            "/usr/lib/postgresql/16/bin/postgres -D /var/lib/postgresql/16/main",
            "postgres",
            113,
            1.5,
            180,
        ),
        always(
            pids::API,
            1,
            "api-server",
            "/opt/api/bin/api-server",
            "/opt/api/bin/api-server --listen 0.0.0.0:8080",
            "api",
            1001,
            4.0,
            240,
        ),
        always(
            pids::FIREFOX,
            1900,
            "firefox",
            "/usr/lib/firefox/firefox",
            "/usr/lib/firefox/firefox",
            "alice",
            1000,
            12.0,
            900,
        ),
        always(
            pids::UPDATER,
            1,
            "updatesvc",
            "/usr/local/bin/updatesvc",
            "/usr/local/bin/updatesvc --daemon",
            "root",
            0,
            0.3,
            14,
        ),
        always(
            pids::BACKUP,
            1,
            "backup",
            "/usr/local/sbin/backup",
            "/usr/local/sbin/backup --rsync 192.168.1.40::host",
            "root",
            0,
            0.5,
            30,
        ),
        DemoProcess {
            from: at(injected::PORT_SCAN).saturating_sub(1),
            until: at(injected::PORT_SCAN) + 6,
            ..always(
                pids::NMAP,
                1950,
                injected::SCANNER,
                "/usr/bin/nmap",
                "nmap -sS -p- 192.168.1.30",
                "mallory",
                1002,
                35.0,
                60,
            )
        },
        DemoProcess {
            from: at(injected::SSH_SESSION.0),
            until: at(injected::SSH_SESSION.1) + 1,
            ..always(
                pids::SSH_SESSION,
                pids::SSHD,
                "sshd",
                "/usr/sbin/sshd",
                "sshd: bob [priv]",
                "root",
                0,
                0.4,
                10,
            )
        },
        DemoProcess {
            from: at(injected::EXFILTRATION.0).saturating_sub(2),
            until: at(injected::EXFILTRATION.1) + 3,
            ..always(
                pids::SYNCD,
                pids::FIREFOX,
                "syncd",
                "/tmp/.cache/syncd",
                "/tmp/.cache/syncd -q",
                "alice",
                1000,
                60.0,
                45,
            )
        },
        DemoProcess {
            from: at(injected::CLOSE_WAIT.0).saturating_sub(1),
            until: at(injected::CLOSE_WAIT.1) + 1,
            ..always(
                pids::AGENT,
                1,
                "legacy-agent",
                "/opt/agent/agent",
                "/opt/agent/agent --report 192.168.1.50:9000",
                "root",
                0,
                0.1,
                20,
            )
        },
    ]
}

/// Draws the connections of the whole window.
struct Planner {
    ticks: u64,
    tick_secs: f64,
    start: DateTime<Utc>,
    rng: Xoshiro256PlusPlus,
    planned: Vec<Planned>,
    /// Next free ephemeral port per local address, so simultaneous connections never collide.
    next_port: HashMap<IpAddr, u16>,
    next_inode: u64,
}

impl Planner {
    fn new(ticks: u64, tick_secs: f64, start: DateTime<Utc>, seed: u64) -> Self {
        Planner {
            ticks,
            tick_secs,
            start,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            planned: Vec::new(),
            next_port: HashMap::new(),
            next_inode: 200_000,
        }
    }

    fn at(&self, fraction: f64) -> u64 {
        (fraction * self.ticks as f64) as u64
    }

    fn ticks_for(&self, secs: f64) -> u64 {
        (secs / self.tick_secs).round().max(1.0) as u64
    }

    fn ephemeral(&mut self, addr: IpAddr) -> u16 {
        let port = self.next_port.entry(addr).or_insert(32_768);
        let p = *port;
        *port = if *port >= 60_999 { 32_768 } else { *port + 1 };
        p
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        proto: Proto,
        local: (IpAddr, u16),
        remote: (IpAddr, u16),
        pid: u32,
        open: u64,
        ticks: u64,
        state: &'static str,
        sent: u64,
        recv: u64,
        rtt_us: u32,
    ) {
        if open >= self.ticks {
            return;
        }
        self.next_inode += 1;
        self.planned.push(Planned {
            proto,
            local,
            remote,
            pid,
            open,
            close: (open + ticks.max(1)).min(self.ticks),
            state,
            time_wait: proto == Proto::Tcp && state == "ESTABLISHED" && remote.1 != 5432,
            sent_per_tick: sent,
            recv_per_tick: recv,
            rtt_us,
            inode: self.next_inode,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn outbound(&mut self, remote: (IpAddr, u16), pid: u32, open: u64, ticks: u64, sent: u64, recv: u64, rtt: u32) {
        let local_ip = match remote.0 {
            IpAddr::V4(_) => IpAddr::V4(HOST_V4),
            IpAddr::V6(_) => IpAddr::V6(HOST_V6),
        };
        let port = self.ephemeral(local_ip);
        self.add(
            Proto::Tcp,
            (local_ip, port),
            remote,
            pid,
            open,
            ticks,
            "ESTABLISHED",
            sent,
            recv,
            rtt,
        );
    }

    fn plan_all(&mut self) {
        self.database_pool();
        self.browser_and_dns();
        self.api_clients();
        self.backups();
        self.beacon();
        self.ssh_session();
        self.port_scan();
        self.close_wait();
        self.exfiltration();
    }

    /// The API server keeps four connections to PostgreSQL open all window (both ends are
    /// this host's sockets).
    fn database_pool(&mut self) {
        for _ in 0..4 {
            let port = self.ephemeral(LOOPBACK);
            let ticks = self.ticks;
            self.add(
                Proto::Tcp,
                (LOOPBACK, port),
                (LOOPBACK, 5432),
                pids::API,
                0,
                ticks,
                "ESTABLISHED",
                2_000,
                9_000,
                60,
            );
            self.add(
                Proto::Tcp,
                (LOOPBACK, 5432),
                (LOOPBACK, port),
                pids::POSTGRES,
                0,
                ticks,
                "ESTABLISHED",
                9_000,
                2_000,
                60,
            );
        }
    }

    fn browser_and_dns(&mut self) {
        let sites: Vec<(IpAddr, u16, u32)> = (0..24u8)
            .map(|i| {
                let ip = if i % 2 == 0 {
                    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + i))
                } else {
                    IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10 + i))
                };
                (ip, if i % 6 == 5 { 80 } else { 443 }, 8_000 + u32::from(i) * 1_500)
            })
            .chain((1..=4u16).map(|i| {
                (
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, i)),
                    443,
                    15_000,
                )
            }))
            .collect();
        let resolver = (IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)), 53);
        for tick in 0..self.ticks {
            let ts = self.start + chrono::Duration::seconds((tick as f64 * self.tick_secs) as i64);
            let rate = 0.6 * diurnal(ts) * self.tick_secs / 30.0;
            let arrivals = poisson(&mut self.rng, rate);
            for _ in 0..arrivals {
                // Popular sites far more often than the rest (Zipf-like).
                let pick = ((self.rng.gen::<f64>().powi(3)) * sites.len() as f64) as usize;
                let (ip, port, rtt) = sites[pick.min(sites.len() - 1)];
                let secs = -120.0 * (1.0 - self.rng.gen::<f64>()).ln() + 5.0;
                let ticks = self.ticks_for(secs);
                let recv = self.rng.gen_range(20_000..600_000);
                let sent = self.rng.gen_range(1_000..20_000);
                self.outbound((ip, port), pids::FIREFOX, tick, ticks, sent, recv, rtt);
                let dns_port = self.ephemeral(IpAddr::V4(HOST_V4));
                self.add(
                    Proto::Udp,
                    (IpAddr::V4(HOST_V4), dns_port),
                    resolver,
                    pids::RESOLVED,
                    tick,
                    1,
                    "CONNECTED",
                    0,
                    0,
                    0,
                );
            }
        }
    }

    fn api_clients(&mut self) {
        for tick in 0..self.ticks {
            let ts = self.start + chrono::Duration::seconds((tick as f64 * self.tick_secs) as i64);
            let arrivals = poisson(&mut self.rng, 0.4 * diurnal(ts) * self.tick_secs / 30.0);
            for _ in 0..arrivals {
                let client = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 100 + self.rng.gen_range(0..10)));
                let port = self.ephemeral(client);
                let ticks = self.rng.gen_range(1..=3);
                let sent = self.rng.gen_range(5_000..80_000);
                let recv = self.rng.gen_range(500..4_000);
                self.add(
                    Proto::Tcp,
                    (IpAddr::V4(HOST_V4), 8080),
                    (client, port),
                    pids::API,
                    tick,
                    ticks,
                    "ESTABLISHED",
                    sent,
                    recv,
                    400,
                );
            }
        }
    }

    /// One rsync connection an hour, and the burst: 60 connections within five minutes.
    fn backups(&mut self) {
        let peer = (IpAddr::V4(Ipv4Addr::new(192, 168, 1, 40)), 873);
        let hourly = self.ticks_for(3600.0);
        let mut tick = self.ticks_for(600.0);
        while tick < self.ticks {
            self.outbound(peer, pids::BACKUP, tick, 2, 2_000_000, 20_000, 500);
            tick += hourly;
        }
        let burst = self.at(injected::BACKUP_BURST);
        let spread = self.ticks_for(300.0);
        for i in 0..60u64 {
            self.outbound(peer, pids::BACKUP, burst + i % spread, 2, 5_000_000, 40_000, 500);
        }
    }

    fn beacon(&mut self) {
        let peer = (
            injected::BEACON_PEER
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66))),
            injected::BEACON_PORT,
        );
        let mut t = self.rng.gen_range(0.0..injected::BEACON_PERIOD_S);
        let window = self.ticks as f64 * self.tick_secs;
        while t < window {
            let tick = (t / self.tick_secs) as u64;
            let sent = self.rng.gen_range(420..460);
            let recv = self.rng.gen_range(1_100..1_300);
            self.outbound(peer, pids::UPDATER, tick, 1, sent, recv, 48_000);
            let jitter = 1.0 + injected::BEACON_JITTER * (2.0 * self.rng.gen::<f64>() - 1.0);
            t += injected::BEACON_PERIOD_S * jitter;
        }
    }

    fn ssh_session(&mut self) {
        let (from, to) = (self.at(injected::SSH_SESSION.0), self.at(injected::SSH_SESSION.1));
        let client = (IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20)), 51_515);
        self.add(
            Proto::Tcp,
            (IpAddr::V4(HOST_V4), 22),
            client,
            pids::SSH_SESSION,
            from,
            to - from,
            "ESTABLISHED",
            3_000,
            800,
            700,
        );
    }

    /// A SYN scan of 300 ports of one LAN host within a minute: most probes stay in SYN_SENT
    /// (filtered), the four open ports answer.
    fn port_scan(&mut self) {
        let at = self.at(injected::PORT_SCAN);
        let target: IpAddr = injected::SCAN_TARGET
            .parse()
            .unwrap_or(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 30)));
        let spread = self.ticks_for(60.0).max(2);
        for (i, port) in (1..=300u16).enumerate() {
            let local = self.ephemeral(IpAddr::V4(HOST_V4));
            let open = [22, 80, 111, 139].contains(&port);
            let state = if open { "ESTABLISHED" } else { "SYN_SENT" };
            let tick = at + i as u64 % spread;
            self.add(
                Proto::Tcp,
                (IpAddr::V4(HOST_V4), local),
                (target, port),
                pids::NMAP,
                tick,
                1,
                state,
                0,
                0,
                300,
            );
        }
    }

    fn close_wait(&mut self) {
        let (from, to) = (self.at(injected::CLOSE_WAIT.0), self.at(injected::CLOSE_WAIT.1));
        let local = self.ephemeral(IpAddr::V4(HOST_V4));
        let peer = (IpAddr::V4(Ipv4Addr::new(192, 168, 1, 50)), 9000);
        self.add(
            Proto::Tcp,
            (IpAddr::V4(HOST_V4), local),
            peer,
            pids::AGENT,
            from,
            to - from,
            "CLOSE_WAIT",
            0,
            0,
            900,
        );
    }

    fn exfiltration(&mut self) {
        let (from, to) = (self.at(injected::EXFILTRATION.0), self.at(injected::EXFILTRATION.1));
        let peer = (
            injected::EXFIL_PEER
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 77))),
            443,
        );
        self.outbound(peer, pids::SYNCD, from, to - from, 25_000_000, 30_000, 90_000);
    }
}

/// A Poisson draw by inversion (small means only).
fn poisson(rng: &mut impl Rng, mean: f64) -> u32 {
    let limit = (-mean).exp();
    let mut product = rng.gen::<f64>();
    let mut n = 0;
    while product > limit && n < 1_000 {
        product *= rng.gen::<f64>();
        n += 1;
    }
    n
}

fn normal(rng: &mut impl Rng, mean: f64, sd: f64) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Prototype 002's anomaly types, in its order.
pub const ANOMALY_TYPES: [&str; 8] = [
    "large_packet",
    "tiny_packet_flood",
    "long_connection",
    "flash_connection",
    "data_exfiltration",
    "port_scan",
    "protocol_anomaly",
    "high_error_rate",
];

/// One row of `demo_traffic`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficRow {
    pub packet_size: f64,
    pub duration: f64,
    pub src_bytes: i64,
    pub dst_bytes: i64,
    pub protocol_type: i32,
    pub flag: i32,
    pub src_port: i32,
    pub dst_port: i32,
    pub packet_rate: f64,
    pub error_rate: f64,
    /// `None` for normal rows, else an index into [`ANOMALY_TYPES`].
    pub anomaly: Option<usize>,
}

/// Prototype 002's labelled table: normal rows inside its documented normal ranges, and 15 %
/// anomalies spread evenly over its 8 types, each pushing the feature(s) its type names out of
/// range. Rows are shuffled.
pub fn traffic_rows(n: usize, seed: u64) -> Vec<TrafficRow> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x0000_027a_ff1c);
    let anomalies = (n as f64 * 0.15).round() as usize;
    let mut rows: Vec<TrafficRow> = (0..n)
        .map(|i| {
            let mut r = normal_row(&mut rng);
            if i < anomalies {
                let kind = i % ANOMALY_TYPES.len();
                make_anomalous(&mut r, kind, &mut rng);
                r.anomaly = Some(kind);
            }
            r
        })
        .collect();
    for i in (1..rows.len()).rev() {
        let j = rng.gen_range(0..=i);
        rows.swap(i, j);
    }
    rows
}

fn normal_row(rng: &mut impl Rng) -> TrafficRow {
    const PORTS: [i32; 8] = [80, 443, 443, 443, 22, 53, 3306, 8080];
    TrafficRow {
        packet_size: normal(rng, 525.0, 45.0).clamp(400.0, 650.0),
        duration: rng.gen_range(0.5..5.0),
        src_bytes: rng.gen_range(3_500..=6_500),
        dst_bytes: rng.gen_range(3_500..=6_500),
        protocol_type: match rng.gen::<f64>() {
            x if x < 0.70 => 0,
            x if x < 0.98 => 1,
            _ => 2,
        },
        flag: rng.gen_range(0..=2),
        src_port: rng.gen_range(1025..=65_535),
        dst_port: PORTS[rng.gen_range(0..PORTS.len())],
        packet_rate: normal(rng, 50.0, 6.0).clamp(35.0, 65.0),
        error_rate: rng.gen_range(0.2..0.8),
        anomaly: None,
    }
}

fn make_anomalous(r: &mut TrafficRow, kind: usize, rng: &mut impl Rng) {
    match ANOMALY_TYPES[kind] {
        "large_packet" => r.packet_size = rng.gen_range(1_200.0..1_500.0),
        "tiny_packet_flood" => {
            r.packet_size = rng.gen_range(40.0..200.0);
            r.packet_rate = rng.gen_range(300.0..1_000.0);
        }
        "long_connection" => r.duration = rng.gen_range(10.0..3_600.0),
        "flash_connection" => r.duration = rng.gen_range(0.001..0.1),
        "data_exfiltration" => {
            r.src_bytes = rng.gen_range(30_000..500_000);
            r.dst_bytes = rng.gen_range(30_000..200_000);
        }
        "port_scan" => {
            r.dst_port = rng.gen_range(1..=65_535);
            r.src_port = rng.gen_range(1..1_024);
            r.flag = rng.gen_range(3..=5);
            r.duration = rng.gen_range(0.001..0.2);
            r.src_bytes = rng.gen_range(0..200);
            r.dst_bytes = rng.gen_range(0..200);
        }
        "protocol_anomaly" => {
            r.protocol_type = 2;
            r.packet_rate = rng.gen_range(150.0..600.0);
        }
        _ => r.error_rate = rng.gen_range(10.0..40.0),
    }
}

const TRAFFIC_DDL: &str = "
CREATE TABLE demo_traffic (
    id BIGINT NOT NULL, packet_size DOUBLE, duration DOUBLE, src_bytes BIGINT, dst_bytes BIGINT,
    protocol_type INTEGER, flag INTEGER, src_port INTEGER, dst_port INTEGER, packet_rate DOUBLE,
    error_rate DOUBLE, label INTEGER NOT NULL, anomaly_type VARCHAR NOT NULL
);
COMMENT ON TABLE demo_traffic IS 'SYNTHETIC (netlens demo): prototype 002''s labelled 10-feature traffic table, 15 % anomalies of its 8 types. Not real traffic.';
COMMENT ON COLUMN demo_traffic.id IS 'Row number.';
COMMENT ON COLUMN demo_traffic.packet_size IS 'Mean packet size in bytes (normal 400-650).';
COMMENT ON COLUMN demo_traffic.duration IS 'Connection duration in seconds (normal 0.5-5).';
COMMENT ON COLUMN demo_traffic.src_bytes IS 'Bytes from the source (normal 3500-6500).';
COMMENT ON COLUMN demo_traffic.dst_bytes IS 'Bytes to the destination (normal 3500-6500).';
COMMENT ON COLUMN demo_traffic.protocol_type IS 'Protocol: 0 TCP, 1 UDP, 2 ICMP.';
COMMENT ON COLUMN demo_traffic.flag IS 'Connection flag code; 0-2 common, 3-5 unusual.';
COMMENT ON COLUMN demo_traffic.src_port IS 'Source port (normal above 1024).';
COMMENT ON COLUMN demo_traffic.dst_port IS 'Destination port (normal: a well-known service port).';
COMMENT ON COLUMN demo_traffic.packet_rate IS 'Packets per second (normal 35-65).';
COMMENT ON COLUMN demo_traffic.error_rate IS 'Error percentage (normal 0.2-0.8).';
COMMENT ON COLUMN demo_traffic.label IS '0 normal, 1 anomaly (as prototype 002''s CSV format).';
COMMENT ON COLUMN demo_traffic.anomaly_type IS 'normal, or the injected anomaly type: large_packet, tiny_packet_flood, long_connection, flash_connection, data_exfiltration, port_scan, protocol_anomaly, high_error_rate.';
";

/// Creates `demo_traffic` and records the whole demo in `datasets`, in one transaction.
fn write_traffic_table(store: &Store, args: &DemoRequest, capture: &RunReport) -> Result<(u64, u64)> {
    let rows = traffic_rows(args.traffic_rows as usize, args.seed);
    let anomalies = store.in_transaction(|conn| {
        conn.execute_batch(TRAFFIC_DDL).map_err(Error::sql)?;
        let mut app = conn.appender("demo_traffic").map_err(Error::sql)?;
        for (i, r) in rows.iter().enumerate() {
            app.append_row(duckdb::params![
                i as i64 + 1,
                r.packet_size,
                r.duration,
                r.src_bytes,
                r.dst_bytes,
                r.protocol_type,
                r.flag,
                r.src_port,
                r.dst_port,
                r.packet_rate,
                r.error_rate,
                i32::from(r.anomaly.is_some()),
                r.anomaly.map_or("normal", |k| ANOMALY_TYPES[k])
            ])
            .map_err(Error::sql)?;
        }
        app.flush().map_err(Error::sql)?;
        drop(app);
        record(store, args, capture, rows.len() as u64)?;
        Ok(rows.iter().filter(|r| r.anomaly.is_some()).count() as u64)
    })?;
    Ok((rows.len() as u64, anomalies))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn all_snapshots(hours: u32, seed: u64) -> Vec<Snapshot> {
        let mut s = DemoSource::new(hours, Duration::from_secs(30), seed, end()).unwrap();
        std::iter::from_fn(|| s.snapshot(end()).unwrap()).collect()
    }

    #[test]
    fn a_day_of_snapshots_ends_at_the_given_time() {
        let snaps = all_snapshots(24, 1);
        assert_eq!(snaps.len(), 24 * 120 + 1);
        assert_eq!(snaps.last().unwrap().ts, end());
        assert_eq!(snaps[0].ts, end() - chrono::Duration::hours(24));
        assert!(snaps.iter().all(|s| s.host == DEMO_HOST));
    }

    #[test]
    fn same_seed_same_history_other_seed_other_history() {
        assert_eq!(all_snapshots(2, 7), all_snapshots(2, 7));
        assert_ne!(all_snapshots(2, 7), all_snapshots(2, 8));
    }

    #[test]
    fn simultaneous_sockets_never_share_endpoints() {
        for s in all_snapshots(24, 3) {
            let mut seen = std::collections::HashSet::new();
            for k in &s.sockets {
                let key = (k.proto, k.local_addr, k.local_port, k.remote_addr, k.remote_port);
                assert!(seen.insert(key), "duplicate socket {key:?} at {}", s.ts);
            }
        }
    }

    #[test]
    fn the_injected_behaviours_are_there() {
        let snaps = all_snapshots(24, 42);
        let scan_probes: usize = snaps
            .iter()
            .flat_map(|s| &s.sockets)
            .filter(|k| k.state == "SYN_SENT" && k.remote_addr == Some(injected::SCAN_TARGET.parse().unwrap()))
            .count();
        assert_eq!(scan_probes, 296, "300 probed ports, 4 of them open");
        let beacons = snaps
            .iter()
            .filter(|s| {
                s.sockets
                    .iter()
                    .any(|k| k.remote_port == Some(injected::BEACON_PORT) && k.state == "ESTABLISHED")
            })
            .count();
        // 24 h / 300 s = 288 beacons, each seen in one snapshot (two can share a tick only
        // when the jitter brings them within 30 s, which +-10 % of 300 s never does).
        assert!((270..=300).contains(&beacons), "{beacons}");
        let counters_grow = snaps.iter().flat_map(|s| &s.sockets).any(|k| {
            k.remote_addr == Some(injected::EXFIL_PEER.parse().unwrap())
                && k.tcp.as_ref().and_then(|t| t.bytes_sent()).unwrap_or(0) > 100_000_000
        });
        assert!(counters_grow, "the upload's bytes_sent accumulates");
    }

    #[test]
    fn traffic_table_has_fifteen_percent_anomalies_of_eight_types() {
        let rows = traffic_rows(1000, 42);
        assert_eq!(rows.len(), 1000);
        let anomalies: Vec<usize> = rows.iter().filter_map(|r| r.anomaly).collect();
        assert_eq!(anomalies.len(), 150);
        for k in 0..8 {
            assert!(anomalies.iter().filter(|&&a| a == k).count() >= 18, "type {k}");
        }
        for r in rows.iter().filter(|r| r.anomaly.is_none()) {
            assert!((400.0..=650.0).contains(&r.packet_size));
            assert!((0.5..5.0).contains(&r.duration));
            assert!((35.0..=65.0).contains(&r.packet_rate));
            assert!(r.src_port > 1024);
        }
        assert_eq!(traffic_rows(1000, 42), rows);
    }

    #[test]
    fn poisson_mean_is_about_right() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let n = 20_000;
        let total: u32 = (0..n).map(|_| poisson(&mut rng, 0.6)).sum();
        let mean = f64::from(total) / f64::from(n);
        assert!((mean - 0.6).abs() < 0.03, "{mean}");
    }
}
