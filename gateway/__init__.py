"""The field gateway: polls meters, timestamps, spools to disk, and delivers to MQTT with nothing lost."""
