//! Geolocation: which country, city and autonomous system a remote address belongs to.
//!
//! Every address goes through the same chain: addresses outside public unicast space (private,
//! loopback, link-local, CGNAT, multicast, documentation, reserved) are classified locally by
//! [`crate::netaddr`] and never leave the machine; public ones are answered by the `--mmdb`
//! files ([`mmdb`]), and what those leave open by the opt-in online provider ([`ipapi`]).
//! Answers go into the `geo` table in one transaction per run; `geo` is also the cache.
//!
//! Reads `connection_lifetimes`, `sockets` and `flows`; writes only `geo` and `geo_runs`.

pub mod ipapi;
pub mod mmdb;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::netaddr::{self, Scope};
use crate::store::{quote_literal, Store};
use ipapi::{Clock, Transport};
use mmdb::MmdbSet;

/// Online geolocation provider. Off unless chosen: it sends addresses to a third party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeoProvider {
    /// Ask no one: local ranges and `.mmdb` files only.
    Off,
    /// ip-api.com's batch endpoint.
    IpApi,
}

/// Where answers come from and how long they are kept, for [`fill`] and [`lookup`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GeoRequest {
    /// Offline databases, answers merged field by field in this order.
    pub mmdb: Vec<std::path::PathBuf>,
    pub provider: GeoProvider,
    /// Endpoint of the provider's batch API.
    pub url: String,
    /// Give up on a provider request after this long.
    pub timeout: Duration,
    /// Longest wait for the provider's rate limit to reset.
    pub max_wait: Duration,
    /// Look up again answers older than this.
    pub ttl: Duration,
    /// Look up every address again, whatever the cache holds.
    pub refresh: bool,
}

impl GeoRequest {
    /// Offline lookups in `mmdb` with every other option at its default (the command line's,
    /// which a test in `cli` keeps equal): no provider, answers kept 30 days.
    pub fn offline(mmdb: Vec<std::path::PathBuf>) -> Self {
        GeoRequest {
            mmdb,
            provider: GeoProvider::Off,
            url: "http://ip-api.com/batch".to_string(),
            timeout: Duration::from_secs(10),
            max_wait: Duration::from_secs(60),
            ttl: Duration::from_secs(30 * 86_400),
            refresh: false,
        }
    }
}

/// One address's answer, as stored in a `geo` row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub ip: String,
    pub scope: Option<Scope>,
    pub status: Status,
    pub country_code: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub asn: Option<u32>,
    pub org: Option<String>,
    pub registered_country_code: Option<String>,
    pub network: Option<String>,
    pub source: String,
    pub note: Option<String>,
}

impl Answer {
    /// True once any source gave a location or network owner.
    pub fn has_data(&self) -> bool {
        self.country_code.is_some()
            || self.country.is_some()
            || self.city.is_some()
            || self.region.is_some()
            || self.asn.is_some()
            || self.org.is_some()
            || self.latitude.is_some()
            || self.registered_country_code.is_some()
    }
}

/// `geo.status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    Found,
    #[default]
    NotFound,
    Local,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Found => "found",
            Status::NotFound => "not_found",
            Status::Local => "local",
        }
    }
}

/// What a run did; `provider_error` is set when the provider failed for some addresses (the
/// answered ones are stored all the same).
#[derive(Debug, Default)]
pub struct Run {
    pub run_id: Option<i64>,
    pub addresses: usize,
    pub local: usize,
    pub found: usize,
    pub not_found: usize,
    pub failed: usize,
    /// Texts in the source tables that are not IP addresses (skipped, never stored).
    pub skipped: Vec<String>,
    /// The answers stored, in input order.
    pub stored: Vec<String>,
    pub provider_error: Option<Error>,
}

/// The configured sources: local ranges always, then `.mmdb` files, then the provider.
pub struct Sources<'a> {
    pub mmdb: MmdbSet,
    pub provider: Option<(&'a dyn Transport, &'a mut dyn Clock)>,
    pub max_wait: Duration,
    /// Where a note the user should see while the run goes on is sent (the wait for the
    /// provider's rate limit, which can last `max_wait`); the command layer shows it.
    pub notice: &'a mut dyn FnMut(&str),
}

