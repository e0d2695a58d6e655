//! Schema versions. Each `sql/NNN_name.sql` script is one migration, applied once and recorded
//! in `schema_migrations`; all the steps one open applies share one transaction. A file from an
//! older netlens is upgraded on open; a file from a newer one is refused untouched.

use std::path::Path;

use duckdb::Connection;

use crate::error::{Error, Result};

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this build knows, in order. A test checks it matches `sql/NNN_*.sql`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "core",
        sql: include_str!("../../sql/001_core.sql"),
    },
    Migration {
        version: 2,
        name: "flows",
        sql: include_str!("../../sql/002_flows.sql"),
    },
    Migration {
        version: 3,
        name: "analysis",
        sql: include_str!("../../sql/003_analysis.sql"),
    },
    Migration {
        version: 4,
        name: "detect",
        sql: include_str!("../../sql/004_detect.sql"),
    },
    Migration {
        version: 5,
        name: "geo",
        sql: include_str!("../../sql/005_geo.sql"),
    },
    Migration {
        version: 6,
        name: "datasets",
        sql: include_str!("../../sql/006_datasets.sql"),
    },
    Migration {
        version: 7,
        name: "policy",
        sql: include_str!("../../sql/007_policy.sql"),
    },
    Migration {
        version: 8,
        name: "rollups",
        sql: include_str!("../../sql/008_rollups.sql"),
    },
    Migration {
        version: 9,
        name: "feedback",
        sql: include_str!("../../sql/009_feedback.sql"),
    },
    Migration {
        version: 10,
        name: "packets",
        sql: include_str!("../../sql/010_packets.sql"),
    },
    Migration {
        version: 11,
        name: "quality",
        sql: include_str!("../../sql/011_quality.sql"),
    },
    Migration {
        version: 12,
        name: "ensemble",
        sql: include_str!("../../sql/012_ensemble.sql"),
    },
    Migration {
        version: 13,
        name: "feedback_columns",
        sql: include_str!("../../sql/013_feedback_columns.sql"),
    },
    Migration {
        version: 14,
        name: "migration_checksums",
        sql: include_str!("../../sql/014_migration_checksums.sql"),
    },
    Migration {
        version: 15,
        name: "run_ids",
        sql: include_str!("../../sql/015_run_ids.sql"),
    },
    Migration {
        version: 16,
        name: "local_addresses",
        sql: include_str!("../../sql/016_local_addresses.sql"),
    },
    Migration {
        version: 17,
        name: "flows_missed_bytes",
        sql: include_str!("../../sql/017_flows_missed_bytes.sql"),
    },
    Migration {
        version: 18,
        name: "explain",
        sql: include_str!("../../sql/018_explain.sql"),
    },
    Migration {
        version: 19,
        name: "feature_orientation",
        sql: include_str!("../../sql/019_feature_orientation.sql"),
    },
    Migration {
        version: 20,
        name: "socket_traffic",
        sql: include_str!("../../sql/020_socket_traffic.sql"),
    },
    Migration {
        version: 21,
        name: "tunnel_parents",
        sql: include_str!("../../sql/021_tunnel_parents.sql"),
    },
    Migration {
        version: 22,
        name: "calibrate_kind",
        sql: include_str!("../../sql/022_calibrate_kind.sql"),
    },
    Migration {
        version: 23,
        name: "rollup_traffic",
        sql: include_str!("../../sql/023_rollup_traffic.sql"),
    },
    Migration {
        version: 24,
        name: "run_ids_comment",
        sql: include_str!("../../sql/024_run_ids_comment.sql"),
    },
    Migration {
        version: 25,
        name: "range_macros",
        sql: include_str!("../../sql/025_range_macros.sql"),
    },
    Migration {
        version: 26,
        name: "dashboard_ranges",
        sql: include_str!("../../sql/026_dashboard_ranges.sql"),
    },
    Migration {
        version: 27,
        name: "cmdline_comment",
        sql: include_str!("../../sql/027_cmdline_comment.sql"),
    },
    Migration {
        version: 28,
        name: "tunnels",
        sql: include_str!("../../sql/028_tunnels.sql"),
    },
    Migration {
        version: 29,
        name: "feedback_rows",
        sql: include_str!("../../sql/029_feedback_rows.sql"),
    },
    Migration {
        version: 30,
        name: "tcp_state_rollups",
        sql: include_str!("../../sql/030_tcp_state_rollups.sql"),
    },
    Migration {
        version: 31,
        name: "detect_gates",
        sql: include_str!("../../sql/031_detect_gates.sql"),
    },
    Migration {
        version: 32,
        name: "suppressions",
        sql: include_str!("../../sql/032_suppressions.sql"),
    },
    Migration {
        version: 33,
        name: "flow_features_sample",
        sql: include_str!("../../sql/033_flow_features_sample.sql"),
    },
    Migration {
        version: 34,
        name: "tcp_path_stuck_rollups",
        sql: include_str!("../../sql/034_tcp_path_stuck_rollups.sql"),
    },
    Migration {
        version: 35,
        name: "events_inlined",
        sql: include_str!("../../sql/035_events_inlined.sql"),
    },
    Migration {
        version: 36,
        name: "dashboard_reads",
        sql: include_str!("../../sql/036_dashboard_reads.sql"),
    },
    Migration {
        version: 37,
        name: "latest_per_source",
        sql: include_str!("../../sql/037_latest_per_source.sql"),
    },
    Migration {
        version: 38,
        name: "connections_rolled",
        sql: include_str!("../../sql/038_connections_rolled.sql"),
    },
];

