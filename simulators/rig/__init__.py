"""The technician's test rig: configured meters on their transports, a live table, faults on demand.

``aquami simulate rig --config rig.toml`` runs :func:`simulators.rig.serve.serve`. Modules:
:mod:`.config` (the TOML file, validated), :mod:`.faults` (what can be injected), :mod:`.meters`
(pulse counter), :mod:`.runner` (the transports and their meters), :mod:`.meter_work` (a technician's
swaps and exchanges of meters on them), :mod:`.control` (the HTTP fault endpoint), :mod:`.table`
(the live table). An example with every meter kind: ``simulators/examples/rig.toml``.
"""
