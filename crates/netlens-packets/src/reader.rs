//! Streaming reader for capture files: classic pcap (either byte order, micro- or nanosecond
//! timestamps) and pcapng (any number of sections and interfaces, each with its own link type
//! and timestamp resolution). Pure Rust, no libpcap.
//!
//! It holds one record at a time in a reused buffer, so memory stays flat whatever the file
//! size. It never panics on bad input: a record that is cut short or inconsistent ends the
//! stream with a [`Stop`] that says where (byte offset) and why; every packet handed out
//! before it is complete. This module touches only the bytes it is given.

use std::io::{self, BufRead, Read};

/// Largest packet we accept when the file announces no larger snap length: Wireshark's
/// standard maximum. A record claiming more is almost always garbage, not a packet.
const STANDARD_MAX_PACKET: u32 = 262_144;
/// Hard ceiling for any record or block, whatever the header says (bounds memory).
const HARD_MAX_RECORD: u32 = 16 * 1024 * 1024;

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
        }
    }
}

/// Why a file was refused before any packet was read.
#[derive(Debug)]
pub enum OpenError {
    /// Reading failed.
    Io(io::Error),
    /// The file has no bytes at all.
    Empty,
    /// The first bytes are no capture magic; `hint` names what the file looks like instead.
    NotACapture { hint: String },
}

/// Why reading stopped before the end of the file. Packets before `offset` were all delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Byte offset of the record or block that could not be read.
    pub offset: u64,
    /// What was wrong with it.
    pub reason: String,
}

/// One captured packet, borrowed from the reader's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    /// 1-based position of the packet in the file.
    pub number: u64,
    /// Capture time, nanoseconds since the Unix epoch (UTC).
    pub ts_ns: i64,
    /// Length of the packet on the wire (may exceed `data.len()` when the snap length cut it).
    pub orig_len: u32,
    /// Link-layer header type (LINKTYPE_* number) of the interface it was captured on.
    pub linktype: u32,
    /// The captured bytes.
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    #[inline]
    fn u16(self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }
    #[inline]
    fn u32(self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }
    #[inline]
    fn u64(self, b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        match self {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        }
    }
}

/// How an interface's timestamps convert to nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u32,
    snaplen: u32,
    /// `if_tsresol`: high bit clear = 10^-n seconds, set = 2^-n seconds.
    tsresol: u8,
    /// `if_tsoffset`: seconds added to every timestamp.
    tsoffset: i64,
}

impl Interface {
    fn ns_of(self, units: u64) -> i64 {
        let n = u32::from(self.tsresol & 0x7f);
        let ns: i128 = if self.tsresol & 0x80 == 0 {
            if n <= 9 {
                i128::from(units) * 10i128.pow(9 - n)
            } else {
                // Finer than nanoseconds (up to 10^-127): divide; beyond 10^-38 everything is 0.
                10i128.checked_pow(n - 9).map_or(0, |d| i128::from(units) / d)
            }
        } else if n <= 64 {
            (i128::from(units) * 1_000_000_000) >> n
        } else {
            0
        };
        let ns = ns.saturating_add(i128::from(self.tsoffset).saturating_mul(1_000_000_000));
        i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
    }
}

enum Kind {
    Pcap {
        endian: Endian,
        nanos: bool,
        linktype: u32,
        max_len: u32,
    },
    PcapNg {
        endian: Endian,
        interfaces: Vec<Interface>,
    },
}

/// Reads packets one at a time from a capture file.
pub struct CaptureReader<R: BufRead> {
    input: R,
    /// Bytes of the input's buffer that the packet returned last still borrows; consumed at
    /// the next call.
    borrowed: usize,
    kind: Kind,
    /// Bytes consumed so far.
    offset: u64,
    buf: Vec<u8>,
    /// Bytes of the first pcapng block that `open` read to recognise the format.
    pending: Vec<u8>,
    packets: u64,
    /// pcapng Simple Packet Blocks carry no time: they take the previous packet's.
    last_ts_ns: i64,
    /// Link types seen (for the import's notes).
    pub linktypes: Vec<u32>,
    done: bool,
}

