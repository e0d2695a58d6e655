//! Offline geolocation from MaxMind DB (`.mmdb`) files: GeoIP2/GeoLite2 and DB-IP country,
//! city and ASN databases. Several files are merged field by field, so a country (or city)
//! database and an ASN database together give a full answer. Reads only the files it is given.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netlens_parsers::mmdb::{Place, Record};

use super::Answer;
use crate::error::{Error, Result};

/// One opened database.
struct Database {
    path: PathBuf,
    /// File name, as stored in `geo.source`.
    name: String,
    database: netlens_parsers::mmdb::Database,
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
            let found = db.database.lookup(addr).map_err(|reason| Error::GeoDatabase {
                path: db.path.clone(),
                reason,
            })?;
            let Some(found) = found else {
                continue;
            };
            merge(answer, found.record);
            if answer.network.is_none() {
                answer.network = found.network;
            }
            answered_by.push(db.name.clone());
        }
        if !answered_by.is_empty() {
            answer.source = answered_by.join(",");
        }
        Ok(answer.has_data())
    }
}

/// The largest .mmdb file read: several times the largest MaxMind and DB-IP databases (a few
/// hundred MiB); a larger file, or one that never ends (a device, a pipe), is refused.
const MAX_FILE: u64 = 2 << 30;

/// The whole of a regular file of at most `max` bytes (also if it grows while read).
fn read_within(path: &Path, max: u64) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file (a device, a pipe or a socket)".to_string());
    }
    let too_large = || format!("it is larger than {} GiB, more than any .mmdb database", max >> 30);
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

fn open_one(path: &Path, notes: &mut Vec<String>) -> Result<Database> {
    let bad = |reason: String| Error::GeoDatabase {
        path: path.to_path_buf(),
        reason,
    };
    if path.is_dir() {
        return Err(bad("it is a directory".to_string()));
    }
    let bytes = read_within(path, MAX_FILE).map_err(bad)?;
    // The metadata sits at the end of the file, so a text file or a truncated database fails
    // here; damage inside the tree fails at its first lookup, still before anything is stored.
    let database = netlens_parsers::mmdb::Database::open(bytes).map_err(bad)?;
    if !database.is_known_kind() {
        notes.push(format!(
            "note: {} is a '{}' database, not a known country, city or ASN kind; using the country, city and ASN fields it has",
            path.display(),
            database.kind()
        ));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(Database {
        path: path.to_path_buf(),
        name,
        database,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22: what is not a regular file (a device, which never ends) or is larger than the
    /// bound is refused before it is read whole.
    #[test]
    fn endless_and_oversized_files_are_refused() {
        assert!(read_within(Path::new("/dev/zero"), MAX_FILE)
            .unwrap_err()
            .contains("not a regular file"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.mmdb");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        assert!(read_within(&path, 1024).unwrap_err().contains("larger than"));
        assert_eq!(read_within(&path, 4096).unwrap().len(), 4096);
    }

    /// Issue 22 (fuzzing): damaged .mmdb files (MaxMind's test databases from the shared
    /// data). Opening one fails with a message naming the file, or its lookups answer or fail
    /// with one: none panics.
    #[test]
    fn damaged_databases_never_panic() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/maxmind-test-mmdb");
        let seeds: Vec<Vec<u8>> = ["GeoLite2-Country-Test.mmdb", "GeoLite2-ASN-Test.mmdb"]
            .iter()
            .filter_map(|name| std::fs::read(dir.join(name)).ok())
            .collect();
        if seeds.len() < 2 {
            if cfg!(ci) {
                panic!("prerequisite missing in CI: {}", dir.display());
            }
            eprintln!("IGNORED (prerequisite missing): {}", dir.display());
            return;
        }
        let addrs: Vec<IpAddr> = [
            "2.125.160.216",
            "81.2.69.160",
            "1.128.0.0",
            "2001:218::",
            "89.160.20.128",
            "::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let seeds: Vec<&[u8]> = seeds.iter().map(Vec::as_slice).collect();
        let (mut opened, mut found) = (0, 0);
        for (s, case, damaged) in crate::mutate::cases(&seeds, 400) {
            let outcome = std::panic::catch_unwind(|| {
                let Ok(database) = netlens_parsers::mmdb::Database::open(damaged.clone()) else {
                    return (0, 0);
                };
                let set = MmdbSet {
                    databases: vec![Database {
                        path: PathBuf::from("damaged.mmdb"),
                        name: "damaged.mmdb".to_string(),
                        database,
                    }],
                    notes: Vec::new(),
                };
                let mut found = 0;
                for addr in &addrs {
                    if let Ok(true) = set.lookup(*addr, &mut Answer::default()) {
                        found += 1;
                    }
                }
                (1, found)
            });
            let (o, f) = outcome.unwrap_or_else(|_| panic!("seed {s}, case {case}: a lookup panicked"));
            opened += o;
            found += f;
        }
        // The damage leaves most files readable: the cases reach the lookups.
        assert!(opened > 400 && found > 400, "{opened} opened, {found} answers");
    }
}
