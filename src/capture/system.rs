//! The live source: the only code in netlens that reads the operating system.
//!
//! Sockets come from the kernel's sock_diag on Linux (with tcp_info, and owners from the /proc fd
//! tables that `procfd` keeps between snapshots, read while the dump runs), and from netstat2
//! elsewhere or when asked (`--sockets netstat2`).
//! Processes come from `procstat`'s lean /proc reader on Linux and from sysinfo elsewhere;
//! interfaces from sysinfo. Anything that cannot be read is left `None`
//! and described in the snapshot's `gaps`, which the capture loop reports once.

use std::time::Instant;

#[cfg(not(target_os = "linux"))]
use chrono::TimeZone;
use chrono::{DateTime, Utc};
use sysinfo::{Networks, System, Users};
#[cfg(not(target_os = "linux"))]
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, UpdateKind};

use super::{InterfaceRecord, ProcessRecord, Proto, Snapshot, SocketRecord, Source};
use crate::error::{Error, Result};

/// Which library reads the socket table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketBackend {
    /// Linux sock_diag with kernel TCP counters (default on Linux).
    Sockdiag,
    /// netstat2: portable, no kernel counters, no UDP peers (default elsewhere).
    Netstat2,
}

impl SocketBackend {
    /// The best backend for this platform.
    pub fn platform_default() -> Self {
        if cfg!(target_os = "linux") {
            SocketBackend::Sockdiag
        } else {
            SocketBackend::Netstat2
        }
    }
}

/// Reads the live host.
pub struct SystemSource {
    backend: SocketBackend,
    #[cfg(not(target_os = "linux"))]
    system: System,
    #[cfg(target_os = "linux")]
    process_reader: super::procstat::ProcessReader,
    networks: Networks,
    #[cfg(not(target_os = "linux"))]
    users: Users,
    /// Names of the host's users by uid, read once at the start of a run (as sysinfo's list was).
    #[cfg(target_os = "linux")]
    user_names: std::collections::HashMap<u32, String>,
    host: String,
    snapshots_taken: u64,
    own_uid: Option<u32>,
    #[cfg(target_os = "linux")]
    owners: super::procfd::OwnerCache,
    /// The netlink socket and buffer, kept between snapshots.
    #[cfg(target_os = "linux")]
    sock_diag: super::sockdiag::SockDiag,
}