impl Sources<'_> {
    fn describe(&self) -> String {
        let mut parts = vec!["local".to_string()];
        parts.extend(self.mmdb.names());
        if let Some((t, _)) = &self.provider {
            parts.push(format!("ip-api ({})", without_query(t.url())));
        }
        parts.join(",")
    }
}

/// `url` without its query, where a paid endpoint's key goes (`?key=...`): what is stored in
/// `geo_runs.sources` never holds a key.
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// `netlens geo`: looks up every remote address of connections, sockets and flows that has no
/// answer yet (or an answer older than `--ttl`, or every one with `--refresh`). Notes come
/// through `notice` as the run goes (see [`Sources::notice`]).
pub fn fill(store: &Store, args: &GeoRequest, now: DateTime<Utc>, notice: &mut dyn FnMut(&str)) -> Result<Run> {
    let (texts, skipped) = pending_addresses(store, args, now)?;
    with_sources(store, args, notice, |sources| {
        let mut run = resolve(store, "geo", &texts, sources, now)?;
        run.skipped = skipped;
        Ok(run)
    })
}

/// `netlens geo lookup IP...`: looks up the given addresses afresh and stores the answers.
pub fn lookup(
    store: &Store,
    args: &GeoRequest,
    ips: &[String],
    now: DateTime<Utc>,
    notice: &mut dyn FnMut(&str),
) -> Result<Run> {
    let mut texts = Vec::new();
    for text in ips {
        let addr: IpAddr = text
            .trim()
            .parse()
            .map_err(|_| Error::Usage(format!("'{text}' is not an IPv4 or IPv6 address")))?;
        let canonical = addr.to_string();
        if !texts.contains(&canonical) {
            texts.push(canonical);
        }
    }
    with_sources(store, args, notice, |sources| {
        resolve(store, "geo lookup", &texts, sources, now)
    })
}

/// Opens the sources `args` name and runs `work` with them.
fn with_sources(
    store: &Store,
    args: &GeoRequest,
    notice: &mut dyn FnMut(&str),
    work: impl FnOnce(&mut Sources) -> Result<Run>,
) -> Result<Run> {
    // Checked first: a read-only run would ask the provider and then fail to keep the answers.
    if store.is_read_only() {
        return Err(Error::Usage(
            "geo stores its answers in the geo table, which --read-only forbids\n  hint: run it without --read-only"
                .to_string(),
        ));
    }
    let scheme = args.url.to_ascii_lowercase();
    if args.provider == GeoProvider::IpApi && !scheme.starts_with("http://") && !scheme.starts_with("https://") {
        return Err(Error::Usage(format!(
            "--url {}: not an http:// or https:// endpoint\n  \
             hint: ip-api's free endpoint is http://ip-api.com/batch; its paid one is https://pro.ip-api.com/batch?key=KEY",
            without_query(&args.url)
        )));
    }
    let mmdb = MmdbSet::open(&args.mmdb)?;
    for note in mmdb.notes() {
        notice(note);
    }
    let mut clock = ipapi::SystemClock;
    let transport = match args.provider {
        GeoProvider::Off => None,
        GeoProvider::IpApi => Some(ipapi::HttpTransport::new(&args.url, args.timeout).map_err(|reason| {
            Error::Usage(format!(
                "cannot set up the HTTP client for {}: {reason}",
                without_query(&args.url)
            ))
        })?),
    };
    let mut sources = Sources {
        mmdb,
        provider: transport
            .as_ref()
            .map(|t| (t as &dyn Transport, &mut clock as &mut dyn Clock)),
        max_wait: args.max_wait,
        notice,
    };
    work(&mut sources)
}

