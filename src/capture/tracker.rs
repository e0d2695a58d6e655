//! Connection lifetimes across snapshots. Pure: given the lifetimes still open and a new
//! snapshot's sockets, it decides which socket continues which lifetime, which lifetimes
//! begin, which end, and which TCP state changes happened. The store applies the plan in the
//! same transaction as the snapshot and only then is the tracker advanced, so a failed
//! write leaves both the database and the tracker as they were.
//!
//! A lifetime is identified by protocol, both endpoints, owning pid and kernel inode: the
//! same address pair reopened later (new inode) or taken over by another process is a new
//! lifetime.
//!
//! The tracker also remembers each open lifetime's byte counters, so the plan carries each
//! socket's traffic since its previous sighting (`socket_traffic`): the counters are
//! cumulative over a socket's life, and the difference is what moved between two snapshots.

use std::net::IpAddr;

use foldhash::HashMap;

use super::{Proto, SocketRecord, StateName};

/// What makes two sockets in different snapshots the same lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionKey {
    pub proto: Proto,
    pub local_addr: IpAddr,
    pub local_port: u16,
    pub remote_addr: Option<IpAddr>,
    pub remote_port: Option<u16>,
    pub pid: Option<u32>,
    pub inode: Option<u64>,
}

impl ConnectionKey {
    /// The key of a socket as reported.
    pub fn of(s: &SocketRecord) -> Self {
        ConnectionKey {
            proto: s.proto,
            local_addr: s.local_addr,
            local_port: s.local_port,
            remote_addr: s.remote_addr,
            remote_port: s.remote_port,
            pid: s.pid(),
            inode: s.inode,
        }
    }
}

/// A lifetime that was still open after the previous snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenConnection {
    pub id: i64,
    pub proto: Proto,
    pub state: StateName,
    /// The kernel's cumulative byte counters at the lifetime's latest sighting; `None` when
    /// that sighting had none (UDP, a TIME_WAIT remnant, no privilege).
    pub counters: Option<ByteCounters>,
}

/// A socket's cumulative byte counters (sent, received).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCounters {
    pub sent: u64,
    pub received: u64,
}

impl ByteCounters {
    /// The counters of a socket as reported, when the kernel gave both.
    pub fn of(s: &SocketRecord) -> Option<Self> {
        let tcp = s.tcp.as_ref()?;
        Some(ByteCounters {
            sent: tcp.bytes_sent()?,
            received: tcp.bytes_received()?,
        })
    }
}

/// Bytes a lifetime moved between the host's previous snapshot and this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Index of the socket in the snapshot.
    pub socket: usize,
    pub connection_id: i64,
    pub sent: u64,
    pub received: u64,
}

/// The lifetimes open under one key: almost always one (a key holds the kernel inode), so it
/// is kept inline; several only when a source reports sockets without inodes.
#[derive(Debug, Clone, PartialEq)]
enum Lifetimes {
    One(OpenConnection),
    Many(Vec<OpenConnection>),
}

impl Lifetimes {
    fn get(&self, n: usize) -> Option<&OpenConnection> {
        match self {
            Lifetimes::One(c) => (n == 0).then_some(c),
            Lifetimes::Many(v) => v.get(n),
        }
    }

