//! What a snapshot of the host is (sockets, processes, interfaces), and reading one back from a
//! replay's line: `capture --record FILE` writes one snapshot as JSON per line, and `capture
//! --replay FILE` hands each line to [`parse_line`]. The netlens crate's `capture` module takes
//! snapshots and stores them; it re-exports these types.

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// Declares [`TcpCounters`]' fields once: the accessors, and the conversions to and from
/// [`TcpCounterFields`].
macro_rules! tcp_counters {
    (wide: $($wide:ident),* ; narrow: $($narrow:ident),* $(;)?) => {
        /// The kernel's per-socket TCP counters (Linux `struct tcp_info`), one `Option` per
        /// field: how counters are built, and how fixtures write them. Each field is `None`
        /// when the running kernel's structure is too short to hold it.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct TcpCounterFields {
            $(pub $wide: Option<u64>,)*
            $(pub $narrow: Option<u32>,)*
        }

        impl TcpCounters {
            $(pub fn $wide(&self) -> Option<u64> {
                self.has(TcpField::$wide).then(|| self.wide[TcpField::$wide as usize])
            })*
            $(pub fn $narrow(&self) -> Option<u32> {
                self.has(TcpField::$narrow).then(|| self.narrow[TcpField::$narrow as usize - WIDE])
            })*
        }

        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy)]
        enum TcpField { $($wide,)* $($narrow,)* }

        const WIDE: usize = [$(TcpField::$wide),*].len();
        const NARROW: usize = [$(TcpField::$narrow),*].len();
        // One bit per field in `present`.
        const _: () = assert!(WIDE + NARROW <= 32);

        impl From<TcpCounterFields> for TcpCounters {
            fn from(f: TcpCounterFields) -> Self {
                let mut c = TcpCounters::default();
                $(if let Some(v) = f.$wide {
                    c.present |= 1 << TcpField::$wide as u32;
                    c.wide[TcpField::$wide as usize] = v;
                })*
                $(if let Some(v) = f.$narrow {
                    c.present |= 1 << TcpField::$narrow as u32;
                    c.narrow[TcpField::$narrow as usize - WIDE] = v;
                })*
                c
            }
        }

        impl From<TcpCounters> for TcpCounterFields {
            fn from(c: TcpCounters) -> Self {
                TcpCounterFields { $($wide: c.$wide(),)* $($narrow: c.$narrow(),)* }
            }
        }
    };
}

/// The kernel's per-socket TCP counters, as [`TcpCounterFields`] says, held compactly: the
/// values as plain integers and one bit per field for whether the kernel gave it. A socket
/// record is held for every socket of a snapshot, and an `Option` per field made these
/// counters 208 bytes where this is 120 (4 MiB less at 50 000 sockets).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "TcpCounterFields", into = "TcpCounterFields")]
pub struct TcpCounters {
    present: u32,
    narrow: [u32; NARROW],
    wide: [u64; WIDE],
}

impl TcpCounters {
    fn has(&self, field: TcpField) -> bool {
        self.present & (1 << field as u32) != 0
    }
}

tcp_counters! {
    wide: bytes_sent, bytes_acked, bytes_received, bytes_retrans, segs_out, segs_in, data_segs_out,
        data_segs_in, delivery_rate_bps;
    narrow: rtt_us, rttvar_us, min_rtt_us, retransmits, total_retrans, lost, unacked, snd_cwnd,
        last_data_sent_ms, last_data_recv_ms;
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

/// The longest line (one snapshot) a replay reads: a host with 100 000 sockets records about
/// 50 MiB. A longer line, or a file without newlines, ends the replay with an error instead of
/// filling the memory.
pub const MAX_LINE: usize = 256 << 20;

/// One line of a recording: `Ok(None)` for a blank line, else the snapshot it holds or why it
/// is none. A replayed snapshot has no collection time (`collect_ms`): it was not collected.
pub fn parse_line(line: &[u8]) -> Result<Option<Snapshot>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut snapshot: Snapshot = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    snapshot.collect_ms = None;
    Ok(Some(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_counters_keep_absent_apart_from_zero_and_round_trip_through_json() {
        let fields = TcpCounterFields {
            bytes_sent: Some(u64::MAX),
            bytes_received: Some(0),
            rtt_us: Some(250),
            retransmits: Some(0),
            last_data_recv_ms: Some(u32::MAX),
            ..Default::default()
        };
        let counters = TcpCounters::from(fields.clone());
        assert_eq!(counters.bytes_sent(), Some(u64::MAX));
        assert_eq!(counters.bytes_received(), Some(0));
        assert_eq!(counters.bytes_acked(), None);
        assert_eq!(counters.retransmits(), Some(0));
        assert_eq!(counters.lost(), None);
        assert_eq!(counters.last_data_recv_ms(), Some(u32::MAX));
        assert_eq!(TcpCounterFields::from(counters.clone()), fields);
        // Fixtures keep the one-field-per-counter JSON they always had.
        let json = serde_json::to_string(&counters).unwrap();
        assert!(json.contains("\"bytes_sent\":18446744073709551615"), "{json}");
        assert!(json.contains("\"bytes_acked\":null"), "{json}");
        assert_eq!(serde_json::from_str::<TcpCounters>(&json).unwrap(), counters);
        assert_eq!(
            serde_json::from_str::<TcpCounters>(r#"{"rtt_us": 9}"#)
                .unwrap()
                .rtt_us(),
            Some(9)
        );
        assert!(std::mem::size_of::<TcpCounters>() <= 120);
    }
}