/// The first schema version whose `schema_migrations` has a `checksum` column.
const CHECKSUMS_FROM: i64 = 14;

const BOOTSTRAP: &str = "
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     BIGINT PRIMARY KEY,
    name        VARCHAR NOT NULL,
    applied_at  TIMESTAMP NOT NULL,
    netlens     VARCHAR NOT NULL
);
COMMENT ON TABLE schema_migrations IS 'Schema versions applied to this database, one row per sql/NNN_*.sql script.';
COMMENT ON COLUMN schema_migrations.version IS 'Migration number (the NNN of its script).';
COMMENT ON COLUMN schema_migrations.name IS 'Migration name (the rest of its script name).';
COMMENT ON COLUMN schema_migrations.applied_at IS 'UTC time it was applied.';
COMMENT ON COLUMN schema_migrations.netlens IS 'netlens version that applied it.';
";

/// Everything the migrations create a new database from, as one text: what an empty-schema
/// template is keyed by (see `template`).
pub fn schema_text(migrations: &[Migration]) -> String {
    let mut text = BOOTSTRAP.to_string();
    for m in migrations {
        text.push_str(&format!("\n-- {} {}\n{}", m.version, m.name, m.sql));
    }
    text
}

/// The newest migration applied, or None for a database without netlens's schema.
///
/// Asks the table itself first: any listing of tables (`duckdb_tables()`,
/// `information_schema`) makes DuckDB create and parse all of its default views, 30 % of the
/// samples in a profile of `netlens --db F -c 'select 1'` (timed in bench/RESULTS.md, "Opening and creating a database"). Only
/// when that query fails does the listing say whether the table is missing (a database without
/// the schema) or something else went wrong: then that first error is returned (or the
/// listing's own, should it fail too). Named by catalog so that a temporary table of that name
/// is not read instead.
fn current_version(conn: &Connection) -> Result<Option<i64>> {
    let catalog: String = conn
        .query_row("SELECT current_database()", [], |r| r.get(0))
        .map_err(Error::sql)?;
    let read_version = format!(
        "SELECT coalesce(max(version), 0) FROM {}.main.schema_migrations",
        crate::store::quote_ident(&catalog)
    );
    let failure = match conn.query_row(&read_version, [], |r| r.get(0)) {
        Ok(version) => return Ok(Some(version)),
        Err(failure) => failure,
    };
    let exists: i64 = conn
        .query_row(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations' AND schema_name = 'main' \
             AND database_name = current_database()",
            [],
            |r| r.get(0),
        )
        .map_err(Error::sql)?;
    if exists == 0 {
        return Ok(None);
    }
    Err(Error::sql(failure))
}

