//! Geolocation: MaxMind test databases checked against their source JSON, a local stand-in for
//! ip-api on loopback (normal, down, slow, rate-limiting, malformed), local ranges never sent,
//! bad .mmdb files, the cache and the views.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netlens::netaddr::{scope, Scope};
use predicates::prelude::*;

use crate::Scratch;

/// MaxMind's test databases, when this checkout has them beside it.
pub(crate) fn mmdb_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/maxmind-test-mmdb");
    let present = dir.join("GeoLite2-Country-Test.mmdb").exists() && dir.join("GeoLite2-ASN-Test.mmdb").exists();
    crate::prerequisite(
        present,
        &format!("{} (the shared data beside this checkout)", dir.display()),
    )
    .then_some(dir)
}

/// A netlens command on the scratch database with no provider settings from the environment.
fn geo_cmd(s: &Scratch) -> assert_cmd::Command {
    let mut cmd = s.cmd();
    for var in [
        "NETLENS_GEO_PROVIDER",
        "NETLENS_GEO_URL",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(["--format", "csv"]);
    cmd
}

/// Adds one flow per (orig, resp) pair, so `geo` has addresses to fill.
pub(crate) fn add_flows(s: &Scratch, pairs: &[(&str, &str)]) {
    let values: Vec<String> = pairs
        .iter()
        .enumerate()
        .map(|(i, (o, r))| {
            format!("(1, TIMESTAMP '2026-01-01 00:00:00', 'C{i}', '{o}', 40000, '{r}', 443, 'tcp', 'test.pcap')")
        })
        .collect();
    s.query(&format!(
        "INSERT INTO flows (import_id, ts, uid, orig_h, orig_p, resp_h, resp_p, proto, source_file) VALUES {}",
        values.join(", ")
    ));
}

// ---------------------------------------------------------------------------------------------
// A stand-in for ip-api's batch endpoint.

#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers every address; 6.6.6.6 gets ip-api's "reserved range" failure.
    Normal,
    /// Waits this long before answering.
    Slow(Duration),
    /// HTTP 429 with this X-Ttl for the first `n` requests, then normal.
    TooMany { ttl: u64, n: usize },
    /// HTTP 200 with a body that is not the JSON asked for.
    Malformed,
    /// Answers the first request, then HTTP 429 with an hour's X-Ttl.
    OkThenTooMany,
    /// HTTP 200 with a body of this many bytes.
    Huge(usize),
    /// HTTP 307 to the same path on this port.
    Redirect(u16),
}

struct FakeApi {
    url: String,
    /// The addresses of every request received.
    received: Arc<Mutex<Vec<Vec<String>>>>,
}

impl FakeApi {
    fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            let mut served = 0usize;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                serve(stream, behaviour, served, &log);
                served += 1;
            }
        });
        FakeApi {
            url: format!("http://127.0.0.1:{port}/batch"),
            received,
        }
    }

    fn all_received(&self) -> Vec<String> {
        self.received.lock().unwrap().iter().flatten().cloned().collect()
    }
}

