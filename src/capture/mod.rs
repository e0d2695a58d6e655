//! Capture: what a snapshot of the host is, where snapshots come from, and the loop that
//! stores them.
//!
//! The OS sits behind [`Source`]: [`system::SystemSource`] is the only code that reads the
//! live system; [`fixture::FixtureSource`] replays recorded snapshots so everything after
//! collection (direction, connection tracking, storage) is tested without a live OS;
//! [`demo::DemoSource`] synthesizes a day of host history for `netlens demo`.
//! This module may use `store` to append; it never reads analysis results.

pub mod cmdline;
pub mod demo;
pub mod direction;
pub mod fixture;
pub mod packets;
pub mod persist;
pub mod run;
pub mod system;
pub mod tracker;

#[cfg(target_os = "linux")]
mod procfd;
#[cfg(target_os = "linux")]
mod procfiles;
#[cfg(target_os = "linux")]
mod procstat;
#[cfg(target_os = "linux")]
mod sockdiag;

use chrono::{DateTime, Utc};
pub use netlens_parsers::snapshot::{
    state_name, InterfaceRecord, ProcessRecord, Proto, Snapshot, SocketRecord, StateName, TcpCounterFields, TcpCounters,
};

use crate::error::Result;

/// Where snapshots come from. `now` is passed in so replays and tests control time.
pub trait Source {
    /// Name stored in `snapshots.source`.
    fn name(&self) -> &'static str;

    /// Takes the next snapshot; `Ok(None)` when a finite source is exhausted.
    fn snapshot(&mut self, now: DateTime<Utc>) -> Result<Option<Snapshot>>;
}