/// Brings the schema up to the newest of `migrations`. True when the database had no schema
/// at all and this made the whole of it.
pub fn apply(conn: &Connection, migrations: &[Migration], path: &Path, read_only: bool) -> Result<bool> {
    let supported = migrations.last().map_or(0, |m| m.version);
    let found = current_version(conn)?;
    let at = found.unwrap_or(0);
    if at > supported {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: at,
            supported,
        });
    }
    if found.is_some() {
        verify_checksums(conn, migrations, path, at)?;
    }
    if at == supported {
        return Ok(false);
    }
    if read_only {
        return Err(Error::SchemaNeedsUpgrade {
            path: path.to_path_buf(),
            found: at,
            supported,
        });
    }
    // Every pending step in one transaction: a failed upgrade leaves the file at the version it
    // had, never between two versions.
    let begin = |e: duckdb::Error| Error::Migration {
        version: 0,
        name: "schema_migrations".into(),
        reason: e.to_string(),
    };
    // The scripts are a thousand small statements (most of them COMMENT ON), and DuckDB's
    // fixed cost per statement is most of their time; on one thread it does not hand each to
    // its scheduler (timed in bench/RESULTS.md, "pcap import", "What made it so").
    let threads: i64 = conn
        .query_row("SELECT current_setting('threads')", [], |r| r.get(0))
        .map_err(begin)?;
    conn.execute_batch("SET threads = 1").map_err(begin)?;
    let result = conn.execute_batch("BEGIN TRANSACTION").map_err(begin).and_then(|()| {
        match apply_pending(conn, migrations, at, found.is_none()) {
            Ok(()) => conn.execute_batch("COMMIT").map_err(|e| Error::Migration {
                version: supported,
                name: "commit of the upgrade".into(),
                reason: format!("{e} (the file is left as it was, at schema version {at})"),
            }),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    });
    let restored = conn.execute_batch(&format!("SET threads = {threads}"));
    result?;
    // The upgrade is committed: a failure here is the connection's, not the migration's.
    restored.map_err(Error::sql)?;
    Ok(found.is_none())
}

fn apply_pending(conn: &Connection, migrations: &[Migration], at: i64, fresh: bool) -> Result<()> {
    if fresh {
        conn.execute_batch(BOOTSTRAP).map_err(|e| Error::Migration {
            version: 0,
            name: "schema_migrations".into(),
            reason: e.to_string(),
        })?;
    }
    // Migrations applied by an older build keep a NULL checksum: what it applied is not known.
    let applied: Vec<&Migration> = migrations.iter().filter(|m| m.version > at).collect();
    for m in &applied {
        conn.execute_batch(m.sql)
            .and_then(|_| {
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at, netlens) VALUES (?, ?, now(), ?)",
                    duckdb::params![m.version, m.name, env!("CARGO_PKG_VERSION")],
                )
            })
            .map_err(|e| Error::Migration {
                version: m.version,
                name: m.name.to_string(),
                reason: e.to_string(),
            })?;
    }
    // The column exists from CHECKSUMS_FROM on, so the checksums of this run's scripts are
    // written once all of them are applied (those before it included).
    if migrations.last().is_some_and(|m| m.version >= CHECKSUMS_FROM) {
        for m in &applied {
            conn.execute(
                "UPDATE schema_migrations SET checksum = sha256(?) WHERE version = ?",
                duckdb::params![m.sql, m.version],
            )
            .map_err(|e| Error::Migration {
                version: m.version,
                name: m.name.to_string(),
                reason: format!("recording its checksum: {e}"),
            })?;
        }
    }
    Ok(())
}

