//! Capture: what a snapshot of the host is, where snapshots come from, and the loop that
//! stores them.
//!
//! The OS sits behind [`Source`]: [`system::SystemSource`] is the only code that reads the
//! live system; [`fixture::FixtureSource`] replays recorded snapshots so everything after
//! collection (direction, connection tracking, storage) is tested without a live OS.
//! This module may use `store` to append; it never reads analysis results.

pub mod direction;
pub mod fixture;
pub mod run;
pub mod system;
pub mod tracker;

#[cfg(target_os = "linux")]
mod procfd;
#[cfg(target_os = "linux")]
mod sockdiag;

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// A socket state's name: the kernel's names are static, so the millions of copies a capture
/// makes of them never allocate; a state read back from the store or a fixture is interned
/// when it is one of them.
pub type StateName = Cow<'static, str>;

/// Every state name the sources produce.
const KNOWN_STATES: [&str; 15] = [
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
    "UNKNOWN",
    "UNCONN",
    "CONNECTED",
];

/// The state name for `s`, borrowed when it is a known one.
pub fn state_name(s: String) -> StateName {
    match KNOWN_STATES.iter().find(|k| **k == s) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(s),
    }
}

/// Transport protocol of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// Name stored in the `proto` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// The kernel's per-socket TCP counters (Linux `struct tcp_info`). Each field is `None` when
/// the running kernel's structure is too short to hold it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpCounters {
    pub bytes_sent: Option<u64>,
    pub bytes_acked: Option<u64>,
    pub bytes_received: Option<u64>,
    pub bytes_retrans: Option<u64>,
    pub segs_out: Option<u64>,
    pub segs_in: Option<u64>,
    pub data_segs_out: Option<u64>,
    pub data_segs_in: Option<u64>,
    pub rtt_us: Option<u32>,
    pub rttvar_us: Option<u32>,
    pub min_rtt_us: Option<u32>,
    pub retransmits: Option<u8>,
    pub total_retrans: Option<u32>,
    pub lost: Option<u32>,
    pub unacked: Option<u32>,
    pub snd_cwnd: Option<u32>,
    pub delivery_rate_bps: Option<u64>,
    pub last_data_sent_ms: Option<u32>,
    pub last_data_recv_ms: Option<u32>,
}

/// One socket as the OS reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketRecord {
    pub proto: Proto,
    pub local_addr: IpAddr,
    pub local_port: u16,
    /// `None` when the socket has no peer (listening, unconnected UDP).
    pub remote_addr: Option<IpAddr>,
    pub remote_port: Option<u16>,
    /// TCP state name (`ESTABLISHED`, `LISTEN`, ...) or `UNCONN`/`CONNECTED` for UDP.
    pub state: StateName,
    /// Every process holding the socket; empty when unknown.
    #[serde(default)]
    pub pids: Vec<u32>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub inode: Option<u64>,
    #[serde(default)]
    pub recv_queue: Option<u32>,
    #[serde(default)]
    pub send_queue: Option<u32>,
    /// Kernel counters; `None` for UDP, or where the OS does not expose them.
    #[serde(default)]
    pub tcp: Option<TcpCounters>,
}

impl SocketRecord {
    /// Lowest pid holding the socket: the owner a row shows.
    pub fn pid(&self) -> Option<u32> {
        self.pids.iter().copied().min()
    }

    /// `ipv4` or `ipv6`, by the local address.
    pub fn family(&self) -> &'static str {
        match self.local_addr {
            IpAddr::V4(_) => "ipv4",
            IpAddr::V6(_) => "ipv6",
        }
    }
}

/// One process as the OS reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    pub ppid: Option<u32>,
    pub name: String,
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    pub user_name: Option<String>,
    pub uid: Option<u32>,
    pub status: Option<String>,
    /// `None` in the first snapshot of a run: a rate needs two samples.
    pub cpu_percent: Option<f64>,
    pub memory_rss_bytes: Option<u64>,
    pub memory_virtual_bytes: Option<u64>,
    pub start_time: Option<DateTime<Utc>>,
    pub disk_read_bytes: Option<u64>,
    pub disk_written_bytes: Option<u64>,
}

/// One network interface's cumulative counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceRecord {
    pub name: String,
    pub mac: Option<String>,
    pub addresses: Option<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

/// Everything one snapshot saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub ts: DateTime<Utc>,
    pub host: String,
    /// Milliseconds spent reading the OS; `None` for replays.
    #[serde(default)]
    pub collect_ms: Option<f64>,
    pub sockets: Vec<SocketRecord>,
    #[serde(default)]
    pub processes: Vec<ProcessRecord>,
    #[serde(default)]
    pub interfaces: Vec<InterfaceRecord>,
    /// What was unavailable and why; stored in `snapshots.notes`, printed once per run.
    #[serde(default)]
    pub gaps: Vec<String>,
}

/// Where snapshots come from. `now` is passed in so replays and tests control time.
pub trait Source {
    /// Name stored in `snapshots.source`.
    fn name(&self) -> &'static str;

    /// Takes the next snapshot; `Ok(None)` when a finite source is exhausted.
    fn snapshot(&mut self, now: DateTime<Utc>) -> Result<Option<Snapshot>>;
}
