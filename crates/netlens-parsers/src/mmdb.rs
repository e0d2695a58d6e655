//! Lookups in MaxMind DB (`.mmdb`) files held in memory: GeoIP2/GeoLite2 and DB-IP country,
//! city and ASN databases. A file is checked when opened (its metadata sits at its end, so a
//! text file or a truncated database fails there); damage inside its search tree or data
//! section fails at the lookup that meets it, with the reason. The netlens crate's `geo::mmdb`
//! reads the files (bounded), merges several databases' answers and names the files in errors.

use std::collections::BTreeMap;
use std::net::IpAddr;

use maxminddb::Reader;
use serde::Deserialize;

/// The fields netlens reads from any of the database kinds; whatever a kind lacks stays `None`.
/// Field names are those of the GeoIP2 schema, which DB-IP's .mmdb files share.
#[derive(Debug, Default, Deserialize)]
pub struct Record {
    pub country: Option<Place>,
    pub registered_country: Option<Place>,
    pub city: Option<Place>,
    #[serde(default)]
    pub subdivisions: Vec<Place>,
    pub location: Option<Location>,
    pub autonomous_system_number: Option<u32>,
    pub autonomous_system_organization: Option<String>,
}

/// A country, region or city.
#[derive(Debug, Default, Deserialize)]
pub struct Place {
    pub iso_code: Option<String>,
    #[serde(default)]
    pub names: BTreeMap<String, String>,
}

impl Place {
    pub fn english_name(&self) -> Option<String> {
        self.names.get("en").cloned()
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Location {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// What a database holds for an address.
#[derive(Debug)]
pub struct Found {
    pub record: Record,
    /// The network the answer covers (`81.2.69.160/27`), when the database says.
    pub network: Option<String>,
}

/// The database kinds netlens knows (by `database_type`); others are used for the fields they have.
const KNOWN_KINDS: [&str; 8] = ["Country", "City", "ASN", "ISP", "Enterprise", "dbip", "DBIP", "ipinfo"];

/// One database, opened from its bytes.
pub struct Database {
    reader: Reader<Vec<u8>>,
}

impl Database {
    /// Opens a database from the whole of its file; `Err` says why the bytes are not one.
    pub fn open(bytes: Vec<u8>) -> Result<Self, String> {
        Reader::from_source(bytes)
            .map(|reader| Database { reader })
            .map_err(|e| e.to_string())
    }

    /// The database's `database_type` (`GeoLite2-City`, `DBIP-ASN-Lite`, ...).
    pub fn kind(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// True when [`Database::kind`] is a country, city or ASN kind netlens knows.
    pub fn is_known_kind(&self) -> bool {
        KNOWN_KINDS.iter().any(|k| self.kind().contains(k))
    }

    /// What the database holds for `addr`: `Ok(None)` when nothing, `Err` when the database is
    /// damaged where the lookup went.
    pub fn lookup(&self, addr: IpAddr) -> Result<Option<Found>, String> {
        // An IPv4-only database has no answer for IPv6 (the reader would call it an error).
        if addr.is_ipv6() && self.reader.metadata().ip_version == 4 {
            return Ok(None);
        }
        let bad = |e: maxminddb::MaxMindDbError| format!("looking up {addr}: {e}");
        let result = self.reader.lookup(addr).map_err(bad)?;
        let Some(record) = result.decode::<Record>().map_err(bad)? else {
            return Ok(None);
        };
        Ok(Some(Found {
            record,
            network: result.network().ok().map(|n| n.to_string()),
        }))
    }
}
