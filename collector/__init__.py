"""The collector: MQTT → TimescaleDB ingest (idempotent, batched), validation, estimation, detection."""
