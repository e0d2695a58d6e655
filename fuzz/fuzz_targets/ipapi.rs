//! Fuzzes what ip-api.com sends back (over plain HTTP on the free tier, so anyone on the path can
//! write it): the batch reply's body and the `X-Rl` / `X-Ttl` rate-limit headers. The input is
//! split at its first two newlines into `X-Rl`, `X-Ttl` and the body. Nothing may panic, an
//! accepted reply answers exactly the addresses sent, and no header makes a wait longer than
//! a day.
//!
//! It links the `netlens-parsers` crate only (no DuckDB in the fuzz build).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netlens_parsers::ipapi::{after_429, observe, parse_batch, plan, Plan, MAX_TTL};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let x_rl = parts.next();
    let x_ttl = parts.next();
    let body = parts.next().unwrap_or("");
    let batch: Vec<String> = ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    if let Ok(replies) = parse_batch(&batch, body) {
        assert_eq!(replies.len(), batch.len());
        for r in &replies {
            assert!(batch.contains(&r.query));
            assert!(r.status == "success" || r.status == "fail");
            let _ = r.asn_and_org();
        }
    }
    let now = Instant::now();
    let longest = MAX_TTL + Duration::from_secs(1);
    for limit in [observe(x_rl, x_ttl, now), after_429(x_ttl, now)] {
        assert!(limit.reset_at.is_none_or(|t| t <= now + MAX_TTL));
        match plan(&limit, now, Duration::from_secs(3600)) {
            Plan::Send => {}
            Plan::Wait(d) => assert!(d <= Duration::from_secs(3600)),
            Plan::GiveUp(d) => assert!(d <= longest),
        }
    }
});