/// Reads until `buf` holds `n` bytes or the input ends; returns how many were read.
fn fill<R: Read>(input: &mut R, buf: &mut Vec<u8>, n: usize) -> io::Result<usize> {
    buf.clear();
    append(input, buf, n)
}

/// Appends up to `n` bytes from the input to `buf`; fewer only at the end of the input.
fn append<R: Read>(input: &mut R, buf: &mut Vec<u8>, n: usize) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + n, 0);
    let mut got = 0;
    while got < n {
        match input.read(&mut buf[start + got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(start + got);
    Ok(got)
}

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// Describes what a non-capture file looks like, for the refusal message.
fn guess_what(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(&head[..head.len().min(64)]);
    if head.starts_with(&[0x1f, 0x8b]) {
        "it is gzip-compressed; decompress it first (gunzip)".to_string()
    } else if head.starts_with(b"#separator") || head.starts_with(b"#fields") {
        "it looks like a Zeek log; use `import zeek`".to_string()
    } else if head.first() == Some(&b'{') {
        "it looks like JSON (a Zeek JSON log? use `import zeek`)".to_string()
    } else if head.starts_with(&[0xa1, 0xb2, 0xcd, 0x34]) || head.starts_with(&[0x34, 0xcd, 0xb2, 0xa1]) {
        "it is a Kuznetzov-modified pcap, which is not supported; convert it with `editcap -F pcap`".to_string()
    } else if head.starts_with(b"SQLite format") || head.starts_with(b"PK\x03\x04") {
        "it is another kind of binary file".to_string()
    } else if text.chars().all(|c| !c.is_control() || c.is_whitespace()) {
        "it looks like text".to_string()
    } else {
        let hex: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!(
            "it starts with bytes {} instead of a pcap or pcapng magic number",
            hex.join(" ")
        )
    }
}

impl<R: BufRead> CaptureReader<R> {
    /// Reads the file header and decides the format.
    pub fn open(mut input: R) -> Result<Self, OpenError> {
        let mut head = Vec::with_capacity(64);
        let got = fill(&mut input, &mut head, 4).map_err(OpenError::Io)?;
        if got == 0 {
            return Err(OpenError::Empty);
        }
        let magic = if got == 4 {
            u32::from_le_bytes([head[0], head[1], head[2], head[3]])
        } else {
            0
        };
        let mut reader = CaptureReader {
            input,
            borrowed: 0,
            kind: Kind::PcapNg {
                endian: Endian::Little,
                interfaces: Vec::new(),
            },
            offset: 0,
            buf: Vec::with_capacity(65_536),
            pending: Vec::new(),
            packets: 0,
            last_ts_ns: 0,
            linktypes: Vec::new(),
            done: false,
        };
        let pcap = match magic {
            0xa1b2_c3d4 => Some((Endian::Little, false)),
            0xd4c3_b2a1 => Some((Endian::Big, false)),
            0xa1b2_3c4d => Some((Endian::Little, true)),
            0x4d3c_b2a1 => Some((Endian::Big, true)),
            _ => None,
        };
        if let Some((endian, nanos)) = pcap {
            let got = 4 + append(&mut reader.input, &mut head, 20).map_err(OpenError::Io)?;
            if got < 24 {
                return Err(OpenError::NotACapture {
                    hint: format!("it has a pcap magic number but only {got} of the 24 header bytes"),
                });
            }
            let snaplen = endian.u32(&head[16..20]);
            // The upper bits of the link type carry FCS information; the type is the low 16.
            let linktype = endian.u32(&head[20..24]) & 0xffff;
            let max_len = snaplen.clamp(STANDARD_MAX_PACKET, HARD_MAX_RECORD);
            reader.kind = Kind::Pcap {
                endian,
                nanos,
                linktype,
                max_len,
            };
            reader.linktypes.push(linktype);
            reader.offset = 24;
            return Ok(reader);
        }
        if magic == PCAPNG_SHB {
            // The section header is parsed as the first block; keep the bytes read so far.
            append(&mut reader.input, &mut head, 8).map_err(OpenError::Io)?;
            let endian = match head.get(8..12).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])) {
                Some(BYTE_ORDER_MAGIC) => Endian::Little,
                Some(0x4d3c_2b1a) => Endian::Big,
                _ => {
                    return Err(OpenError::NotACapture {
                        hint: "it starts like pcapng but its section header has no valid byte-order magic".to_string(),
                    })
                }
            };
            reader.kind = Kind::PcapNg {
                endian,
                interfaces: Vec::new(),
            };
            reader.pending = head;
            return Ok(reader);
        }
        let _ = append(&mut reader.input, &mut head, 60);
        Err(OpenError::NotACapture {
            hint: guess_what(&head),
        })
    }

    /// The container format.
    pub fn format(&self) -> Format {
        match self.kind {
            Kind::Pcap { .. } => Format::Pcap,
            Kind::PcapNg { .. } => Format::PcapNg,
        }
    }

    /// Bytes consumed so far (for progress).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next packet; `Ok(None)` at a clean end of file; `Err(Stop)` when a record is cut
    /// short or corrupt (after which the reader returns `Ok(None)`).
    pub fn next_packet(&mut self) -> io::Result<Result<Option<RawPacket<'_>>, Stop>> {
        self.input.consume(std::mem::take(&mut self.borrowed));
        if self.done {
            return Ok(Ok(None));
        }
        let result = match self.kind {
            Kind::Pcap { .. } => self.next_pcap()?,
            Kind::PcapNg { .. } => self.next_pcapng()?,
        };
        match result {
            Ok(Some(meta)) => {
                self.packets += 1;
                self.last_ts_ns = meta.ts_ns;
                let (start, len) = (meta.data_start, meta.data_len);
                let data = if meta.in_input {
                    // Still buffered (not consumed): fill_buf returns the same bytes, no I/O.
                    self.input.fill_buf()?
                } else {
                    &self.buf
                };
                Ok(Ok(Some(RawPacket {
                    number: self.packets,
                    ts_ns: meta.ts_ns,
                    orig_len: meta.orig_len,
                    linktype: meta.linktype,
                    data: data.get(start..start + len).unwrap_or(&[]),
                })))
            }
            Ok(None) => {
                self.done = true;
                Ok(Ok(None))
            }
            Err(stop) => {
                self.done = true;
                Ok(Err(stop))
            }
        }
    }

    fn next_pcap(&mut self) -> io::Result<Result<Option<Meta>, Stop>> {
        let Kind::Pcap {
            endian,
            nanos,
            linktype,
            max_len,
        } = self.kind
        else {
            return Ok(Ok(None));
        };
        let at = self.offset;
        // Fast path: the whole record is in the input's buffer, and the packet borrows it
        // there instead of being zero-filled and copied into `buf`.
        let avail = self.input.fill_buf()?;
        if avail.len() >= 16 {
            let incl = endian.u32(&avail[8..12]);
            if incl <= max_len && avail.len() >= 16 + incl as usize {
                let secs = endian.u32(&avail[0..4]);
                let frac = endian.u32(&avail[4..8]);
                let orig = endian.u32(&avail[12..16]);
                self.borrowed = 16 + incl as usize;
                self.offset += self.borrowed as u64;
                return Ok(Ok(Some(Meta {
                    ts_ns: pcap_ts_ns(secs, frac, nanos),
                    orig_len: orig.max(incl),
                    linktype,
                    data_start: 16,
                    data_len: incl as usize,
                    in_input: true,
                })));
            }
        }
        let got = fill(&mut self.input, &mut self.buf, 16)?;
        if got == 0 {
            return Ok(Ok(None));
        }
        if got < 16 {
            return Ok(Err(Stop {
                offset: at,
                reason: format!("the last packet record header is cut short ({got} of 16 bytes)"),
            }));
        }
        let b = &self.buf;
        let secs = endian.u32(&b[0..4]);
        let frac = endian.u32(&b[4..8]);
        let incl = endian.u32(&b[8..12]);
        let orig = endian.u32(&b[12..16]);
        if incl > max_len {
            return Ok(Err(Stop {
                offset: at,
                reason: format!(
                    "packet record {} claims {incl} captured bytes, more than the {max_len} this file allows: the file is corrupt from here",
                    self.packets + 1
                ),
            }));
        }
        let ts_ns = pcap_ts_ns(secs, frac, nanos);
        let got = fill(&mut self.input, &mut self.buf, incl as usize)?;
        self.offset += 16 + got as u64;
        if got < incl as usize {
            return Ok(Err(Stop {
                offset: at,
                reason: format!(
                    "the last packet (number {}) is cut short: {got} of its {incl} captured bytes are in the file",
                    self.packets + 1
                ),
            }));
        }
        Ok(Ok(Some(Meta {
            ts_ns,
            orig_len: orig.max(incl),
            linktype,
            data_start: 0,
            data_len: incl as usize,
            in_input: false,
        })))
    }

    /// The next packet of a pcapng file: blocks are read one by one, and those that carry no
    /// packet only update the section and its interfaces.
    fn next_pcapng(&mut self) -> io::Result<Result<Option<Meta>, Stop>> {
        loop {
            let block = match self.next_block()? {
                Ok(Some(block)) => block,
                Ok(None) => return Ok(Ok(None)),
                Err(stop) => return Ok(Err(stop)),
            };
            let packet = match block.block_type {
                PCAPNG_SHB => {
                    self.kind = Kind::PcapNg {
                        endian: block.endian,
                        interfaces: Vec::new(),
                    };
                    continue;
                }
                1 => match self.interface_description(&block) {
                    Ok(()) => continue,
                    Err(stop) => Err(stop),
                },
                6 | 2 => self.packet_block(&block),
                3 => self.simple_packet_block(&block),
                // Name resolution, statistics, custom and unknown blocks carry no packets.
                _ => continue,
            };
            return Ok(packet.map(Some));
        }
    }

    /// Reads the next pcapng block whole into `buf` (its body and the trailing length copy) and
    /// checks its framing; `Ok(None)` at a clean end of file.
    fn next_block(&mut self) -> io::Result<Result<Option<Block>, Stop>> {
        let at = self.offset;
        // Type, total length and the first body word (the byte-order magic of a section
        // header). `open` already read those of the first block.
        let mut head = std::mem::take(&mut self.pending);
        if head.is_empty() {
            fill(&mut self.input, &mut head, 12)?;
        }
        if head.is_empty() {
            return Ok(Ok(None));
        }
        if head.len() < 12 {
            return Ok(Err(Stop {
                offset: at,
                reason: format!("the last block header is cut short ({} of 12 bytes)", head.len()),
            }));
        }
        let Kind::PcapNg { mut endian, .. } = self.kind else {
            return Ok(Ok(None));
        };
        if u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == PCAPNG_SHB {
            // A new section may switch byte order.
            endian = match u32::from_le_bytes([head[8], head[9], head[10], head[11]]) {
                BYTE_ORDER_MAGIC => Endian::Little,
                0x4d3c_2b1a => Endian::Big,
                _ => {
                    return Ok(Err(Stop {
                        offset: at,
                        reason: "section header block with an invalid byte-order magic: the file is corrupt from here"
                            .to_string(),
                    }))
                }
            };
        }
        let block_type = endian.u32(&head[0..4]);
        let total = endian.u32(&head[4..8]);
        if total < 12 || total % 4 != 0 || total > HARD_MAX_RECORD {
            return Ok(Err(Stop {
                offset: at,
                reason: format!(
                    "block of type 0x{block_type:08x} has an impossible length {total}: the file is corrupt from here"
                ),
            }));
        }
        // The buffer holds the body and the trailing length copy.
        let body_len = total as usize - 8;
        self.buf.clear();
        self.buf.extend_from_slice(&head[8..12]);
        let got = append(&mut self.input, &mut self.buf, body_len - 4)?;
        self.pending = head;
        self.pending.clear();
        self.offset += 12 + got as u64;
        if self.buf.len() < body_len {
            return Ok(Err(Stop {
                offset: at,
                reason: format!(
                    "the last block (type 0x{block_type:08x}) is cut short: {} of its {total} bytes are in the file",
                    self.buf.len() + 8
                ),
            }));
        }
        let trailer = endian.u32(&self.buf[body_len - 4..body_len]);
        if trailer != total {
            return Ok(Err(Stop {
                offset: at,
                reason: format!(
                    "block of type 0x{block_type:08x} ends with length {trailer}, not {total}: the file is corrupt from here"
                ),
            }));
        }
        Ok(Ok(Some(Block {
            at,
            block_type,
            endian,
            body_end: body_len - 4,
        })))
    }

    /// An Interface Description Block: one more interface of the section, with its link type
    /// and timestamp resolution.
    fn interface_description(&mut self, block: &Block) -> Result<(), Stop> {
        let Block {
            at, endian, body_end, ..
        } = *block;
        if body_end < 8 {
            return Err(self.bad(at, "interface description block shorter than its fixed fields"));
        }
        let linktype = u32::from(endian.u16(&self.buf[0..2]));
        let snaplen = endian.u32(&self.buf[4..8]);
        let mut iface = Interface {
            linktype,
            snaplen,
            tsresol: 6,
            tsoffset: 0,
        };
        for (code, value) in options(endian, &self.buf[8..body_end]) {
            match (code, value.len()) {
                (9, 1..) => iface.tsresol = value[0],
                (14, 8..) => iface.tsoffset = endian.u64(value) as i64,
                _ => {}
            }
        }
        if !self.linktypes.contains(&linktype) {
            self.linktypes.push(linktype);
        }
        if let Kind::PcapNg { interfaces, .. } = &mut self.kind {
            interfaces.push(iface);
        }
        Ok(())
    }

    /// An Enhanced Packet Block, or the obsolete Packet Block (16-bit interface id).
    fn packet_block(&self, block: &Block) -> Result<Meta, Stop> {
        let Block {
            at,
            block_type,
            endian,
            body_end,
        } = *block;
        if body_end < 20 {
            return Err(self.bad(at, "packet block shorter than its fixed fields"));
        }
        let iface_id = if block_type == 6 {
            endian.u32(&self.buf[0..4])
        } else {
            u32::from(endian.u16(&self.buf[0..2]))
        };
        let high = u64::from(endian.u32(&self.buf[4..8]));
        let low = u64::from(endian.u32(&self.buf[8..12]));
        let caplen = endian.u32(&self.buf[12..16]) as usize;
        let orig = endian.u32(&self.buf[16..20]);
        let Some(iface) = self.interface(iface_id as usize) else {
            return Err(self.bad(
                at,
                &format!("packet refers to interface {iface_id}, which no interface description block declared"),
            ));
        };
        if caplen > body_end - 20 {
            return Err(self.bad(
                at,
                &format!(
                    "packet claims {caplen} captured bytes but its block holds {}",
                    body_end - 20
                ),
            ));
        }
        Ok(Meta {
            ts_ns: iface.ns_of((high << 32) | low),
            orig_len: orig.max(caplen as u32),
            linktype: iface.linktype,
            data_start: 20,
            data_len: caplen,
            in_input: false,
        })
    }

    /// A Simple Packet Block: interface 0, no timestamp (the previous packet's is kept).
    fn simple_packet_block(&self, block: &Block) -> Result<Meta, Stop> {
        let Block {
            at, endian, body_end, ..
        } = *block;
        if body_end < 4 {
            return Err(self.bad(at, "simple packet block shorter than its fixed fields"));
        }
        let orig = endian.u32(&self.buf[0..4]);
        let Some(iface) = self.interface(0) else {
            return Err(self.bad(at, "simple packet block before any interface description block"));
        };
        let mut caplen = (orig as usize).min(body_end - 4);
        if iface.snaplen > 0 {
            caplen = caplen.min(iface.snaplen as usize);
        }
        Ok(Meta {
            ts_ns: self.last_ts_ns,
            orig_len: orig.max(caplen as u32),
            linktype: iface.linktype,
            data_start: 4,
            data_len: caplen,
            in_input: false,
        })
    }

    fn interface(&self, id: usize) -> Option<Interface> {
        match &self.kind {
            Kind::PcapNg { interfaces, .. } => interfaces.get(id).copied(),
            Kind::Pcap { .. } => None,
        }
    }

    fn bad(&self, offset: u64, reason: &str) -> Stop {
        Stop {
            offset,
            reason: format!("{reason}: the file is corrupt from here"),
        }
    }
}

