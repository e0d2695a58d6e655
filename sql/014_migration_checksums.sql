-- netlens migration 14: a checksum per applied migration, so that a file whose schema came from
-- scripts other than this build's is refused instead of differing silently. Landed scripts are
-- never edited (a test pins each one's checksum); this column records what was applied.
ALTER TABLE schema_migrations ADD COLUMN checksum VARCHAR;
COMMENT ON COLUMN schema_migrations.checksum IS 'SHA-256 (hex) of the migration script as applied; NULL for a migration applied by a netlens older than schema version 14, which recorded none.';
