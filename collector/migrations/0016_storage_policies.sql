-- Compression and retention where the TimescaleDB edition has them (the Community/TSL license);
-- the Apache edition and plain PostgreSQL do not. What was found is recorded in storage_features,
-- so operators (and tests) can see which applies: detect, never fail the migration over it.
CREATE TABLE storage_features (
    feature   text PRIMARY KEY,
    available boolean NOT NULL,
    note      text NOT NULL
);

DO $$
DECLARE
    has_tsdb boolean := EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb');
    license text := CASE WHEN has_tsdb THEN current_setting('timescaledb.license', true) END;
    tsl boolean := has_tsdb AND license = 'timescale';
BEGIN
    INSERT INTO storage_features VALUES
        ('hypertables', has_tsdb, coalesce('timescaledb license ' || license, 'plain PostgreSQL: ordinary tables')),
        ('compression', tsl, CASE WHEN tsl THEN 'readings chunks older than 30 days are compressed'
                                  ELSE 'needs the TimescaleDB Community (TSL) license; not applied' END),
        ('retention', tsl, CASE WHEN tsl THEN 'no automatic drop: readings are billing records; see drop_chunks'
                                ELSE 'needs the TimescaleDB Community (TSL) license; old chunks can be dropped by hand with drop_chunks' END),
        ('continuous_aggregates', tsl, 'consumption_* are maintained tables (refresh_consumption) on every edition');
    IF tsl THEN
        EXECUTE 'ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = ''meter_id'', '
                'timescaledb.compress_orderby = ''ts'')';
        PERFORM add_compression_policy('readings', interval '30 days');
    END IF;
END
$$;