    fn len(&self) -> usize {
        match self {
            Lifetimes::One(_) => 1,
            Lifetimes::Many(v) => v.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &OpenConnection> {
        (0..self.len()).filter_map(|n| self.get(n))
    }
}

fn insert(map: &mut HashMap<ConnectionKey, Lifetimes>, key: ConnectionKey, conn: OpenConnection) {
    use std::collections::hash_map::Entry;
    match map.entry(key) {
        Entry::Vacant(v) => {
            v.insert(Lifetimes::One(conn));
        }
        Entry::Occupied(mut o) => {
            let slot = o.get_mut();
            if let Lifetimes::Many(v) = slot {
                v.push(conn);
            } else if let Lifetimes::One(first) = std::mem::replace(slot, Lifetimes::Many(Vec::with_capacity(2))) {
                *slot = Lifetimes::Many(vec![first, conn]);
            }
        }
    }
}

/// A TCP state change to record; `None` marks first observation (from) or disappearance (to).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub connection_id: i64,
    pub from_state: Option<StateName>,
    pub to_state: Option<StateName>,
}

/// What one snapshot does to the lifetimes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Lifetime of each socket, in the snapshot's order.
    pub connection_ids: Vec<i64>,
    /// Indexes of sockets that begin a new lifetime.
    pub opened: Vec<usize>,
    /// Lifetimes not seen in this snapshot.
    pub closed: Vec<i64>,
    /// Lifetimes continued by a socket without pid and inode (a TIME_WAIT remnant): their
    /// kernel counters are gone from this sighting on.
    pub orphaned: Vec<i64>,
    pub transitions: Vec<Transition>,
    /// Lifetimes that moved bytes since the host's previous snapshot, in the snapshot's order.
    pub traffic: Vec<Traffic>,
    next_id: i64,
}

/// What a socket moved since its previous sighting: the change of its counters, or, for a
/// lifetime that opened after a snapshot the tracker knows, everything it counted (it opened
/// within the interval). `None` when that is unknown: no counters, counters that went back
/// (not the same socket after all), or a lifetime in the first snapshot of a host with no
/// history, whose bytes may come from any time before.
fn moved(now: Option<ByteCounters>, before: Option<&OpenConnection>, has_history: bool) -> Option<(u64, u64)> {
    let now = now?;
    match before {
        Some(prev) => {
            let prev = prev.counters?;
            Some((
                now.sent.checked_sub(prev.sent)?,
                now.received.checked_sub(prev.received)?,
            ))
        }
        None => has_history.then_some((now.sent, now.received)),
    }
}

/// Lifetimes open on one host, and the next free id.
#[derive(Debug, Default)]
pub struct Tracker {
    open: HashMap<ConnectionKey, Lifetimes>,
    next_id: i64,
    /// Whether a previous snapshot of the host is known (stored before, or planned and
    /// committed by this tracker): a lifetime opened after it opened within the interval.
    has_history: bool,
}

impl Tracker {
    /// Resumes from the lifetimes the store still has open; `next_id` is one past the largest
    /// id in the store; `has_history` says whether the store has a snapshot of the host.
    pub fn resume(
        open: impl IntoIterator<Item = (ConnectionKey, OpenConnection)>,
        next_id: i64,
        has_history: bool,
    ) -> Self {
        let mut map: HashMap<ConnectionKey, Lifetimes> = HashMap::default();
        for (key, conn) in open {
            insert(&mut map, key, conn);
        }
        Tracker {
            open: map,
            next_id,
            has_history,
        }
    }

    /// Makes the next new lifetime's id at least `next` (ids another writer took meanwhile).
    pub fn reserve_ids_from(&mut self, next: i64) {
        self.next_id = self.next_id.max(next);
    }

    /// The id the next new lifetime will get.
    pub fn next_id(&self) -> i64 {
        self.next_id
    }

    /// Number of lifetimes currently open.
    pub fn open_count(&self) -> usize {
        self.open.values().map(Lifetimes::len).sum()
    }

