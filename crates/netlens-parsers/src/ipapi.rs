//! ip-api.com's answers: the batch endpoint's reply (a JSON array with one answer per address
//! sent, in order) and its rate-limit headers (`X-Rl`, `X-Ttl`). Both come over the network from
//! a provider (over plain HTTP on the free tier, so anyone on the path can write them), hence
//! pure functions of the text and the time passed in, which never panic. The netlens crate's
//! `geo::ipapi` sends the requests and waits.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Wait assumed when ip-api says the quota is used up but sends no X-Ttl: its window is a minute.
pub const DEFAULT_RESET: Duration = Duration::from_secs(60);

/// What the provider's headers say about the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimit {
    /// Requests left in the window, when the provider said.
    pub remaining: Option<u64>,
    /// When the window resets, when the provider said.
    pub reset_at: Option<Instant>,
}

/// What to do before the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Send,
    /// The quota is used up; it resets after this wait, which is within `--max-wait`.
    Wait(Duration),
    /// The quota is used up for longer than `--max-wait`.
    GiveUp(Duration),
}

/// Reads `X-Rl` and `X-Ttl` of an answer received at `now`. Unreadable values count as absent.
pub fn observe(x_rl: Option<&str>, x_ttl: Option<&str>, now: Instant) -> RateLimit {
    RateLimit {
        remaining: x_rl.and_then(|v| v.trim().parse().ok()),
        reset_at: parse_ttl(x_ttl).and_then(|ttl| now.checked_add(ttl)),
    }
}

/// The quota after an HTTP 429 received at `now`: used up until `X-Ttl` (a minute without it).
pub fn after_429(x_ttl: Option<&str>, now: Instant) -> RateLimit {
    RateLimit {
        remaining: Some(0),
        reset_at: now
            .checked_add(parse_ttl(x_ttl).unwrap_or(DEFAULT_RESET))
            .or(Some(now + DEFAULT_RESET)),
    }
}

/// The longest `X-Ttl` believed: ip-api's window is a minute, and the header comes over plain
/// HTTP, so anyone on the path can write `18446744073709551615` (which overflowed the clock).
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

fn parse_ttl(x_ttl: Option<&str>) -> Option<Duration> {
    x_ttl
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_TTL))
}

/// Decides whether the next request may go now. Only an exhausted quota (`X-Rl: 0`) waits,
/// until the reset plus a second of margin, because ip-api counts the window on its own clock.
pub fn plan(limit: &RateLimit, now: Instant, max_wait: Duration) -> Plan {
    if limit.remaining != Some(0) {
        return Plan::Send;
    }
    let until_reset = match limit.reset_at {
        Some(reset) => reset.saturating_duration_since(now),
        None => DEFAULT_RESET,
    };
    if until_reset.is_zero() {
        return Plan::Send;
    }
    let wait = until_reset + Duration::from_secs(1);
    if wait <= max_wait {
        Plan::Wait(wait)
    } else {
        Plan::GiveUp(wait)
    }
}

/// One address's answer as ip-api sends it (empty strings where it knows nothing).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reply {
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
    pub query: String,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default, rename = "countryCode")]
    pub country_code: Option<String>,
    #[serde(default, rename = "regionName")]
    pub region: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
    #[serde(default, rename = "as")]
    pub as_text: Option<String>,
}

impl Reply {
    /// `AS15169 Google LLC` → (15169, "Google LLC").
    pub fn asn_and_org(&self) -> (Option<u32>, Option<String>) {
        let Some(text) = self.as_text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
            return (None, None);
        };
        let (first, rest) = text.split_once(' ').unwrap_or((text, ""));
        match first.strip_prefix("AS").and_then(|n| n.parse().ok()) {
            Some(asn) => (Some(asn), non_empty(Some(rest.trim().to_string()))),
            None => (None, Some(text.to_string())),
        }
    }
}

/// `None` for missing and empty strings.
pub fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// Checks that the body answers exactly the batch: a JSON array with one well-formed answer
/// per address sent. Anything else is malformed as a whole, so nothing of it is stored.
pub fn parse_batch(batch: &[String], body: &str) -> std::result::Result<Vec<Reply>, String> {
    let replies: Vec<Reply> =
        serde_json::from_str(body).map_err(|e| format!("malformed answer ({e}): {}", excerpt(body)))?;
    if replies.len() != batch.len() {
        return Err(format!(
            "malformed answer: {} results for {} addresses",
            replies.len(),
            batch.len()
        ));
    }
    let sent: HashSet<&str> = batch.iter().map(String::as_str).collect();
    for r in &replies {
        if !sent.contains(r.query.as_str()) {
            return Err(format!(
                "malformed answer: a result for {}, which was not asked",
                r.query
            ));
        }
        if r.status != "success" && r.status != "fail" {
            return Err(format!("malformed answer: status '{}' for {}", r.status, r.query));
        }
    }
    Ok(replies)
}