/// Answers `texts` (addresses as written in the store) from `sources` and stores the answers in
/// one transaction. Fails before storing anything when a public address has no source to ask
/// or a database is damaged; a failing provider leaves its addresses unstored and is reported
/// in [`Run::provider_error`].
pub fn resolve(
    store: &Store,
    command: &str,
    texts: &[String],
    sources: &mut Sources,
    now: DateTime<Utc>,
) -> Result<Run> {
    let started = now;
    let mut run = Run {
        addresses: texts.len(),
        ..Run::default()
    };
    let mut answers: Vec<Option<Answer>> = Vec::with_capacity(texts.len());
    // Public addresses still open, by the text sent to the provider (IPv4-mapped IPv6 as IPv4).
    let mut open: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, text) in texts.iter().enumerate() {
        let Ok(addr) = text.trim().parse::<IpAddr>() else {
            run.skipped.push(text.clone());
            answers.push(None);
            continue;
        };
        let scope = netaddr::scope(addr);
        let mut answer = Answer {
            ip: text.clone(),
            scope: Some(scope),
            ..Answer::default()
        };
        if scope != Scope::Public {
            answer.status = Status::Local;
            answer.source = "local".to_string();
            answer.note = Some(format!("{} address, classified locally", scope.as_str()));
            answers.push(Some(answer));
            continue;
        }
        let lookup_addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        if !sources.mmdb.is_empty() && sources.mmdb.lookup(lookup_addr, &mut answer)? {
            answer.status = Status::Found;
            answers.push(Some(answer));
            continue;
        }
        if !sources.mmdb.is_empty() {
            answer.source = sources.mmdb.names().join(",");
            answer.note = Some("not in the .mmdb databases".to_string());
        }
        open.entry(lookup_addr.to_string()).or_default().push(i);
        answers.push(Some(answer));
    }
    run.addresses -= run.skipped.len();

    if !open.is_empty() && sources.mmdb.is_empty() && sources.provider.is_none() {
        return Err(Error::Usage(format!(
            "{} public addresses need a geolocation source, and none is configured (e.g. {})\n  \
             hint: pass --mmdb PATH (a MaxMind/DB-IP .mmdb file, offline), or --provider ip-api \
             (sends these addresses to ip-api.com); nothing was stored",
            open.len(),
            open.keys().next().map(String::as_str).unwrap_or_default()
        )));
    }

    let mut failed: HashSet<usize> = HashSet::new();
    if let Some((transport, clock)) = sources.provider.as_mut() {
        let queries: Vec<String> = open.keys().cloned().collect();
        let outcome = ipapi::lookup(
            &queries,
            *transport,
            &mut **clock,
            sources.max_wait,
            &mut *sources.notice,
        );
        // Ctrl-C leaves the store as it was: answers got before the wait are not stored either.
        if outcome.interrupted {
            return Err(Error::Interrupted);
        }
        for reply in outcome.answers {
            for &i in open.get(&reply.query).into_iter().flatten() {
                if let Some(answer) = answers[i].as_mut() {
                    apply_reply(answer, &reply);
                }
            }
        }
        for query in &outcome.failed {
            failed.extend(open.get(query).into_iter().flatten().copied());
        }
        if !outcome.failed.is_empty() {
            run.provider_error = Some(Error::GeoProvider {
                url: transport.url().to_string(),
                asked: queries.len(),
                answered: queries.len() - outcome.failed.len(),
                failed: outcome.failed.len(),
                reason: outcome.reasons.join("; "),
            });
        }
    }

    let to_store: Vec<Answer> = answers
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !failed.contains(i))
        .filter_map(|(_, a)| a)
        .collect();
    run.failed = failed.len();
    for a in &to_store {
        match a.status {
            Status::Local => run.local += 1,
            Status::Found => run.found += 1,
            Status::NotFound => run.not_found += 1,
        }
    }
    if to_store.is_empty() {
        return Ok(run);
    }
    let error_text = run.provider_error.as_ref().map(|e| match e {
        Error::GeoProvider { reason, .. } => reason.clone(),
        other => other.to_string(),
    });
    let run_id = store.in_transaction(|_| {
        store_answers(
            store,
            command,
            &to_store,
            &run,
            error_text.as_deref(),
            &sources.describe(),
            started,
        )
    })?;
    run.run_id = Some(run_id);
    run.stored = to_store.into_iter().map(|a| a.ip).collect();
    Ok(run)
}

