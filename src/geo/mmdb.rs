//! Offline geolocation from MaxMind DB (`.mmdb`) files: GeoIP2/GeoLite2 and DB-IP country,
//! city and ASN databases. Several files are merged field by field, so a country (or city)
//! database and an ASN database together give a full answer. Reads only the files it is given.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use maxminddb::Reader;
use serde::Deserialize;

use super::Answer;
use crate::error::{Error, Result};

/// The fields netlens reads from any of the database kinds; whatever a kind lacks stays `None`.
/// Field names are those of the GeoIP2 schema, which DB-IP's .mmdb files share.
#[derive(Debug, Default, Deserialize)]
struct Record {
    country: Option<Place>,
    registered_country: Option<Place>,
    city: Option<Place>,
    #[serde(default)]
    subdivisions: Vec<Place>,
    location: Option<Location>,
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Place {
    iso_code: Option<String>,
    #[serde(default)]
    names: BTreeMap<String, String>,
}

impl Place {
    fn english_name(&self) -> Option<String> {
        self.names.get("en").cloned()
    }
}

#[derive(Debug, Default, Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

/// One opened database.
struct Database {
    path: PathBuf,
    /// File name, as stored in `geo.source`.
    name: String,
    reader: Reader<Vec<u8>>,
}

/// The `--mmdb` files, opened and checked up front so a bad file fails before anything is
/// stored.
pub struct MmdbSet {
    databases: Vec<Database>,
    /// Notes on the files opened (one of an unknown kind), for the command layer to show.
    notes: Vec<String>,
}

impl MmdbSet {
    /// Opens every file; the first unusable one is an error naming it.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut notes = Vec::new();
        let databases = paths
            .iter()
            .map(|p| open_one(p, &mut notes))
            .collect::<Result<Vec<_>>>()?;
        Ok(MmdbSet { databases, notes })
    }

    /// Notes on the files opened: `note: ...` lines to show the user.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn is_empty(&self) -> bool {
        self.databases.is_empty()
    }

    /// File names, for `geo_runs.sources`.
    pub fn names(&self) -> Vec<String> {
        self.databases.iter().map(|d| d.name.clone()).collect()
    }

    /// Fills `answer` from every database that has data for `addr`, the first database to give
    /// a field winning. Returns true when any database had data.
    pub fn lookup(&self, addr: IpAddr, answer: &mut Answer) -> Result<bool> {
        let mut answered_by = Vec::new();
        for db in &self.databases {
            // An IPv4-only database has no answer for IPv6 (the reader would call it an error).
            if addr.is_ipv6() && db.reader.metadata().ip_version == 4 {
                continue;
            }
            let bad = |e: maxminddb::MaxMindDbError| Error::GeoDatabase {
                path: db.path.clone(),
                reason: format!("looking up {addr}: {e}"),
            };
            let result = db.reader.lookup(addr).map_err(bad)?;
            let Some(record) = result.decode::<Record>().map_err(bad)? else {
                continue;
            };
            merge(answer, record);
            if answer.network.is_none() {
                answer.network = result.network().ok().map(|n| n.to_string());
            }
            answered_by.push(db.name.clone());
        }
        if !answered_by.is_empty() {
            answer.source = answered_by.join(",");
        }
        Ok(answer.has_data())
    }
}

fn open_one(path: &Path, notes: &mut Vec<String>) -> Result<Database> {
    let bad = |reason: String| Error::GeoDatabase {
        path: path.to_path_buf(),
        reason,
    };
    if path.is_dir() {
        return Err(bad("it is a directory".to_string()));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    // The metadata sits at the end of the file, so a text file or a truncated database fails
    // here; damage inside the tree fails at its first lookup, still before anything is stored.
    let reader = Reader::from_source(bytes).map_err(|e| bad(e.to_string()))?;
    let kind = &reader.metadata().database_type;
    let known = ["Country", "City", "ASN", "ISP", "Enterprise", "dbip", "DBIP", "ipinfo"];
    if !known.iter().any(|k| kind.contains(k)) {
        notes.push(format!(
            "note: {} is a '{kind}' database, not a known country, city or ASN kind; using the country, city and ASN fields it has",
            path.display()
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(Database {
        path: path.to_path_buf(),
        name,
        reader,
    })
}

/// Copies the fields `answer` still lacks from `record`.
fn merge(answer: &mut Answer, record: Record) {
    fn fill<T>(slot: &mut Option<T>, value: Option<T>) {
        if slot.is_none() {
            *slot = value;
        }
    }
    if let Some(country) = &record.country {
        fill(&mut answer.country_code, country.iso_code.clone());
        fill(&mut answer.country, country.english_name());
    }
    if let Some(registered) = &record.registered_country {
        fill(&mut answer.registered_country_code, registered.iso_code.clone());
    }
    fill(
        &mut answer.region,
        record.subdivisions.first().and_then(Place::english_name),
    );
    fill(&mut answer.city, record.city.as_ref().and_then(Place::english_name));
    if let Some(location) = record.location {
        if answer.latitude.is_none() && answer.longitude.is_none() {
            answer.latitude = location.latitude;
            answer.longitude = location.longitude;
        }
    }
    fill(&mut answer.asn, record.autonomous_system_number);
    fill(&mut answer.org, record.autonomous_system_organization);
}