/// The start of a body (120 characters), for messages.
pub fn excerpt(text: &str) -> String {
    let t = text.trim();
    if t.is_empty() {
        return "(empty body)".to_string();
    }
    let cut: String = t.chars().take(120).collect();
    if cut.len() < t.len() {
        format!("{cut}...")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_waits_only_when_the_quota_is_used_up() {
        let t0 = Instant::now();
        // Regression (issue 22): a TTL past the clock's range panicked; it is clamped to a day.
        let hostile = observe(Some("0"), Some("18446744073709551615"), t0);
        assert_eq!(
            plan(&hostile, t0, Duration::from_secs(60)),
            Plan::GiveUp(MAX_TTL + Duration::from_secs(1))
        );
        let _ = after_429(Some("18446744073709551615"), t0);
        let max = Duration::from_secs(60);
        assert_eq!(plan(&RateLimit::default(), t0, max), Plan::Send);
        assert_eq!(plan(&observe(Some("3"), Some("40"), t0), t0, max), Plan::Send);
        let used_up = observe(Some("0"), Some("20"), t0);
        assert_eq!(plan(&used_up, t0, max), Plan::Wait(Duration::from_secs(21)));
        assert_eq!(
            plan(&used_up, t0 + Duration::from_secs(15), max),
            Plan::Wait(Duration::from_secs(6))
        );
        assert_eq!(plan(&used_up, t0 + Duration::from_secs(20), max), Plan::Send);
        assert_eq!(
            plan(&used_up, t0, Duration::from_secs(5)),
            Plan::GiveUp(Duration::from_secs(21))
        );
        // No X-Ttl: assume ip-api's one-minute window.
        assert_eq!(
            plan(&observe(Some("0"), None, t0), t0, Duration::from_secs(30)),
            Plan::GiveUp(Duration::from_secs(61))
        );
    }

    #[test]
    fn headers_that_do_not_parse_count_as_absent() {
        let t0 = Instant::now();
        assert_eq!(observe(Some("many"), Some("soon"), t0), RateLimit::default());
        assert_eq!(observe(Some(" 7 "), None, t0).remaining, Some(7));
        let l = after_429(Some("12"), t0);
        assert_eq!((l.remaining, l.reset_at), (Some(0), Some(t0 + Duration::from_secs(12))));
        assert_eq!(after_429(Some("x"), t0).reset_at, Some(t0 + DEFAULT_RESET));
    }

    #[test]
    fn as_field_splits_into_number_and_name() {
        let r = |t: &str| Reply {
            status: "success".into(),
            message: None,
            query: "1.1.1.1".into(),
            country: None,
            country_code: None,
            region: None,
            city: None,
            lat: None,
            lon: None,
            as_text: Some(t.into()),
        };
        assert_eq!(
            r("AS13335 Cloudflare, Inc.").asn_and_org(),
            (Some(13335), Some("Cloudflare, Inc.".into()))
        );
        assert_eq!(r("AS7018").asn_and_org(), (Some(7018), None));
        assert_eq!(r("").asn_and_org(), (None, None));
        assert_eq!(r("Some Org").asn_and_org(), (None, Some("Some Org".into())));
    }

    /// Issue 22 (fuzzing): damaged replies and headers never panic, and an accepted reply
    /// answers exactly the addresses sent.
    #[test]
    fn damaged_replies_and_headers_never_panic() {
        let batch: Vec<String> = ["8.8.8.8", "1.1.1.1"].iter().map(|a| a.to_string()).collect();
        let body = r#"[{"status":"success","query":"8.8.8.8","country":"United States","countryCode":"US","regionName":"California","city":"Mountain View","lat":37.4,"lon":-122.1,"as":"AS15169 Google LLC"},{"status":"fail","message":"reserved range","query":"1.1.1.1"}]"#;
        assert_eq!(parse_batch(&batch, body).map(|r| r.len()), Ok(2));
        let now = Instant::now();
        for (_, case, damaged) in crate::mutate::cases(&[body.as_bytes(), b"60", b"0"], 2000) {
            let text = String::from_utf8_lossy(&damaged);
            if let Ok(replies) = parse_batch(&batch, &text) {
                assert_eq!(replies.len(), batch.len(), "case {case}: {text:?}");
                assert!(replies.iter().all(|r| batch.contains(&r.query)), "case {case}");
                for r in &replies {
                    let _ = r.asn_and_org();
                }
            }
            let limit = observe(Some(&text), Some(&text), now);
            assert!(limit.reset_at.is_none_or(|t| t <= now + MAX_TTL), "case {case}");
            let _ = plan(&limit, now, Duration::from_secs(120));
            let _ = plan(&after_429(Some(&text), now), now, Duration::from_secs(120));
        }
    }
}