    /// Plans a snapshot without changing the tracker.
    ///
    /// Sockets match open lifetimes by their full key. A socket the kernel no longer ties to
    /// a process (no pid, no inode: a TIME_WAIT remnant) then continues an unmatched lifetime
    /// of the same address pair, so its closing states are recorded on that lifetime.
    pub fn plan(&self, sockets: &[SocketRecord]) -> Plan {
        // How many of each key's open lifetimes this snapshot has continued (no map clone).
        let mut taken: HashMap<&ConnectionKey, usize> =
            HashMap::with_capacity_and_hasher(self.open.len(), Default::default());
        let mut take = |key: &ConnectionKey| -> Option<OpenConnection> {
            let (k, conns) = self.open.get_key_value(key)?;
            let n = taken.entry(k).or_insert(0);
            let conn = conns.get(*n)?.clone();
            *n += 1;
            Some(conn)
        };
        let mut matched: Vec<Option<OpenConnection>> = sockets.iter().map(|s| take(&ConnectionKey::of(s))).collect();
        let orphan = |s: &SocketRecord| s.pids.is_empty() && s.inode.is_none();
        let mut orphaned = Vec::new();
        if sockets.iter().zip(&matched).any(|(s, m)| m.is_none() && orphan(s)) {
            type Pair = (Proto, IpAddr, u16, Option<IpAddr>, Option<u16>);
            let mut by_pair: HashMap<Pair, Vec<&ConnectionKey>> = HashMap::default();
            for key in self.open.keys() {
                let pair = (
                    key.proto,
                    key.local_addr,
                    key.local_port,
                    key.remote_addr,
                    key.remote_port,
                );
                by_pair.entry(pair).or_default().push(key);
            }
            for (s, m) in sockets.iter().zip(matched.iter_mut()) {
                if m.is_some() || !orphan(s) || s.remote_addr.is_none() {
                    continue;
                }
                let pair = (s.proto, s.local_addr, s.local_port, s.remote_addr, s.remote_port);
                let Some(keys) = by_pair.get(&pair) else { continue };
                if let Some(conn) = keys.iter().find_map(|k| take(k)) {
                    orphaned.push(conn.id);
                    *m = Some(conn);
                }
            }
        }

        let mut next_id = self.next_id;
        let mut connection_ids = Vec::with_capacity(sockets.len());
        let mut opened = Vec::new();
        let mut transitions = Vec::new();
        let mut first_seen = Vec::new();
        let mut traffic = Vec::new();
        for (i, (s, m)) in sockets.iter().zip(matched).enumerate() {
            let moved = moved(ByteCounters::of(s), m.as_ref(), self.has_history);
            let id = match m {
                Some(prev) => {
                    if s.proto == Proto::Tcp && prev.state != s.state {
                        transitions.push(Transition {
                            connection_id: prev.id,
                            from_state: Some(prev.state),
                            to_state: Some(s.state.clone()),
                        });
                    }
                    prev.id
                }
                None => {
                    let id = next_id;
                    next_id += 1;
                    opened.push(i);
                    if s.proto == Proto::Tcp {
                        first_seen.push(Transition {
                            connection_id: id,
                            from_state: None,
                            to_state: Some(s.state.clone()),
                        });
                    }
                    id
                }
            };
            connection_ids.push(id);
            if let Some((sent, received)) = moved.filter(|&(sent, received)| sent > 0 || received > 0) {
                traffic.push(Traffic {
                    socket: i,
                    connection_id: id,
                    sent,
                    received,
                });
            }
        }
        transitions.extend(first_seen);

        let mut gone: Vec<&OpenConnection> = self
            .open
            .iter()
            .flat_map(|(k, conns)| conns.iter().skip(taken.get(k).copied().unwrap_or(0)))
            .collect();
        gone.sort_by_key(|c| c.id);
        let mut closed = Vec::with_capacity(gone.len());
        for g in gone {
            if g.proto == Proto::Tcp {
                transitions.push(Transition {
                    connection_id: g.id,
                    from_state: Some(g.state.clone()),
                    to_state: None,
                });
            }
            closed.push(g.id);
        }
        Plan {
            connection_ids,
            opened,
            closed,
            orphaned,
            transitions,
            traffic,
            next_id,
        }
    }

