//! Fuzzes .mmdb databases (`geo --mmdb FILE`): arbitrary file bytes opened as a database, then
//! looked up for fixed addresses of both families and for addresses taken from the input. An
//! unreadable file or a damaged tree may fail with a reason; nothing may panic.
//!
//! It links the `netlens-parsers` crate only (no DuckDB in the fuzz build).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use netlens_parsers::mmdb::Database;

fuzz_target!(|data: &[u8]| {
    let Ok(database) = Database::open(data.to_vec()) else {
        return;
    };
    let _ = (database.kind(), database.is_known_kind());
    let mut addrs: Vec<IpAddr> = ["81.2.69.160", "2.125.160.216", "1.128.0.0", "2001:218::", "::1", "0.0.0.0"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    if let Some(b) = data.get(..4) {
        addrs.push(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])));
    }
    if let Some(b) = data.get(data.len().saturating_sub(16)..).filter(|b| b.len() == 16) {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(b);
        addrs.push(IpAddr::V6(Ipv6Addr::from(octets)));
    }
    for addr in addrs {
        if let Ok(Some(found)) = database.lookup(addr) {
            let r = found.record;
            let _ = r.country.as_ref().map(|c| c.english_name());
            let _ = r.subdivisions.first().map(|p| p.english_name());
        }
    }
});
