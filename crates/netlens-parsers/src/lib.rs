//! netlens's parsers of untrusted input, a crate of their own so that cargo-fuzz (fuzz/) can
//! build them without the netlens crate, which bundles DuckDB. Each module turns bytes or text
//! someone else wrote into plain values or an error saying why not; none reads a file, the
//! network or the store (the netlens crate does that and hands the bytes in), and none may
//! panic, loop without end or allocate without bound, whatever the input.
//!
//! - [`lines`]: the bounded line reader of the line-based formats;
//! - [`zeek`]: Zeek conn.log lines (TSV and JSON) into flow rows;
//! - [`snapshot`]: what a snapshot of the host is, and reading one from a replay's line;
//! - [`ipapi`]: ip-api's batch replies and its rate-limit headers;
//! - [`mmdb`]: lookups in MaxMind DB (`.mmdb`) files held in memory;
//! - [`split`]: the shell's splitting of SQL text into statements;
//! - `mutate` (hidden): seeded damage to good input, for the hostile-input tests here and in
//!   the netlens crate.

pub mod ipapi;
pub mod lines;
pub mod mmdb;
#[doc(hidden)]
pub mod mutate;
pub mod snapshot;
pub mod split;
pub mod zeek;
