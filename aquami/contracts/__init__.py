"""The contracts between parts that belong to neither side (see shared/architecture.md)."""