fn apply_reply(answer: &mut Answer, reply: &ipapi::Reply) {
    use ipapi::non_empty;
    answer.source = "ip-api".to_string();
    answer.network = None;
    if reply.status != "success" {
        answer.status = Status::NotFound;
        answer.note = Some(format!(
            "ip-api: {}",
            reply.message.as_deref().unwrap_or("no data (no message)")
        ));
        return;
    }
    answer.country_code = non_empty(reply.country_code.clone());
    answer.country = non_empty(reply.country.clone());
    answer.region = non_empty(reply.region.clone());
    answer.city = non_empty(reply.city.clone());
    answer.latitude = reply.lat;
    answer.longitude = reply.lon;
    (answer.asn, answer.org) = reply.asn_and_org();
    answer.note = None;
    answer.status = if answer.has_data() {
        Status::Found
    } else {
        answer.note = Some("ip-api: success without data".to_string());
        Status::NotFound
    };
}

/// The distinct remote addresses of the store that need an answer, and the texts that are not
/// addresses at all.
fn pending_addresses(store: &Store, args: &GeoRequest, now: DateTime<Utc>) -> Result<(Vec<String>, Vec<String>)> {
    let cutoff = now.timestamp_micros() - i64::try_from(args.ttl.as_micros()).unwrap_or(i64::MAX);
    let sql = "WITH addresses AS (\
                 SELECT remote_addr AS ip FROM connection_lifetimes WHERE remote_addr IS NOT NULL \
                 UNION SELECT remote_addr FROM sockets WHERE remote_addr IS NOT NULL \
                 UNION SELECT orig_h FROM flows UNION SELECT resp_h FROM flows) \
               SELECT a.ip FROM addresses a LEFT JOIN geo g ON g.ip = a.ip \
               WHERE ?::BOOLEAN OR g.ip IS NULL OR g.looked_up_at < make_timestamp(?::BIGINT) ORDER BY a.ip";
    let mut stmt = store.conn().prepare(sql).map_err(Error::sql)?;
    let rows = stmt
        .query_map(duckdb::params![args.refresh, cutoff], |r| r.get::<_, String>(0))
        .map_err(Error::sql)?;
    let texts: Vec<String> = rows.collect::<std::result::Result<_, _>>().map_err(Error::sql)?;
    let (good, bad): (Vec<String>, Vec<String>) = texts.into_iter().partition(|t| t.trim().parse::<IpAddr>().is_ok());
    Ok((good, bad))
}

fn store_answers(
    store: &Store,
    command: &str,
    answers: &[Answer],
    run: &Run,
    error: Option<&str>,
    sources: &str,
    started: DateTime<Utc>,
) -> Result<i64> {
    let conn = store.conn();
    let run_id = crate::store::runs::next_run_id(conn)?;
    let finished = Utc::now().max(started);
    let counts = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    conn.execute(
        "INSERT INTO geo_runs VALUES (?, ?, make_timestamp(?::BIGINT), make_timestamp(?::BIGINT), ?, ?, ?, ?, ?, ?, ?)",
        duckdb::params![
            run_id,
            command,
            started.timestamp_micros(),
            finished.timestamp_micros(),
            sources,
            counts(run.addresses),
            counts(run.local),
            counts(run.found),
            counts(run.not_found),
            counts(run.failed),
            error
        ],
    )
    .map_err(Error::sql)?;
    for chunk in answers.chunks(1000) {
        let list = chunk.iter().map(|a| quote_literal(&a.ip)).collect::<Vec<_>>().join(",");
        conn.execute(&format!("DELETE FROM geo WHERE ip IN ({list})"), [])
            .map_err(Error::sql)?;
    }
    let mut insert = conn
        .prepare("INSERT INTO geo VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, make_timestamp(?::BIGINT), ?)")
        .map_err(Error::sql)?;
    for a in answers {
        insert
            .execute(duckdb::params![
                a.ip,
                a.scope.map(Scope::as_str).unwrap_or("unknown"),
                a.status.as_str(),
                a.country_code,
                a.country,
                a.region,
                a.city,
                a.latitude,
                a.longitude,
                a.asn,
                a.org,
                a.registered_country_code,
                a.network,
                a.source,
                a.note,
                started.timestamp_micros(),
                run_id
            ])
            .map_err(Error::sql)?;
    }
    Ok(run_id)
}

