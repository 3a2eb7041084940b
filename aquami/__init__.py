"""aquami: advanced metering infrastructure for water utilities.

This package holds what belongs to no single part: the ``aquami`` command line, the live demo that
wires every part together, and the contracts between parts (the MQTT payload schema).
"""

__version__ = "0.1.0"