/// A pcapng block read whole into the reader's buffer: where it starts, its type, the byte
/// order of its section, and where its body ends in the buffer (before the length copy).
#[derive(Debug, Clone, Copy)]
struct Block {
    at: u64,
    block_type: u32,
    endian: Endian,
    body_end: usize,
}

struct Meta {
    ts_ns: i64,
    orig_len: u32,
    linktype: u32,
    data_start: usize,
    data_len: usize,
    /// The data lies in the input's buffer (borrowed) rather than in `buf`.
    in_input: bool,
}

/// A classic pcap record's time in nanoseconds.
fn pcap_ts_ns(secs: u32, frac: u32, nanos: bool) -> i64 {
    i64::from(secs) * 1_000_000_000 + if nanos { i64::from(frac) } else { i64::from(frac) * 1000 }
}

/// pcapng options: (code, value) pairs until opt_endofopt or the end of the bytes.
fn options(endian: Endian, mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let code = endian.u16(&b[0..2]);
        let len = endian.u16(&b[2..4]) as usize;
        if code == 0 || 4 + len > b.len() {
            return None;
        }
        let value = &b[4..4 + len];
        let padded = (4 + len + 3) & !3;
        b = &b[padded.min(b.len())..];
        Some((code, value))
    })
}

/// Writes a classic pcap file (for tests, benchmarks and fuzz seeds).
pub mod write {
    use std::io::{self, Write};