/// SQL showing the stored answers for `ips`, in the order given (what `geo lookup` prints).
pub fn answers_query(ips: &[String]) -> String {
    let list = ips.iter().map(|ip| quote_literal(ip)).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT ip, scope, status, country_code, country, region, city, asn, org, network, source, note, looked_up_at \
         FROM geo WHERE ip IN ({list}) ORDER BY list_position([{list}], ip)"
    )
}

/// The summary line of a run (stderr).
pub fn summary(run: &Run) -> String {
    let mut text = format!(
        "geo: {} addresses: {} local, {} found, {} not found",
        run.addresses, run.local, run.found, run.not_found
    );
    if run.failed > 0 {
        text.push_str(&format!(", {} failed (not stored)", run.failed));
    }
    if let Some(id) = run.run_id {
        text.push_str(&format!("; stored as run {id}"));
    } else {
        text.push_str("; nothing stored");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Location;
    use ipapi::HttpReply;
    use std::cell::RefCell;
    use std::time::Instant;

    /// Answers every address with country ZZ and records what it was sent.
    struct Recording {
        sent: RefCell<Vec<String>>,
    }

    impl Transport for Recording {
        fn post(&self, body: &str) -> std::result::Result<HttpReply, String> {
            let queries: Vec<String> = serde_json::from_str(body).unwrap();
            self.sent.borrow_mut().extend(queries.iter().cloned());
            let items: Vec<String> = queries
                .iter()
                .map(|q| format!(r#"{{"status":"success","countryCode":"ZZ","query":"{q}"}}"#))
                .collect();
            Ok(HttpReply {
                status: 200,
                x_rl: Some("10".into()),
                x_ttl: Some("60".into()),
                body: format!("[{}]", items.join(",")),
            })
        }
        fn url(&self) -> &str {
            "http://test/batch"
        }
    }

    struct NoClock;
    impl Clock for NoClock {
        fn now(&self) -> Instant {
            Instant::now()
        }
        fn sleep(&mut self, _: Duration) -> bool {
            panic!("no waiting expected");
        }
    }

    /// Resolves `texts` with a recording provider (no .mmdb): the store, what reached the
    /// provider, and the run.
    fn resolve_with_provider(texts: &[&str]) -> (Store, Vec<String>, Run) {
        let store = Store::open(&Location::Memory, false).unwrap();
        let transport = Recording {
            sent: RefCell::new(Vec::new()),
        };
        let mut clock = NoClock;
        let mut sources = Sources {
            mmdb: MmdbSet::open(&[]).unwrap(),
            notice: &mut |_| {},
            provider: Some((&transport as &dyn Transport, &mut clock as &mut dyn Clock)),
            max_wait: Duration::from_secs(60),
        };
        let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
        let run = resolve(&store, "geo", &texts, &mut sources, Utc::now()).unwrap();
        let sent = transport.sent.borrow().clone();
        (store, sent, run)
    }

    /// Issue 22: an endpoint that is neither http:// nor https:// is refused up front with what to
    /// do (https:// endpoints work: `ipapi`'s test against a loopback TLS server), and a key in
    /// the URL's query is never stored in `geo_runs.sources` nor shown in the message.
    #[test]
    fn other_schemes_are_refused_and_keys_never_stored() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let args = GeoRequest {
            provider: GeoProvider::IpApi,
            url: "ftp://pro.ip-api.com/batch?key=SECRET".to_string(),
            ..GeoRequest::offline(Vec::new())
        };
        let err = lookup(&store, &args, &["8.8.8.8".to_string()], Utc::now(), &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not an http:// or https:// endpoint") && !err.contains("SECRET"),
            "{err}"
        );
        assert_eq!(
            without_query("https://pro.ip-api.com/batch?key=SECRET"),
            "https://pro.ip-api.com/batch"
        );
        assert_eq!(without_query("http://127.0.0.1:9/batch#k"), "http://127.0.0.1:9/batch");
        assert_eq!(without_query("http://ip-api.com/batch"), "http://ip-api.com/batch");
        // An https:// endpoint that cannot be reached fails as a provider failure: no key stored.
        let args = GeoRequest {
            provider: GeoProvider::IpApi,
            url: "https://127.0.0.1:9/batch?key=SECRET".to_string(),
            timeout: std::time::Duration::from_secs(2),
            ..GeoRequest::offline(Vec::new())
        };
        let run = lookup(&store, &args, &["8.8.8.8".to_string()], Utc::now(), &mut |_| {}).unwrap();
        assert_eq!((run.failed, run.run_id), (1, None), "nothing answered, nothing stored");
        let error = run.provider_error.map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("127.0.0.1:9") && !error.contains("SECRET"), "{error}");
    }

    #[test]
    fn only_public_addresses_reach_the_provider_once_each() {
        let (store, sent, run) = resolve_with_provider(&[
            "10.0.0.1",
            "8.8.8.8",
            "::ffff:8.8.8.8",
            "fe80::1",
            "100.100.0.1",
            "2606:4700::1",
            "junk",
        ]);
        assert_eq!(sent, ["2606:4700::1", "8.8.8.8"]);
        assert_eq!((run.addresses, run.local, run.found, run.failed), (6, 3, 3, 0));
        assert_eq!(run.skipped, ["junk"]);
        let rows: String = store
            .conn()
            .query_row(
                "SELECT string_agg(ip || '=' || coalesce(country_code, status), ' ' ORDER BY ip) FROM geo",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            rows,
            "10.0.0.1=local 100.100.0.1=local 2606:4700::1=ZZ 8.8.8.8=ZZ ::ffff:8.8.8.8=ZZ fe80::1=local"
        );
    }

    /// A 6to4 address carries an IPv4 address (a private one names the site's), and Teredo and
    /// benchmarking addresses are special-purpose: none reaches the provider unless public.
    #[test]
    fn transition_addresses_reach_the_provider_only_when_public() {
        let (_, sent, run) = resolve_with_provider(&[
            "2002:c0a8:101::1",
            "2002:a00:1::5",
            "2001::1",
            "2001:2::9",
            "2002:808:808::1",
        ]);
        assert_eq!(sent, ["2002:808:808::1"]);
        assert_eq!((run.addresses, run.local), (5, 4));
    }

    #[test]
    fn without_a_source_public_addresses_store_nothing() {
        let store = Store::open(&Location::Memory, false).unwrap();
        let mut sources = Sources {
            mmdb: MmdbSet::open(&[]).unwrap(),
            notice: &mut |_| {},
            provider: None,
            max_wait: Duration::from_secs(60),
        };
        let texts = vec!["10.0.0.1".to_string(), "8.8.8.8".to_string()];
        let err = resolve(&store, "geo", &texts, &mut sources, Utc::now()).unwrap_err();
        assert!(err.to_string().contains("--mmdb PATH"), "{err}");
        let n: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM geo", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        // Local addresses alone need no source.
        let run = resolve(&store, "geo", &texts[..1], &mut sources, Utc::now()).unwrap();
        assert_eq!((run.local, run.run_id), (1, Some(1)));
    }
}