impl SystemSource {
    /// Prepares the readers; the first snapshot primes CPU accounting.
    pub fn new(backend: SocketBackend) -> Result<Self> {
        let collect = |what: &'static str| {
            move |e: sysinfo::Error| Error::Collect {
                what,
                reason: e.to_string(),
            }
        };
        #[cfg(not(target_os = "linux"))]
        let system = System::new().map_err(collect("processes"))?;
        let networks = Networks::new_with_refreshed_list().map_err(collect("interfaces"))?;
        let users = Users::new_with_refreshed_list().map_err(collect("users"))?;
        let host = System::host_name().unwrap_or_else(|_| "unknown".to_string());
        // Each process's /proc files stay open between snapshots, within this budget.
        #[cfg(target_os = "linux")]
        let kept_processes = super::procfiles::open_file_budget();
        Ok(SystemSource {
            backend,
            #[cfg(not(target_os = "linux"))]
            system,
            #[cfg(target_os = "linux")]
            process_reader: super::procstat::ProcessReader::new(kept_processes),
            networks,
            #[cfg(not(target_os = "linux"))]
            users,
            #[cfg(target_os = "linux")]
            user_names: users.iter().map(|u| (**u.id(), u.name().to_string())).collect(),
            host,
            snapshots_taken: 0,
            own_uid: own_uid(),
            #[cfg(target_os = "linux")]
            owners: super::procfd::OwnerCache::new(kept_processes),
            #[cfg(target_os = "linux")]
            sock_diag: super::sockdiag::SockDiag::new(),
        })
    }

    #[cfg(target_os = "linux")]
    fn processes(&mut self, gaps: &mut Vec<String>) -> Vec<ProcessRecord> {
        let names = &self.user_names;
        match self
            .process_reader
            .sample(Instant::now(), |uid| names.get(&uid).map(|n| n.to_string()))
        {
            Ok(sample) => {
                if sample.io_unreadable > 0 {
                    let why = if self.own_uid == Some(0) {
                        "protected by the kernel"
                    } else {
                        "other users' processes need root"
                    };
                    gaps.push(format!(
                        "processes: disk i/o of {} processes is unreadable ({why}); stored as NULL",
                        sample.io_unreadable
                    ));
                }
                sample.processes
            }
            Err(e) => {
                gaps.push(format!(
                    "processes: /proc cannot be listed ({e}); no process rows stored"
                ));
                Vec::new()
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn processes(&mut self, gaps: &mut Vec<String>) -> Vec<ProcessRecord> {
        // `nothing()` still lists every process's threads (sysinfo's tasks), which then come
        // back as processes of their own: threads are not processes, and listing them costs
        // a quarter of the refresh.
        let kind = ProcessRefreshKind::nothing()
            .without_tasks()
            .with_memory()
            .with_cpu()
            .with_disk_usage()
            .with_exe(UpdateKind::OnlyIfNotSet)
            .with_cmd(UpdateKind::OnlyIfNotSet)
            .with_user(UpdateKind::OnlyIfNotSet);
        self.system
            .refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
        let first = self.snapshots_taken == 0;
        let privileged = self.own_uid == Some(0) || self.own_uid.is_none();
        let mut unreadable = 0usize;
        let mut out: Vec<ProcessRecord> = self
            .system
            .processes()
            .values()
            .map(|p| {
                let uid = p.user_id().map(|u| **u);
                // Another user's /proc/<pid>/io and exe are unreadable without root, and
                // sysinfo reports them as 0 / empty: store NULL instead of a made-up value.
                let readable = privileged || uid.is_some() && uid == self.own_uid;
                if !readable {
                    unreadable += 1;
                }
                let disk = p.disk_usage();
                let cmd: Vec<String> = p.cmd().iter().map(|a| a.to_string_lossy().into_owned()).collect();
                ProcessRecord {
                    pid: p.pid().as_u32(),
                    ppid: p.parent().map(|pp| pp.as_u32()),
                    name: p.name().to_string_lossy().into_owned(),
                    exe: p
                        .exe()
                        .map(|e| e.to_string_lossy().into_owned())
                        .filter(|e| !e.is_empty()),
                    cmdline: (!cmd.is_empty()).then(|| cmd.join(" ")),
                    user_name: p
                        .user_id()
                        .and_then(|u| self.users.get_user_by_id(u))
                        .map(|u| u.name().to_string()),
                    uid,
                    status: Some(p.status().to_string()),
                    cpu_percent: (!first).then_some(f64::from(p.cpu_usage())),
                    memory_rss_bytes: Some(p.memory()),
                    memory_virtual_bytes: Some(p.virtual_memory()),
                    start_time: Utc.timestamp_opt(p.start_time() as i64, 0).single(),
                    disk_read_bytes: readable.then_some(disk.total_read_bytes),
                    disk_written_bytes: readable.then_some(disk.total_written_bytes),
                }
            })
            .collect();
        out.sort_by_key(|p| p.pid);
        if unreadable > 0 {
            gaps.push(format!(
                "processes: disk i/o of {unreadable} processes of other users is unreadable without root (stored as NULL)"
            ));
        }
        out
    }

    fn interfaces(&mut self) -> Vec<InterfaceRecord> {
        self.networks.refresh(true);
        let mut out: Vec<InterfaceRecord> = self
            .networks
            .iter()
            .map(|(name, data)| {
                let mac = data.mac_address();
                let addresses: Vec<String> = data
                    .ip_networks()
                    .iter()
                    .map(|n| format!("{}/{}", n.addr, n.prefix))
                    .collect();
                InterfaceRecord {
                    name: name.to_string_lossy().into_owned(),
                    mac: (!mac.is_unspecified()).then(|| mac.to_string()),
                    addresses: (!addresses.is_empty()).then(|| addresses.join(",")),
                    rx_bytes: data.total_received(),
                    tx_bytes: data.total_transmitted(),
                    rx_packets: data.total_packets_received(),
                    tx_packets: data.total_packets_transmitted(),
                    rx_errors: data.total_errors_on_received(),
                    tx_errors: data.total_errors_on_transmitted(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(unix)]
fn own_uid() -> Option<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    Some(unsafe { libc::geteuid() })
}

#[cfg(not(unix))]
fn own_uid() -> Option<u32> {
    None
}

impl Source for SystemSource {
    fn name(&self) -> &'static str {
        "live"
    }

    fn snapshot(&mut self, now: DateTime<Utc>) -> Result<Option<Snapshot>> {
        let started = Instant::now();
        let mut gaps = Vec::new();
        let mut sockets = match self.backend {
            #[cfg(target_os = "linux")]
            SocketBackend::Sockdiag => {
                // The process reader's files stay as they are until its sample, after this.
                self.owners.set_kept_elsewhere(self.process_reader.kept_fds());
                sockdiag_sockets(&mut self.sock_diag, &mut self.owners, self.own_uid, &mut gaps)?
            }
            #[cfg(not(target_os = "linux"))]
            SocketBackend::Sockdiag => netstat2_sockets(&mut gaps)?,
            SocketBackend::Netstat2 => netstat2_sockets(&mut gaps)?,
        };
        let processes = self.processes(&mut gaps);
        let interfaces = self.interfaces();
        self.snapshots_taken += 1;
        // The rows are large and the keys small: sort (key, index) pairs, then permute once.
        sockets.sort_by_cached_key(|s| {
            (
                s.proto.as_str(),
                s.local_addr,
                s.local_port,
                s.remote_addr,
                s.remote_port,
            )
        });
        Ok(Some(Snapshot {
            ts: now,
            host: self.host.clone(),
            collect_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
            sockets,
            processes,
            interfaces,
            gaps,
        }))
    }
}

#[cfg(target_os = "linux")]
fn sockdiag_sockets(
    sock_diag: &mut super::sockdiag::SockDiag,
    owners: &mut super::procfd::OwnerCache,
    own_uid: Option<u32>,
    gaps: &mut Vec<String>,
) -> Result<Vec<SocketRecord>> {
    // The netlink dump and the fd walk are independent system-call-bound work: overlap them,
    // except at the first snapshot of a run: it reads every table anyway, and reading them
    // after the dump lets it tell at once which sockets have no owner.
    let after_dump = owners.is_cold();
    let (dump, refreshed) = if after_dump {
        let dump = sock_diag.dump_all();
        (Ok(dump), owners.refresh())
    } else {
        std::thread::scope(|scope| {
            let dump = scope.spawn(|| sock_diag.dump_all());
            let refreshed = owners.refresh();
            (dump.join(), refreshed)
        })
    };
    let mut sockets = match dump {
        Ok(dump) => dump?,
        Err(_) => {
            return Err(Error::Collect {
                what: "sockets (netlink sock_diag)",
                reason: "the dump thread failed".to_string(),
            })
        }
    };
    let owners = match refreshed {
        Ok(()) => {
            // Without root only our own user's fd tables can be read: other users' sockets
            // without an owner are expected, and must not make every snapshot walk /proc.
            let privileged = own_uid == Some(0);
            let inodes: Vec<(u64, bool)> = sockets
                .iter()
                .filter_map(|s| s.inode.map(|i| (i, privileged || s.uid == own_uid)))
                .collect();
            owners.resolve(&inodes, after_dump)
        }
        Err(e) => {
            gaps.push(format!("pid: /proc could not be read ({e}); sockets have no owner"));
            Default::default()
        }
    };
    let mut unowned = 0usize;
    let mut old_kernel = false;
    for s in &mut sockets {
        if let Some(inode) = s.inode {
            s.pids.extend(owners.pids_of(inode));
            if s.pids.is_empty() {
                unowned += 1;
            }
        }
        if s.tcp.as_ref().is_some_and(|t| t.bytes_sent().is_none()) {
            old_kernel = true;
        }
    }
    if owners.unreadable_processes > 0 && unowned > 0 {
        gaps.push(format!(
            "pid: {unowned} sockets have no owner because {} processes' fd tables are unreadable without root",
            owners.unreadable_processes
        ));
    }
    if old_kernel {
        gaps.push("bytes_sent, bytes_retrans: this kernel's tcp_info predates Linux 4.19 (stored as NULL)".to_string());
    }
    Ok(sockets)
}

fn netstat2_sockets(gaps: &mut Vec<String>) -> Result<Vec<SocketRecord>> {
    use netstat2::{AddressFamilyFlags, ProtocolFlags, ProtocolSocketInfo};

    gaps.push(
        "kernel tcp counters (bytes, segments, rtt, retransmits): not available through netstat2 (stored as NULL)"
            .to_string(),
    );
    // netstat2 panics when /proc is unreadable; keep that inside this call.
    let result = std::panic::catch_unwind(|| {
        netstat2::get_sockets_info(
            AddressFamilyFlags::IPV4 | AddressFamilyFlags::IPV6,
            ProtocolFlags::TCP | ProtocolFlags::UDP,
        )
    });
    let infos = match result {
        Ok(Ok(infos)) => infos,
        Ok(Err(e)) => {
            return Err(Error::Collect {
                what: "sockets (netstat2)",
                reason: e.to_string(),
            })
        }
        Err(_) => {
            return Err(Error::Collect {
                what: "sockets (netstat2)",
                reason: "netstat2 failed while reading the process table".to_string(),
            })
        }
    };
    let mut out = Vec::with_capacity(infos.len());
    for info in infos {
        let mut pids = info.associated_pids.clone();
        pids.sort_unstable();
        let record = match &info.protocol_socket_info {
            ProtocolSocketInfo::Tcp(t) => {
                let peerless = t.remote_addr.is_unspecified() && t.remote_port == 0;
                SocketRecord {
                    proto: Proto::Tcp,
                    local_addr: t.local_addr,
                    local_port: t.local_port,
                    remote_addr: (!peerless).then_some(t.remote_addr),
                    remote_port: (!peerless).then_some(t.remote_port),
                    state: tcp_state_name(&t.state).into(),
                    pids,
                    uid: None,
                    inode: None,
                    recv_queue: None,
                    send_queue: None,
                    tcp: None,
                }
            }
            ProtocolSocketInfo::Udp(u) => SocketRecord {
                proto: Proto::Udp,
                local_addr: u.local_addr,
                local_port: u.local_port,
                remote_addr: None,
                remote_port: None,
                state: "UNCONN".into(),
                pids,
                uid: None,
                inode: None,
                recv_queue: None,
                send_queue: None,
                tcp: None,
            },
        };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let record = SocketRecord {
            inode: Some(u64::from(info.inode)),
            uid: Some(info.uid),
            ..record
        };
        out.push(record);
    }
    Ok(out)
}

fn tcp_state_name(state: &netstat2::TcpState) -> &'static str {
    use netstat2::TcpState::*;
    match state {
        Closed => "CLOSE",
        Listen => "LISTEN",
        SynSent => "SYN_SENT",
        SynReceived => "SYN_RECV",
        Established => "ESTABLISHED",
        FinWait1 => "FIN_WAIT1",
        FinWait2 => "FIN_WAIT2",
        CloseWait => "CLOSE_WAIT",
        Closing => "CLOSING",
        LastAck => "LAST_ACK",
        TimeWait => "TIME_WAIT",
        DeleteTcb => "DELETE_TCB",
        Unknown => "UNKNOWN",
    }
}