    /// Classic pcap header: little-endian, microseconds, given link type.
    pub fn pcap_header(out: &mut impl Write, linktype: u32, snaplen: u32) -> io::Result<()> {
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())?;
        out.write_all(&snaplen.to_le_bytes())?;
        out.write_all(&linktype.to_le_bytes())
    }

    /// One classic pcap record with a microsecond timestamp.
    pub fn pcap_record(out: &mut impl Write, ts_us: i64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let secs = ts_us.div_euclid(1_000_000) as u32;
        let frac = ts_us.rem_euclid(1_000_000) as u32;
        out.write_all(&secs.to_le_bytes())?;
        out.write_all(&frac.to_le_bytes())?;
        out.write_all(&(data.len() as u32).to_le_bytes())?;
        out.write_all(&orig_len.to_le_bytes())?;
        out.write_all(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (number, ts_ns, orig_len, linktype, captured length) of each packet, and the stop.
    type Packets = (Vec<(u64, i64, u32, u32, usize)>, Option<Stop>);

    fn read_all(bytes: &[u8]) -> Packets {
        read_all_from(bytes)
    }

    fn read_all_from<R: BufRead>(input: R) -> Packets {
        let mut r = CaptureReader::open(input).unwrap();
        let mut out = Vec::new();
        loop {
            match r.next_packet().unwrap() {
                Ok(Some(p)) => out.push((p.number, p.ts_ns, p.orig_len, p.linktype, p.data.len())),
                Ok(None) => return (out, None),
                Err(stop) => return (out, Some(stop)),
            }
        }
    }

    /// The packets' bytes, through a reader whose buffer holds `capacity` bytes.
    fn bytes_through(file: &[u8], capacity: usize) -> Vec<Vec<u8>> {
        let mut r = CaptureReader::open(std::io::BufReader::with_capacity(capacity, file)).unwrap();
        let mut out = Vec::new();
        while let Ok(Some(p)) = r.next_packet().unwrap() {
            out.push(p.data.to_vec());
        }
        out
    }

    #[test]
    fn records_split_across_the_input_buffer_read_the_same() {
        // Records borrowed from the input's buffer and records copied because they straddle
        // its end must give the same packets, whatever the buffer size.
        let records: Vec<(i64, Vec<u8>)> = (0..50u8)
            .map(|i| (i64::from(i) * 1000, vec![i; usize::from(i) * 7 % 61]))
            .collect();
        let refs: Vec<(i64, &[u8])> = records.iter().map(|(t, d)| (*t, d.as_slice())).collect();
        let mut file = pcap(&refs);
        let whole = read_all(&file);
        let expected: Vec<Vec<u8>> = records.iter().map(|(_, d)| d.clone()).collect();
        for capacity in [1, 7, 16, 17, 40, 64, 333, 1 << 16] {
            assert_eq!(
                read_all_from(std::io::BufReader::with_capacity(capacity, &file[..])),
                whole,
                "capacity {capacity}"
            );
            assert_eq!(bytes_through(&file, capacity), expected, "capacity {capacity}");
        }
        // A cut-short last record still stops at its offset, whichever path read it.
        file.truncate(file.len() - 5);
        let cut = read_all(&file);
        for capacity in [16, 40, 1 << 16] {
            assert_eq!(
                read_all_from(std::io::BufReader::with_capacity(capacity, &file[..])),
                cut
            );
        }
        assert_eq!(cut.0.len(), 49);
    }

    fn pcap(records: &[(i64, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        write::pcap_header(&mut v, 1, 65535).unwrap();
        for (ts, data) in records {
            write::pcap_record(&mut v, *ts, data.len() as u32, data).unwrap();
        }
        v
    }

    #[test]
    fn classic_pcap_both_byte_orders_and_nanoseconds() {
        let le = pcap(&[(1_500_000_000_123_456, &[1, 2, 3]), (1_500_000_001_000_000, &[])]);
        let (p, stop) = read_all(&le);
        assert!(stop.is_none());
        assert_eq!(
            p,
            vec![
                (1, 1_500_000_000_123_456_000, 3, 1, 3),
                (2, 1_500_000_001_000_000_000, 0, 1, 0)
            ]
        );

        // Big-endian, nanosecond magic.
        let mut be = Vec::new();
        be.extend_from_slice(&0xa1b2_3c4du32.to_be_bytes());
        be.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
        be.extend_from_slice(&65535u32.to_be_bytes());
        be.extend_from_slice(&101u32.to_be_bytes());
        be.extend_from_slice(&10u32.to_be_bytes());
        be.extend_from_slice(&999_999_999u32.to_be_bytes());
        be.extend_from_slice(&2u32.to_be_bytes());
        be.extend_from_slice(&60u32.to_be_bytes());
        be.extend_from_slice(&[0x45, 0]);
        let (p, stop) = read_all(&be);
        assert!(stop.is_none());
        assert_eq!(p, vec![(1, 10_999_999_999, 60, 101, 2)]);
    }

    #[test]
    fn truncated_last_record_keeps_earlier_packets() {
        let mut f = pcap(&[(0, &[1; 10]), (1, &[2; 10])]);
        f.truncate(f.len() - 3);
        let (p, stop) = read_all(&f);
        assert_eq!(p.len(), 1);
        let stop = stop.unwrap();
        assert_eq!(stop.offset, 24 + 16 + 10);
        assert!(stop.reason.contains("cut short"), "{}", stop.reason);
    }

    #[test]
    fn garbage_after_header_is_a_stop_not_a_panic() {
        let mut f = pcap(&[]);
        f.extend_from_slice(&[0xff; 40]);
        let (p, stop) = read_all(&f);
        assert!(p.is_empty());
        assert_eq!(stop.unwrap().offset, 24);
    }

    #[test]
    fn refusals() {
        assert!(matches!(CaptureReader::open(&b""[..]), Err(OpenError::Empty)));
        let Err(OpenError::NotACapture { hint }) = CaptureReader::open(&b"#separator \\x09\n#fields\tts"[..]) else {
            panic!()
        };
        assert!(hint.contains("Zeek"), "{hint}");
        let Err(OpenError::NotACapture { hint }) = CaptureReader::open(&[0x1f, 0x8b, 8, 0][..]) else {
            panic!()
        };
        assert!(hint.contains("gzip"), "{hint}");
        assert!(matches!(
            CaptureReader::open(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0][..]),
            Err(OpenError::NotACapture { .. })
        ));
    }

    fn block(t: u32, body: &[u8]) -> Vec<u8> {
        let total = 12 + body.len() as u32;
        let mut v = t.to_le_bytes().to_vec();
        v.extend_from_slice(&total.to_le_bytes());
        v.extend_from_slice(body);
        v.extend_from_slice(&total.to_le_bytes());
        v
    }

    fn idb(linktype: u16, tsresol: Option<u8>) -> Vec<u8> {
        let mut b = linktype.to_le_bytes().to_vec();
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&0u32.to_le_bytes());
        if let Some(r) = tsresol {
            b.extend_from_slice(&9u16.to_le_bytes());
            b.extend_from_slice(&1u16.to_le_bytes());
            b.extend_from_slice(&[r, 0, 0, 0]);
            b.extend_from_slice(&[0, 0, 0, 0]);
        }
        block(1, &b)
    }

    fn epb(iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let mut b = iface.to_le_bytes().to_vec();
        b.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(ts as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        block(6, &b)
    }

    fn shb() -> Vec<u8> {
        let mut b = BYTE_ORDER_MAGIC.to_le_bytes().to_vec();
        b.extend_from_slice(&[1, 0, 0, 0]);
        b.extend_from_slice(&(-1i64).to_le_bytes());
        block(PCAPNG_SHB, &b)
    }

    #[test]
    fn pcapng_interfaces_with_their_own_resolution() {
        let mut f = shb();
        f.extend(idb(1, None));
        f.extend(idb(113, Some(9)));
        f.extend(idb(101, Some(0x80 | 10)));
        f.extend(block(5, &[0; 8])); // interface statistics: skipped
        f.extend(epb(0, 1_000_001, &[1, 2, 3]));
        f.extend(epb(1, 2_000_000_005, &[1]));
        f.extend(epb(2, 3 * 1024, &[]));
        let (p, stop) = read_all(&f);
        assert!(stop.is_none(), "{stop:?}");
        assert_eq!(
            p,
            vec![
                (1, 1_000_001_000, 3, 1, 3),
                (2, 2_000_000_005, 1, 113, 1),
                (3, 3_000_000_000, 0, 101, 0)
            ]
        );
    }

    #[test]
    fn pcapng_corrupt_block_reports_offset() {
        let mut f = shb();
        f.extend(idb(1, None));
        let good = f.len();
        f.extend(epb(0, 1, &[9; 5]));
        let second = f.len();
        let mut bad = epb(0, 2, &[9; 5]);
        let n = bad.len();
        bad[n - 4] ^= 0xff; // trailing length no longer matches
        f.extend(bad);
        let (p, stop) = read_all(&f);
        assert_eq!(p.len(), 1);
        assert!(good < second);
        let stop = stop.unwrap();
        assert_eq!(stop.offset, second as u64);
        assert!(stop.reason.contains("corrupt"));
    }

    #[test]
    fn pcapng_packet_on_undeclared_interface_stops() {
        let mut f = shb();
        f.extend(epb(0, 1, &[1]));
        let (p, stop) = read_all(&f);
        assert!(p.is_empty());
        assert!(stop.unwrap().reason.contains("interface 0"));
    }
}
