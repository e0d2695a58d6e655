//! From capture bytes to Zeek conn.log flows, with nothing but std: [`reader`] streams pcap and
//! pcapng records, [`decode`] takes a frame down to its IP and transport headers (and the
//! tunnels inside), [`frag`] reassembles IP fragments, and [`flow`] assembles the packets into
//! bidirectional flows as Zeek's connection and TCP analyzers do.
//!
//! A crate of its own so that the fuzz target (fuzz/) links exactly this code without the
//! bundled DuckDB, and so that the boundary is kept by the compiler: this crate knows no store,
//! no table, no command line. The netlens crate's `ingest` (capture files) and
//! `capture::packets` (live packets) drive it and store what it returns.

pub mod decode;
pub mod flow;
pub mod frag;
pub mod reader;