fn serve(stream: TcpStream, behaviour: Behaviour, served: usize, log: &Mutex<Vec<Vec<String>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    assert!(request_line.starts_with("POST /batch?fields="), "{request_line}");
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let queries: Vec<String> = serde_json::from_slice(&body).unwrap();
    assert!(queries.len() <= 100, "batch of {}", queries.len());
    log.lock().unwrap().push(queries.clone());

    let answer = |q: &String| {
        if q == "6.6.6.6" {
            format!(r#"{{"status":"fail","message":"reserved range","query":"{q}"}}"#)
        } else {
            let cc = if q.contains(':') { "JP" } else { "ZZ" };
            format!(
                r#"{{"status":"success","country":"Testland","countryCode":"{cc}","regionName":"North","city":"Testville","lat":10.5,"lon":20.25,"as":"AS64500 Test Org, Inc.","query":"{q}"}}"#
            )
        }
    };
    let normal = || {
        let items: Vec<String> = queries.iter().map(answer).collect();
        (200, format!("[{}]", items.join(",")), 44u64, 60u64)
    };
    let (status, text, rl, ttl) = match behaviour {
        Behaviour::Normal => normal(),
        Behaviour::Slow(d) => {
            std::thread::sleep(d);
            normal()
        }
        Behaviour::TooMany { ttl, n } if served < n => (429, String::new(), 0, ttl),
        Behaviour::TooMany { .. } => normal(),
        Behaviour::Malformed => (200, r#"[{"status":"success","query":"#.to_string(), 44, 60),
        Behaviour::OkThenTooMany if served == 0 => normal(),
        Behaviour::OkThenTooMany => (429, String::new(), 0, 3600),
        Behaviour::Huge(n) => (200, " ".repeat(n), 44, 60),
        Behaviour::Redirect(_) => (307, String::new(), 44, 60),
    };
    let reason = match status {
        200 => "OK",
        307 => "Temporary Redirect",
        _ => "Too Many Requests",
    };
    let location = match behaviour {
        Behaviour::Redirect(port) => format!("Location: http://127.0.0.1:{port}/batch\r\n"),
        _ => String::new(),
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{location}X-Rl: {rl}\r\nX-Ttl: {ttl}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
}

/// A URL on loopback where nothing listens.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/batch")
}

// ---------------------------------------------------------------------------------------------
// Offline databases.

/// Networks of a MaxMind source JSON file: (first address, prefix length, record).
fn networks(path: &Path) -> Vec<(IpAddr, u8, serde_json::Value)> {
    let list: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    list.into_iter()
        .flat_map(|m| m.into_iter())
        .map(|(net, record)| {
            let (addr, len) = net.split_once('/').unwrap();
            (addr.parse().unwrap(), len.parse().unwrap(), record)
        })
        .collect()
}

fn bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u32::from(a) as u128, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn last_address(addr: IpAddr, len: u8) -> IpAddr {
    let (value, width) = bits(addr);
    let host_bits = width - len;
    let mask = if host_bits == 0 { 0 } else { (1u128 << host_bits) - 1 };
    match addr {
        IpAddr::V4(_) => IpAddr::V4(((value | mask) as u32).into()),
        IpAddr::V6(_) => IpAddr::V6((value | mask).into()),
    }
}

/// The record of the most specific network holding `ip`.
fn expected(nets: &[(IpAddr, u8, serde_json::Value)], ip: IpAddr) -> Option<&serde_json::Value> {
    let (value, width) = bits(ip);
    nets.iter()
        .filter(|(net, len, _)| {
            let (n, w) = bits(*net);
            w == width && (*len == 0 || (value >> (width - len)) == (n >> (width - len)))
        })
        .max_by_key(|(_, len, _)| *len)
        .map(|(_, _, r)| r)
}

#[test]
fn mmdb_answers_match_maxmind_source_data() {
    let Some(dir) = mmdb_dir() else { return };
    let country = networks(&dir.join("GeoLite2-Country-Test.json"));
    let asn = networks(&dir.join("GeoLite2-ASN-Test.json"));
    // The first and last address of every network of both databases, public ones only (the
    // test data has documentation and reserved ranges, which netlens never looks up).
    let mut ips: Vec<IpAddr> = Vec::new();
    for (net, len, _) in country.iter().chain(asn.iter()) {
        for ip in [*net, last_address(*net, *len)] {
            if scope(ip) == Scope::Public && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    assert!(ips.len() > 1000, "{} addresses", ips.len());
    let s = Scratch::new();
    let texts: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    geo_cmd(&s)
        .args(["geo", "lookup", "--quiet", "--mmdb"])
        .arg(dir.join("GeoLite2-Country-Test.mmdb"))
        .arg("--mmdb")
        .arg(dir.join("GeoLite2-ASN-Test.mmdb"))
        .args(&texts)
        .assert()
        .success();
    let rows = s.query(
        "SELECT ip, coalesce(country_code, ''), coalesce(country, ''), coalesce(registered_country_code, ''), \
         coalesce(CAST(asn AS VARCHAR), ''), coalesce(org, ''), status FROM geo",
    );
    let stored: std::collections::HashMap<String, Vec<String>> = rows
        .lines()
        .map(|l| {
            let mut rdr = csv_fields(l);
            let ip = rdr.remove(0);
            (ip, rdr)
        })
        .collect();
    assert_eq!(stored.len(), ips.len());
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).unwrap_or("").to_string();
    let mut with_country = 0;
    let mut with_asn = 0;
    for ip in &ips {
        let got = &stored[&ip.to_string()];
        let c = expected(&country, *ip);
        let a = expected(&asn, *ip);
        let want_cc = text(c.and_then(|r| r.pointer("/country/iso_code")));
        let want_name = text(c.and_then(|r| r.pointer("/country/names/en")));
        let want_reg = text(c.and_then(|r| r.pointer("/registered_country/iso_code")));
        let want_asn = a
            .and_then(|r| r.get("autonomous_system_number"))
            .map(|n| n.to_string())
            .unwrap_or_default();
        let want_org = text(a.and_then(|r| r.get("autonomous_system_organization")));
        let want = [want_cc.clone(), want_name, want_reg, want_asn.clone(), want_org];
        assert_eq!(got[..5], want, "{ip}");
        // found means some location or network owner is known, not merely a record.
        let want_status = if want.iter().any(|w| !w.is_empty()) {
            "found"
        } else {
            "not_found"
        };
        assert_eq!(got[5], want_status, "{ip}");
        with_country += usize::from(!want_cc.is_empty());
        with_asn += usize::from(!want_asn.is_empty());
    }
    eprintln!(
        "checked {} addresses against the source JSON: {with_country} with a country, {with_asn} with an ASN",
        ips.len()
    );
    assert!(with_country > 100 && with_asn > 500, "{with_country} {with_asn}");
}

/// Splits one CSV line of our own output (fields may be quoted, with doubled quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[test]
fn documented_examples_and_printed_rows() {
    let Some(dir) = mmdb_dir() else { return };
    let s = Scratch::new();
    let out = geo_cmd(&s)
        .args(["geo", "lookup", "--mmdb"])
        .arg(dir.join("GeoLite2-Country-Test.mmdb"))
        .arg("--mmdb")
        .arg(dir.join("GeoLite2-ASN-Test.mmdb"))
        .args([
            "2.125.160.216",
            "81.2.69.160",
            "2001:218::1",
            "1.128.0.0",
            "12.81.92.1",
            "10.0.0.1",
            "::1",
        ])
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ip,scope,status,country_code,country"), "{stdout}");
    assert_eq!(lines.len(), 8, "{stdout}");
    assert!(
        lines[1].starts_with("2.125.160.216,public,found,GB,United Kingdom,"),
        "{stdout}"
    );
    assert!(lines[2].starts_with("81.2.69.160,public,found,GB,"), "{stdout}");
    assert!(lines[3].starts_with("2001:218::1,public,found,JP,Japan,"), "{stdout}");
    assert!(
        lines[4].contains(",1221,Telstra Pty Ltd,1.128.0.0/11,GeoLite2-ASN-Test.mmdb,"),
        "{stdout}"
    );
    assert!(lines[5].contains(",7018,AT&T Services,"), "{stdout}");
    assert!(lines[6].starts_with("10.0.0.1,private,local,"), "{stdout}");
    assert!(lines[7].starts_with("::1,loopback,local,"), "{stdout}");
    assert!(
        stderr.contains("7 addresses: 2 local, 5 found, 0 not found"),
        "{stderr}"
    );
    assert_eq!(
        s.query("SELECT command, addresses, local, found, failed FROM geo_runs"),
        "geo lookup,7,2,5,0"
    );
}

#[test]
fn fill_uses_every_source_table_and_the_cache() {
    let Some(dir) = mmdb_dir() else { return };
    let s = Scratch::new();
    s.replay_fixture();
    add_flows(
        &s,
        &[
            ("192.168.1.10", "81.2.69.160"),
            ("192.168.1.10", "2001:218::1"),
            ("10.9.9.9", "9.9.9.9"),
        ],
    );
    let country = dir.join("GeoLite2-Country-Test.mmdb");
    let remote_addrs: i64 = s
        .query(
            "SELECT count(*) FROM (SELECT remote_addr FROM connection_lifetimes WHERE remote_addr IS NOT NULL \
             UNION SELECT remote_addr FROM sockets WHERE remote_addr IS NOT NULL \
             UNION SELECT orig_h FROM flows UNION SELECT resp_h FROM flows)",
        )
        .parse()
        .unwrap();
    geo_cmd(&s)
        .args(["geo", "--mmdb"])
        .arg(&country)
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("geo: {remote_addrs} addresses")));
    assert_eq!(
        s.query("SELECT count(*) FROM geo").parse::<i64>().unwrap(),
        remote_addrs
    );
    assert_eq!(
        s.query("SELECT status, coalesce(note, '') FROM geo WHERE ip = '9.9.9.9'"),
        "not_found,not in the .mmdb databases"
    );
    assert_eq!(
        s.query("SELECT resp_country_code, orig_scope FROM flows_geo ORDER BY uid LIMIT 2"),
        "GB,private\nJP,private"
    );
    assert_eq!(
        s.query("SELECT count(*) FROM connections_geo WHERE remote_addr IS NOT NULL AND geo_status IS NULL"),
        "0"
    );
    // Everything is cached: a second run has nothing to do and stores no run.
    geo_cmd(&s)
        .args(["geo", "--mmdb"])
        .arg(&country)
        .assert()
        .success()
        .stderr(predicate::str::contains("geo: 0 addresses").and(predicate::str::contains("nothing stored")));
    // An answer older than the TTL is looked up again; so is everything with --refresh.
    s.query("UPDATE geo SET looked_up_at = TIMESTAMP '2000-01-01', country_code = 'XX' WHERE ip = '81.2.69.160'");
    geo_cmd(&s)
        .args(["geo", "--ttl", "1d", "--mmdb"])
        .arg(&country)
        .assert()
        .success()
        .stderr(predicate::str::contains("geo: 1 addresses: 0 local, 1 found"));
    assert_eq!(s.query("SELECT country_code FROM geo WHERE ip = '81.2.69.160'"), "GB");
    geo_cmd(&s)
        .args(["geo", "--refresh", "--mmdb"])
        .arg(&country)
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("geo: {remote_addrs} addresses")));
    assert_eq!(
        s.query("SELECT count(*), count(DISTINCT ip) FROM geo"),
        format!("{remote_addrs},{remote_addrs}")
    );
    assert_eq!(s.query("SELECT max(run_id) FROM geo_runs"), "3");
}