    /// Advances the tracker once the plan for `sockets` is stored. The map is rebuilt in place,
    /// after the plan, so a run holds one map of open lifetimes at a time, not two.
    pub fn commit(&mut self, plan: &Plan, sockets: &[SocketRecord]) {
        debug_assert_eq!(
            sockets.len(),
            plan.connection_ids.len(),
            "a plan commits with its own sockets"
        );
        self.open.clear();
        self.open.reserve(sockets.len());
        for (s, &id) in sockets.iter().zip(&plan.connection_ids) {
            insert(
                &mut self.open,
                ConnectionKey::of(s),
                OpenConnection {
                    id,
                    proto: s.proto,
                    state: s.state.clone(),
                    counters: ByteCounters::of(s),
                },
            );
        }
        self.next_id = plan.next_id;
        self.has_history = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(lport: u16, rport: u16, state: &'static str, pid: u32, inode: u64) -> SocketRecord {
        SocketRecord {
            proto: Proto::Tcp,
            local_addr: "10.0.0.1".parse().unwrap(),
            local_port: lport,
            remote_addr: Some("93.184.216.34".parse().unwrap()),
            remote_port: Some(rport),
            state: state.into(),
            pids: vec![pid],
            uid: None,
            inode: Some(inode),
            recv_queue: None,
            send_queue: None,
            tcp: None,
        }
    }

    #[test]
    fn lifetimes_continue_change_state_and_close() {
        let mut t = Tracker::resume([], 1, false);
        let first = [
            tcp(5000, 443, "SYN_SENT", 7, 100),
            tcp(5001, 443, "ESTABLISHED", 7, 101),
        ];
        let p1 = t.plan(&first);
        assert_eq!(p1.connection_ids, vec![1, 2]);
        assert_eq!(p1.opened, vec![0, 1]);
        assert_eq!(p1.transitions.len(), 2);
        t.commit(&p1, &first);

        let second = [tcp(5000, 443, "ESTABLISHED", 7, 100)];
        let p2 = t.plan(&second);
        assert_eq!(p2.connection_ids, vec![1]);
        assert!(p2.opened.is_empty());
        assert_eq!(p2.closed, vec![2]);
        assert_eq!(
            p2.transitions,
            vec![
                Transition {
                    connection_id: 1,
                    from_state: Some("SYN_SENT".into()),
                    to_state: Some("ESTABLISHED".into())
                },
                Transition {
                    connection_id: 2,
                    from_state: Some("ESTABLISHED".into()),
                    to_state: None
                },
            ]
        );
        t.commit(&p2, &second);
        assert_eq!(t.open_count(), 1);
    }

    #[test]
    fn new_inode_or_pid_is_a_new_lifetime() {
        let mut t = Tracker::resume([], 10, false);
        let established = [tcp(5000, 443, "ESTABLISHED", 7, 100)];
        t.commit(&t.plan(&established), &established);
        let p = t.plan(&[
            tcp(5000, 443, "ESTABLISHED", 7, 200),
            tcp(5000, 443, "ESTABLISHED", 8, 100),
        ]);
        assert_eq!(p.connection_ids, vec![11, 12]);
        assert_eq!(p.closed, vec![10]);
    }

    #[test]
    fn a_time_wait_remnant_continues_its_lifetime() {
        let mut t = Tracker::resume([], 1, false);
        let established = [tcp(5000, 443, "ESTABLISHED", 7, 100)];
        t.commit(&t.plan(&established), &established);
        let mut remnant = tcp(5000, 443, "TIME_WAIT", 7, 0);
        remnant.pids.clear();
        remnant.inode = None;
        let p = t.plan(&[remnant.clone()]);
        assert_eq!(p.connection_ids, vec![1]);
        assert!(p.opened.is_empty() && p.closed.is_empty());
        assert_eq!(p.orphaned, vec![1]);
        assert_eq!(p.transitions[0].to_state.as_deref(), Some("TIME_WAIT"));
        t.commit(&p, std::slice::from_ref(&remnant));
        assert_eq!(t.plan(&[remnant]).connection_ids, vec![1]);
    }

    #[test]
    fn duplicate_keys_keep_their_own_lifetimes() {
        let mut udp = tcp(53, 0, "UNCONN", 5, 0);
        udp.proto = Proto::Udp;
        udp.inode = None;
        udp.remote_addr = None;
        udp.remote_port = None;
        let mut t = Tracker::resume([], 1, false);
        let both = [udp.clone(), udp.clone()];
        t.commit(&t.plan(&both), &both);
        let p = t.plan(&[udp.clone(), udp.clone()]);
        assert_eq!(p.connection_ids, vec![1, 2]);
        assert!(p.opened.is_empty() && p.closed.is_empty() && p.transitions.is_empty());
    }

    fn with_bytes(mut s: SocketRecord, sent: u64, received: u64) -> SocketRecord {
        s.tcp = Some(
            crate::capture::TcpCounterFields {
                bytes_sent: Some(sent),
                bytes_received: Some(received),
                ..Default::default()
            }
            .into(),
        );
        s
    }

    fn traffic(p: &Plan) -> Vec<(i64, u64, u64)> {
        p.traffic
            .iter()
            .map(|t| (t.connection_id, t.sent, t.received))
            .collect()
    }

    #[test]
    fn traffic_is_what_moved_since_the_previous_sighting() {
        let mut t = Tracker::resume([], 1, false);
        let first = [
            with_bytes(tcp(5000, 443, "ESTABLISHED", 7, 100), 1_000, 5_000),
            with_bytes(tcp(5001, 443, "ESTABLISHED", 7, 101), 10, 10),
        ];
        let p1 = t.plan(&first);
        // A host's first snapshot: when those bytes moved is not known.
        assert!(p1.traffic.is_empty());
        t.commit(&p1, &first);

        let second = [
            with_bytes(tcp(5000, 443, "ESTABLISHED", 7, 100), 1_500, 5_000),
            with_bytes(tcp(5001, 443, "ESTABLISHED", 7, 101), 10, 10),
            with_bytes(tcp(5002, 443, "ESTABLISHED", 7, 102), 300, 700),
            tcp(5003, 443, "ESTABLISHED", 7, 103),
        ];
        let p2 = t.plan(&second);
        // Idle (5001) and counter-less (5003) sockets move nothing; a lifetime opened since the
        // previous snapshot moved everything it counted.
        assert_eq!(traffic(&p2), vec![(1, 500, 0), (3, 300, 700)]);
        t.commit(&p2, &second);

        let third = [with_bytes(tcp(5000, 443, "ESTABLISHED", 7, 100), 20, 20)];
        assert!(
            t.plan(&third).traffic.is_empty(),
            "counters that went back are not a delta"
        );
    }

    #[test]
    fn a_resumed_host_counts_lifetimes_opened_since_its_last_snapshot() {
        let open = OpenConnection {
            id: 4,
            proto: Proto::Tcp,
            state: "ESTABLISHED".into(),
            counters: Some(ByteCounters {
                sent: 100,
                received: 100,
            }),
        };
        let old = tcp(5000, 443, "ESTABLISHED", 7, 100);
        let t = Tracker::resume([(ConnectionKey::of(&old), open)], 5, true);
        let p = t.plan(&[
            with_bytes(old, 150, 100),
            with_bytes(tcp(5009, 443, "ESTABLISHED", 7, 109), 40, 60),
        ]);
        assert_eq!(traffic(&p), vec![(4, 50, 0), (5, 40, 60)]);
    }

    #[test]
    fn a_failed_store_leaves_the_tracker_unchanged() {
        let mut t = Tracker::resume([], 1, false);
        let established = [tcp(5000, 443, "ESTABLISHED", 7, 100)];
        t.commit(&t.plan(&established), &established);
        let _discarded = t.plan(&[]);
        let p = t.plan(&[tcp(5000, 443, "ESTABLISHED", 7, 100)]);
        assert_eq!(p.connection_ids, vec![1]);
        assert!(p.closed.is_empty());
    }
}
