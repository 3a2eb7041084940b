"""The meters' wire formats: declarative Construct definitions and pure decoding functions.

Knows bytes and nothing else: no I/O, no clock, no configuration (see ../shared/architecture.md).
"""