#[test]
fn unusable_mmdb_files_are_refused_and_nothing_is_stored() {
    let s = Scratch::new();
    let text = s.path("notes.mmdb");
    std::fs::write(&text, "this is not a database\n").unwrap();
    let mut cases: Vec<(PathBuf, &str)> = vec![
        (text, "not a usable MaxMind DB"),
        (s.path("missing.mmdb"), "No such file"),
        (s.dir.path().to_path_buf(), "directory"),
    ];
    if let Some(dir) = mmdb_dir() {
        let whole = std::fs::read(dir.join("GeoLite2-Country-Test.mmdb")).unwrap();
        let cut = s.path("truncated.mmdb");
        std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
        cases.push((cut, "not a usable MaxMind DB"));
    }
    for (path, message) in cases {
        geo_cmd(&s)
            .args(["geo", "lookup", "10.0.0.1", "8.8.8.8", "--mmdb"])
            .arg(&path)
            .assert()
            .failure()
            .stderr(predicate::str::contains(message).and(predicate::str::contains("nothing was stored")));
    }
    assert_eq!(
        s.query("SELECT (SELECT count(*) FROM geo) + (SELECT count(*) FROM geo_runs)"),
        "0"
    );
}

#[test]
fn public_addresses_need_a_source_local_ones_do_not() {
    let s = Scratch::new();
    geo_cmd(&s)
        .args(["geo", "lookup", "10.0.0.1", "8.8.8.8"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--mmdb PATH").and(predicate::str::contains("nothing was stored")));
    assert_eq!(s.query("SELECT count(*) FROM geo"), "0");
    geo_cmd(&s)
        .args([
            "geo",
            "lookup",
            "fe80::1",
            "100.64.1.1",
            "224.0.0.251",
            "192.0.2.1",
            "fd00::5",
        ])
        .assert()
        .success();
    assert_eq!(
        s.query("SELECT string_agg(scope, ' ' ORDER BY ip) FROM geo WHERE status = 'local' AND source = 'local'"),
        "cgnat documentation multicast private link_local"
    );
    geo_cmd(&s)
        .args(["--read-only", "geo", "lookup", "127.0.0.1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--read-only forbids"));
    geo_cmd(&s)
        .args(["geo", "lookup", "not-an-ip"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("'not-an-ip' is not an IPv4 or IPv6 address"));
}

// ---------------------------------------------------------------------------------------------
// The online provider, against the loopback stand-in.

#[test]
fn provider_answers_public_addresses_and_never_sees_local_ones() {
    let api = FakeApi::start(Behaviour::Normal);
    let s = Scratch::new();
    let local = [
        "10.1.2.3",
        "172.16.5.4",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.3.3",
        "100.64.0.9",
        "224.0.0.251",
        "255.255.255.255",
        "192.0.2.55",
        "198.51.100.7",
        "203.0.113.9",
        "::1",
        "fe80::1",
        "fd12:3456::1",
        "ff02::fb",
        "2001:db8::1",
        "::ffff:192.168.0.1",
        "0.0.0.0",
    ];
    let public = [
        "8.8.8.8",
        "1.1.1.1",
        "2001:4860:4860::8888",
        "6.6.6.6",
        "::ffff:9.9.9.9",
    ];
    let pairs: Vec<(&str, &str)> = local.iter().zip(public.iter().cycle()).map(|(l, p)| (*l, *p)).collect();
    add_flows(&s, &pairs);
    geo_cmd(&s)
        .args(["geo", "--provider", "ip-api", "--url", &api.url])
        .assert()
        .success()
        .stderr(predicate::str::contains("23 addresses: 18 local, 4 found, 1 not found"));
    let mut sent = api.all_received();
    sent.sort();
    // The IPv4-mapped address goes out as plain IPv4; nothing local goes out at all.
    assert_eq!(
        sent,
        ["1.1.1.1", "2001:4860:4860::8888", "6.6.6.6", "8.8.8.8", "9.9.9.9"]
    );
    assert_eq!(
        s.query(
            "SELECT country_code, region, city, latitude, longitude, asn, org, source FROM geo WHERE ip = '8.8.8.8'"
        ),
        "ZZ,North,Testville,10.5,20.25,64500,\"Test Org, Inc.\",ip-api"
    );
    assert_eq!(
        s.query("SELECT country_code FROM geo WHERE ip = '::ffff:9.9.9.9'"),
        "ZZ"
    );
    assert_eq!(
        s.query("SELECT country_code FROM geo WHERE ip = '2001:4860:4860::8888'"),
        "JP"
    );
    assert_eq!(
        s.query("SELECT status, note FROM geo WHERE ip = '6.6.6.6'"),
        "not_found,ip-api: reserved range"
    );
    assert_eq!(s.query("SELECT count(*) FROM geo WHERE status = 'local'"), "18");

    // The environment setting turns the provider on as well; lookups always ask afresh.
    let before = api.received.lock().unwrap().len();
    geo_cmd(&s)
        .env("NETLENS_GEO_PROVIDER", "ip-api")
        .env("NETLENS_GEO_URL", &api.url)
        .args(["geo", "lookup", "8.8.8.8", "10.0.0.1"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "8.8.8.8,public,found,ZZ,Testland,North,Testville,64500",
        ));
    let received = api.received.lock().unwrap();
    assert_eq!(received.len(), before + 1);
    assert_eq!(received.last().unwrap(), &["8.8.8.8"]);
}

#[test]
fn many_addresses_go_in_batches_of_100() {
    let api = FakeApi::start(Behaviour::Normal);
    let s = Scratch::new();
    let ips: Vec<String> = (0..250).map(|i| format!("8.8.{}.{}", i / 200, i % 200 + 1)).collect();
    geo_cmd(&s)
        .args(["geo", "lookup", "--quiet", "--provider", "ip-api", "--url", &api.url])
        .args(&ips)
        .assert()
        .success();
    let sizes: Vec<usize> = api.received.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(s.query("SELECT count(*) FROM geo WHERE status = 'found'"), "250");
}

/// Runs `geo lookup` of one local and two public addresses against `url`; it must fail with
/// `message`, store the local answer and nothing for the public ones.
fn provider_fails(url: &str, extra: &[&str], message: &str) -> Duration {
    let s = Scratch::new();
    let started = Instant::now();
    geo_cmd(&s)
        .args(["geo", "lookup", "--provider", "ip-api", "--url", url])
        .args(extra)
        .args(["10.0.0.1", "8.8.8.8", "2001:4860::1"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains(message)
                .and(predicate::str::contains("failed for 2 of 2 addresses"))
                .and(predicate::str::contains("nothing was stored for the 2 others")),
        );
    let elapsed = started.elapsed();
    assert_eq!(s.query("SELECT string_agg(ip, ' ') FROM geo"), "10.0.0.1");
    assert_eq!(s.query("SELECT failed, error IS NOT NULL FROM geo_runs"), "2,true");
    elapsed
}

#[test]
fn provider_down() {
    provider_fails(&dead_url(), &[], "cannot connect");
}

#[test]
fn provider_slow() {
    let api = FakeApi::start(Behaviour::Slow(Duration::from_secs(5)));
    let elapsed = provider_fails(&api.url, &["--timeout", "1s"], "no answer within --timeout 1.0 s");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[test]
fn provider_malformed() {
    let api = FakeApi::start(Behaviour::Malformed);
    provider_fails(&api.url, &[], "malformed answer");
}

#[test]
fn provider_reply_too_large_is_not_read() {
    // Regression (issue 22): the reply was read whole, however large (here 8 MiB of spaces).
    let api = FakeApi::start(Behaviour::Huge(8 << 20));
    provider_fails(&api.url, &[], "larger than 1024 KiB");
}

#[test]
fn provider_redirect_is_not_followed() {
    // Regression (issue 22): a redirect over plain HTTP sent the addresses wherever it pointed.
    let elsewhere = FakeApi::start(Behaviour::Normal);
    let port: u16 = elsewhere
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let api = FakeApi::start(Behaviour::Redirect(port));
    provider_fails(&api.url, &[], "HTTP 307");
    assert!(elsewhere.all_received().is_empty());
}

#[test]
fn provider_rate_limited_longer_than_max_wait() {
    let api = FakeApi::start(Behaviour::TooMany {
        ttl: 3600,
        n: usize::MAX,
    });
    let elapsed = provider_fails(&api.url, &[], "resets in 3601 s, longer than --max-wait 60 s");
    assert!(elapsed < Duration::from_secs(5), "did not wait: {elapsed:?}");
    assert_eq!(api.received.lock().unwrap().len(), 1);
}

#[test]
fn provider_rate_limit_is_waited_out() {
    let api = FakeApi::start(Behaviour::TooMany { ttl: 1, n: 1 });
    let s = Scratch::new();
    let started = Instant::now();
    geo_cmd(&s)
        .args(["geo", "lookup", "--provider", "ip-api", "--url", &api.url, "8.8.8.8"])
        .assert()
        .success();
    // X-Ttl 1 plus a second of margin.
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(api.received.lock().unwrap().len(), 2);
    assert_eq!(s.query("SELECT status FROM geo"), "found");
}

/// Waits until `child` (a running geo lookup) has sent the provider its first request.
fn wait_for_the_first_request(api: &FakeApi, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.received.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no request reached the provider");
        assert!(
            child.try_wait().unwrap().is_none(),
            "geo ended before it was asked anything"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_ends_a_rate_limit_wait_and_stores_nothing() {
    // Regression (issue 22): the wait for the provider's reset ignored Ctrl-C (here 61 s).
    let api = FakeApi::start(Behaviour::TooMany { ttl: 60, n: usize::MAX });
    let s = Scratch::new();
    s.query("SELECT 1");
    let mut child = s.spawn(&[
        "geo",
        "lookup",
        "--provider",
        "ip-api",
        "--url",
        &api.url,
        "--max-wait",
        "120s",
        "8.8.8.8",
    ]);
    wait_for_the_first_request(&api, &mut child);
    // The reply of the 429 is on its way; let netlens begin its wait.
    std::thread::sleep(Duration::from_millis(500));
    crate::ctrl_c_ends_it_with_130(child);
    assert_eq!(s.query("SELECT count(*) FROM geo"), "0");
    assert_eq!(s.query("SELECT count(*) FROM geo_runs"), "0");
}

#[test]
fn partial_success_stores_what_was_answered() {
    // The first batch is answered, then the limit runs out for an hour.
    let api = FakeApi::start(Behaviour::OkThenTooMany);
    let s = Scratch::new();
    let ips: Vec<String> = (1..=150).map(|i| format!("8.8.4.{i}")).collect();
    geo_cmd(&s)
        .args(["geo", "lookup", "--provider", "ip-api", "--url", &api.url])
        .args(&ips)
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("failed for 50 of 150 addresses")
                .and(predicate::str::contains("100 answered addresses were stored"))
                .and(predicate::str::contains("rate limit")),
        );
    assert_eq!(api.received.lock().unwrap().len(), 2);
    assert_eq!(s.query("SELECT count(*) FROM geo WHERE status = 'found'"), "100");
    assert_eq!(s.query("SELECT count(*) FROM geo"), "100");
    assert_eq!(s.query("SELECT found, failed FROM geo_runs"), "100,50");
}

#[test]
fn geo_works_as_a_shell_command() {
    let s = Scratch::new();
    geo_cmd(&s)
        .args(["-c", ".geo lookup 127.0.0.1 fd00::1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("127.0.0.1,loopback,local").and(predicate::str::contains("fd00::1,private")));
    geo_cmd(&s)
        .args(["-c", ".help geo"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--provider").and(predicate::str::contains("ip-api")));
}

#[test]
fn ctrl_c_ends_a_request_in_flight_and_stores_nothing() {
    // Regression (issue 22): a request the provider never answers held Ctrl-C off for up to
    // --timeout (here 60 s, three times what ctrl_c_ends_it_with_130 waits).
    let api = FakeApi::start(Behaviour::Slow(Duration::from_secs(600)));
    let s = Scratch::new();
    s.query("SELECT 1");
    let mut child = s.spawn(&[
        "geo",
        "lookup",
        "--provider",
        "ip-api",
        "--url",
        &api.url,
        "--timeout",
        "60s",
        "8.8.8.8",
    ]);
    wait_for_the_first_request(&api, &mut child);
    let pressed = Instant::now();
    crate::ctrl_c_ends_it_with_130(child);
    assert!(pressed.elapsed() < Duration::from_secs(5), "{:?}", pressed.elapsed());
    assert_eq!(s.query("SELECT count(*) FROM geo"), "0");
    assert_eq!(s.query("SELECT count(*) FROM geo_runs"), "0");
}