/// Scripts that landed in two texts, and the checksum of the other one: 009, 010, 015 and 035
/// were committed with comments that differ (latest_feedback's column comments in 009, the
/// header of 010, the run_ids comment of 015, the header of 035), one text first and the other
/// later; the scripts hold the later text, and this list the earlier one. The catalogs they
/// leave are the same (a header is an SQL comment, not stored; 013 and 024 restate
/// latest_feedback's and run_ids's comments), so a database that recorded either text is
/// accepted. A change to what a script does is never made this way: it is a new migration.
const ALSO_LANDED: &[(i64, &str)] = &[
    (9, "76e3ee6125560244ed779a16089c0091876756b749b89cf35aabfaa5546df423"),
    (10, "399573ce37c2776f71e9652a6bfbfc7c5226df58165ad9e93122083bd4b99678"),
    (15, "1b8203cee446280bec35561846793e31ad7e45bfa50c6cec64098c73db578e1d"),
    (35, "aa496a3c1894e2378c51408b7f71665344c6d20b75d978cb2e950754c56011f8"),
];

/// Refuses a database whose recorded migrations were applied under other names, or (from
/// CHECKSUMS_FROM on, where the column exists) from other scripts than this build's: its tables
/// and views may not be what the statements of this build expect. One query each. A NULL
/// checksum is accepted only below CHECKSUMS_FROM (applied by a build that recorded none).
fn verify_checksums(conn: &Connection, migrations: &[Migration], path: &Path, at: i64) -> Result<()> {
    let differs = |sql: String, params: Vec<&dyn duckdb::ToSql>| -> Result<Option<(i64, String)>> {
        let mut statement = conn.prepare(&sql).map_err(Error::sql)?;
        let mut rows = statement.query(params.as_slice()).map_err(Error::sql)?;
        match rows.next().map_err(Error::sql)? {
            Some(row) => Ok(Some((row.get(0).map_err(Error::sql)?, row.get(1).map_err(Error::sql)?))),
            None => Ok(None),
        }
    };
    let values = |per_row: &str| vec![per_row; migrations.len()].join(", ");
    let mut names: Vec<&dyn duckdb::ToSql> = Vec::with_capacity(migrations.len() * 2);
    for m in migrations {
        names.push(&m.version);
        names.push(&m.name);
    }
    let renamed = differs(
        format!(
            "SELECT s.version, '(' || s.name || '), but this netlens''s migration ' || s.version || ' is (' || e.name || ')' \
             FROM schema_migrations s JOIN (VALUES {}) e(version, name) USING (version) \
             WHERE s.name <> e.name ORDER BY s.version LIMIT 1",
            values("(?::BIGINT, ?::VARCHAR)")
        ),
        names,
    )?;
    let changed = match renamed {
        Some(found) => Some(found),
        None if at >= CHECKSUMS_FROM => {
            let mut scripts: Vec<&dyn duckdb::ToSql> = Vec::with_capacity(migrations.len() * 2);
            for m in migrations {
                scripts.push(&m.version);
                scripts.push(&m.sql);
            }
            differs(
                format!(
                    "SELECT s.version, '(' || s.name || ') with checksum ' || coalesce(s.checksum, 'none') \
                     || ', but this netlens''s script for it has checksum ' || e.checksum \
                     FROM schema_migrations s JOIN (VALUES {}) e(version, checksum) USING (version) \
                     WHERE s.checksum IS DISTINCT FROM e.checksum AND (s.checksum IS NOT NULL OR s.version >= {CHECKSUMS_FROM}) \
                     AND (s.version, s.checksum) NOT IN (VALUES {also}) \
                     ORDER BY s.version LIMIT 1",
                    values("(?::BIGINT, sha256(?::VARCHAR))"),
                    // Constants of this file: hex digits and numbers only.
                    also = ALSO_LANDED
                        .iter()
                        .map(|(v, sum)| format!("({v}::BIGINT, '{sum}')"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                scripts,
            )?
        }
        None => None,
    };
    match changed {
        Some((version, differs)) => Err(Error::MigrationDiffers {
            path: path.to_path_buf(),
            version,
            differs,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: Migration = Migration {
        version: 1,
        name: "one",
        sql: "CREATE TABLE a (x INTEGER);",
    };
    const M2: Migration = Migration {
        version: 2,
        name: "two",
        sql: "ALTER TABLE a ADD COLUMN y INTEGER;",
    };
    const BROKEN: Migration = Migration {
        version: 2,
        name: "broken",
        sql: "ALTER TABLE a ADD COLUMN z INTEGER; SELECT * FROM no_such_table;",
    };

    fn p() -> &'static Path {
        Path::new("test.duckdb")
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Migrations run on one thread, and the connection gets its setting back, after a failed
    /// step too.
    #[test]
    fn migrations_run_on_one_thread_and_the_setting_is_restored() {
        const RECORD: Migration = Migration {
            version: 2,
            name: "record",
            sql: "CREATE TABLE seen AS SELECT current_setting('threads') AS threads;",
        };
        let threads = |conn: &Connection| -> i64 {
            conn.query_row("SELECT current_setting('threads')", [], |r| r.get(0))
                .unwrap()
        };
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("SET threads = 3").unwrap();
        apply(&conn, &[M1, RECORD], p(), false).unwrap();
        let during: i64 = conn.query_row("SELECT threads FROM seen", [], |r| r.get(0)).unwrap();
        assert_eq!((during, threads(&conn)), (1, 3));

        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("SET threads = 3").unwrap();
        apply(&conn, &[M1], p(), false).unwrap();
        assert!(apply(&conn, &[M1, BROKEN], p(), false).is_err());
        assert_eq!(threads(&conn), 3, "restored after a failed step too");
    }

    /// The version is read from the table in the database in use, by its catalog's name (quoted),
    /// never from a temporary table of the same name; a table that is there but cannot be read
    /// is an error, not "no schema".
    #[test]
    fn the_version_comes_from_the_database_in_use() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "ATTACH ':memory:' AS \"odd \"\"name\"\"\"; USE \"odd \"\"name\"\"\"; \
             CREATE TEMP TABLE schema_migrations (version BIGINT); INSERT INTO temp.schema_migrations VALUES (99);",
        )
        .unwrap();
        assert_eq!(
            current_version(&conn).unwrap(),
            None,
            "a temporary table is not the schema"
        );
        // A connection netlens opens has no temporary tables; the migrations name tables plainly.
        conn.execute_batch("DROP TABLE temp.schema_migrations").unwrap();
        apply(&conn, &[M1, M2], p(), false).unwrap();
        assert_eq!(current_version(&conn).unwrap(), Some(2));
        assert_eq!(count(&conn, "SELECT count(*) FROM \"odd \"\"name\"\"\".main.a"), 0);

        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE schema_migrations (name VARCHAR)")
            .unwrap();
        let err = current_version(&conn).unwrap_err();
        assert!(err.to_string().contains("version"), "{err}");
    }

    #[test]
    fn older_database_is_upgraded() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, &[M1], p(), false).unwrap();
        conn.execute("INSERT INTO a VALUES (1)", []).unwrap();
        apply(&conn, &[M1, M2], p(), false).unwrap();
        let (x, y): (i32, Option<i32>) = conn
            .query_row("SELECT x, y FROM a", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((x, y), (1, None));
        assert_eq!(current_version(&conn).unwrap(), Some(2));
    }

    #[test]
    fn newer_database_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, &[M1, M2], p(), false).unwrap();
        let err = apply(&conn, &[M1], p(), false).unwrap_err();
        assert!(
            matches!(
                err,
                Error::SchemaTooNew {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn failed_migration_rolls_back_whole() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, &[M1], p(), false).unwrap();
        let err = apply(&conn, &[M1, BROKEN], p(), false).unwrap_err();
        assert!(err.to_string().contains("migration 2 (broken) failed"), "{err}");
        assert_eq!(current_version(&conn).unwrap(), Some(1));
        assert_eq!(
            count(&conn, "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'a'"),
            1
        );
    }

    #[test]
    fn a_failed_upgrade_keeps_the_version_the_file_had() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, &[M1], p(), false).unwrap();
        let three = Migration {
            version: 3,
            name: "three",
            ..BROKEN
        };
        let err = apply(&conn, &[M1, M2, three], p(), false).unwrap_err();
        assert!(err.to_string().contains("migration 3 (three) failed"), "{err}");
        assert_eq!(current_version(&conn).unwrap(), Some(1));
        let y = count(
            &conn,
            "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'a' AND column_name = 'y'",
        );
        assert_eq!(y, 0, "migration 2 was undone with 3");
    }

    #[test]
    fn read_only_cannot_upgrade() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, &[M1], p(), false).unwrap();
        let err = apply(&conn, &[M1, M2], p(), true).unwrap_err();
        assert!(matches!(err, Error::SchemaNeedsUpgrade { .. }), "{err}");
    }

    /// The SHA-256 of every migration script as it landed. A landed script is never edited
    /// (a database made from its old text would differ silently from a new one): a change is a
    /// new migration. A new migration gets its pin here when it is added.
    const PINNED: &[(i64, &str)] = &[
        (1, "57843da0b6ff3fb178f1cc069104ea9e62dbf4e674c9c51baf04b1c92eee8e99"),
        (2, "56fbe5b71280d9f14ae1188cad131fb085484cf777451d27da3add1d12521349"),
        (3, "f512ae3e7eb657a407f39ad142c5425df86e3dc2248260ed0cda5ae68621023e"),
        (4, "208055c83541d60bf52b43a4ee4098012b673c1f0c065ea8c1e8d405f969357a"),
        (5, "696f6191db5a053379c59af399c8f47a7f28150fb66289aa3e3ee92f3dc25ad2"),
        (6, "21f33ce337101aac33121433bd686250c797aaf4b4b98cea3e8946f376c33c33"),
        (7, "5c97b186b357a933dad16f66b45a02e3a4c46803d9968c1decf56531d30cd688"),
        (8, "8309d71e37c41d246d96503062115fe9c74dd803477b7ce7de2d32ae91e9a0e2"),
        (9, "824f4492b56a4f14c3c214299cc820011aaa0ae6a33321f524b31f2ac7a6bbb2"),
        (10, "d37be64d442d1629c59a85e9f29b60fea6d090f29775842fdb90fa1ad6a12d92"),
        (11, "fc202c15117fc3d9b4584dd03e8c2fb7247d96c1e920b1d20a32030c7e5d732e"),
        (12, "09bdbf95f3f1e60d8d2c3f3e8d1c12a5482f73e450efce63a6ebd37d34b4bcd2"),
        (13, "bc698608f069b5058faf6d7041fd0a3e3de8578ba200aaeed1de137d2502b3a8"),
        (14, "5dee31d144f75db57acf0109a27219e70cb87043e7430cc6ee5cc3d5c406868f"),
        (15, "a330f8bcd54a2f514f1cd94ff34355ee3c1c0832e7d66273a2ac8dad0f91f6a0"),
        (16, "f426967a13b9004acad9077d050191e49ddc3c56b826815a8dbf7562e472bc99"),
        (17, "6b82737afd7e450ca4af6b1531c8f45b73c2ebde280847e476db1304c1944947"),
        (18, "5325fcfe864cb888f448874190e289b6f625a697d99009a00fcdb1e82d3d15cf"),
        (19, "46c82e48a2bfb00aa6d61c42f9cf21689a1489d11ca65a82a332ebbd76d61862"),
        (20, "dc6a948a1f139c78092eca8a0386c74c615be46aa5a8ac1d1c85dd57eb99b78c"),
        (21, "e2f8122afa6fa96338571b6883cef9c3fad4d1bca2297576ab11c449f9e061ec"),
        (22, "0276ef90902304307c0b6f35ea717f4959d97974173535ea685206ff3b6be37a"),
        (23, "bd4990ebcb303ac1688778cbf9e9a4ec1ebe93d78d19f0cc404eb8dfb794b65e"),
        (24, "6c20743e14dc08e81210c62a3768de07774d17adc8021882512340158699d2ef"),
        (25, "53110b51f5c1520c134affe7b0b6eb07455e27eeb59ae9b6c5b68a37f4ecf03c"),
        (26, "0d215ad3be72507b3ba7f1594dcb3e536b8d20c2e48b7753eab7b04ef6243745"),
        (27, "ea33f9c4794f4ef0bf8da4f6530267cab863a74127ab35bbf88e77dc343cae06"),
        (28, "36a033060f8d9042109f4f3c11d8f779b93da196565f5f16eacf3feedfca1129"),
        (29, "42b31899e8af897b324b644381974efe6b00454257babf70a7d829477d63fb65"),
        (30, "bcb8ce2694360df0317166119e046d2d09e9a8d85914b592b403ceba60f1bdf5"),
        (31, "ae619b7a6f8f65fb15d4b8299451ab223ac3a98f39b6ab7443e9a9f27ccc28b5"),
        (32, "2b56e22f6c193a533f29045fe08ef91c69ab901b93c0ef5dedaf34cdb07357b6"),
        (33, "ecf5282cd682e178592af1da3bc25b0d11465959a477e0ea6fac5e8e152d944a"),
        (34, "2073a7f71b11b633bd66129930fa1582e463a5fc126ad578a21c5e485e561eff"),
        (35, "71b086c32371f6f8cdd795c1ee1f13084f793bb8ac191baf9324451df0fd306c"),
        (36, "7038214013a424d7e0865a1fc07e2026ed65d3c4883a6c97bf3a086afb2ffb2d"),
        (37, "1cb52f1e37f3cd1d9d43184c335a9da0147b9afd2f5b22bc1247bec15dfa3718"),
        (38, "2799689ce6d05c7bdda585b956854bc48855b7d123b43fe80357ab11c8f0ebfd"),
    ];

    #[test]
    fn landed_migrations_are_never_edited() {
        let conn = Connection::open_in_memory().unwrap();
        for m in MIGRATIONS {
            let sum: String = conn.query_row("SELECT sha256(?)", [m.sql], |r| r.get(0)).unwrap();
            let pinned = PINNED.iter().find(|(v, _)| *v == m.version).map(|(_, s)| *s);
            assert_eq!(
                pinned,
                Some(sum.as_str()),
                "migration {} ({}) does not match its pin: a landed script is never edited (restore it \
                 with git and put the change in a new migration); a new one is pinned with ({}, \"{sum}\")",
                m.version,
                m.name,
                m.version
            );
        }
        assert_eq!(
            PINNED.len(),
            MIGRATIONS.len(),
            "a pin for a migration that does not exist"
        );
    }

    fn recorded(conn: &Connection) -> Vec<(i64, Option<String>)> {
        let mut statement = conn
            .prepare("SELECT version, checksum FROM schema_migrations ORDER BY version")
            .unwrap();
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }

    /// A new database records every script's checksum; one upgraded from before checksums
    /// records those of the scripts it applied and NULL for the ones an older build applied.
    #[test]
    fn checksums_record_what_was_applied() {
        let pin = |v: i64| PINNED.iter().find(|(p, _)| *p == v).map(|(_, s)| s.to_string());
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, MIGRATIONS, p(), false).unwrap();
        let all: Vec<(i64, Option<String>)> = MIGRATIONS.iter().map(|m| (m.version, pin(m.version))).collect();
        assert_eq!(recorded(&conn), all);

        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, &MIGRATIONS[..9], p(), false).unwrap();
        apply(&conn, MIGRATIONS, p(), false).unwrap();
        let upgraded: Vec<(i64, Option<String>)> = MIGRATIONS
            .iter()
            .map(|m| (m.version, if m.version <= 9 { None } else { pin(m.version) }))
            .collect();
        assert_eq!(recorded(&conn), upgraded);
        apply(&conn, MIGRATIONS, p(), true).unwrap();
    }

    /// A file that recorded the other landed text of 009, 010, 015 or 035 opens; only those
    /// versions accept another checksum.
    #[test]
    fn the_other_landed_text_of_a_script_is_accepted() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, MIGRATIONS, p(), false).unwrap();
        for (version, sum) in ALSO_LANDED {
            conn.execute(
                "UPDATE schema_migrations SET checksum = ? WHERE version = ?",
                duckdb::params![sum, version],
            )
            .unwrap();
        }
        apply(&conn, MIGRATIONS, p(), false).unwrap();
        apply(&conn, MIGRATIONS, p(), true).unwrap();
        let (_, sum) = ALSO_LANDED[0];
        conn.execute("UPDATE schema_migrations SET checksum = ? WHERE version = 3", [sum])
            .unwrap();
        let err = apply(&conn, MIGRATIONS, p(), false).unwrap_err();
        assert!(matches!(err, Error::MigrationDiffers { version: 3, .. }), "{err}");
    }

    /// A file whose recorded migration came from another script, or under another name, is
    /// refused on every open (read-only too, and before an upgrade), and left as it was.
    #[test]
    fn a_migration_applied_from_another_script_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, MIGRATIONS, p(), false).unwrap();
        conn.execute_batch("UPDATE schema_migrations SET checksum = 'abc' WHERE version = 3")
            .unwrap();
        for read_only in [false, true] {
            let err = apply(&conn, MIGRATIONS, p(), read_only).unwrap_err();
            assert!(
                matches!(&err, Error::MigrationDiffers { version: 3, differs, .. } if differs.contains("checksum abc,")),
                "{err}"
            );
            assert!(err.to_string().contains("migration 3 (analysis)"), "{err}");
        }
        conn.execute_batch(
            "UPDATE schema_migrations SET checksum = (SELECT checksum FROM schema_migrations WHERE version = 4) \
             WHERE version = 3",
        )
        .unwrap();
        let err = apply(&conn, MIGRATIONS, p(), false).unwrap_err();
        assert!(matches!(err, Error::MigrationDiffers { version: 3, .. }), "{err}");

        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, MIGRATIONS, p(), false).unwrap();
        conn.execute_batch("UPDATE schema_migrations SET name = 'renamed' WHERE version = 14")
            .unwrap();
        let err = apply(&conn, MIGRATIONS, p(), false).unwrap_err();
        assert!(err.to_string().contains("(renamed)"), "{err}");

        // A file from a build whose migration 14 was another one (it has no checksum column).
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, &MIGRATIONS[..13], p(), false).unwrap();
        conn.execute_batch(
            "CREATE TABLE explained (x INTEGER); INSERT INTO schema_migrations VALUES (14, 'explain', now(), '0.1.0')",
        )
        .unwrap();
        let err = apply(&conn, MIGRATIONS, p(), false).unwrap_err();
        assert!(
            matches!(&err, Error::MigrationDiffers { version: 14, differs, .. } if differs.contains("(explain)")),
            "{err}"
        );
        // A checksum this build always writes, missing.
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, MIGRATIONS, p(), false).unwrap();
        conn.execute_batch("UPDATE schema_migrations SET checksum = NULL WHERE version = 14")
            .unwrap();
        let err = apply(&conn, MIGRATIONS, p(), true).unwrap_err();
        assert!(err.to_string().contains("checksum none"), "{err}");

        // An upgrade checks what is there before it applies anything.
        let conn = Connection::open_in_memory().unwrap();
        apply(&conn, MIGRATIONS, p(), false).unwrap();
        conn.execute_batch("UPDATE schema_migrations SET checksum = 'abc' WHERE version = 1")
            .unwrap();
        let mut newer = MIGRATIONS.to_vec();
        newer.push(Migration {
            version: MIGRATIONS.len() as i64 + 1,
            name: "next",
            sql: "CREATE TABLE next_one (x INTEGER);",
        });
        let err = apply(&conn, &newer, p(), false).unwrap_err();
        assert!(matches!(err, Error::MigrationDiffers { version: 1, .. }), "{err}");
        assert_eq!(current_version(&conn).unwrap(), Some(MIGRATIONS.len() as i64));
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'next_one'"
            ),
            0
        );
    }

    #[test]
    fn migration_list_matches_sql_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut scripts: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".sql") && n.chars().take(3).all(|c| c.is_ascii_digit()))
            .collect();
        scripts.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{:03}_{}.sql", m.version, m.name))
            .collect();
        assert_eq!(scripts, listed);
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "versions are consecutive");
        }
    }
}
