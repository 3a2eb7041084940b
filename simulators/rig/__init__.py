"""The technician's test rig: configured meters on their transports, a live table, faults on demand.

``aquami simulate rig --config rig.toml`` runs :func:`simulators.rig.serve.serve`. Modules:

- the rig file and what it remembers: :mod:`.config` (the TOML file, validated), :mod:`.state` (the
  faults applied, kept across a restart);
- the meters: :mod:`.meters` (pulse counter, a unit id's slot), :mod:`.exchanged_meter` (the new
  meter an exchange fits);
- faults and work: :mod:`.faults` (what can be injected), :mod:`.meter_work` (a technician's swaps
  and exchanges of meters on the transports);
- running: :mod:`.runner` (the transports and their meters), :mod:`.running` (what it keeps of each
  meter and fault in force), :mod:`.serve` (run until stopped);
- around it: :mod:`.control` (the HTTP fault endpoint), :mod:`.client` (calling it: ``aquami simulate
  fault``), :mod:`.table` (the live table), :mod:`.gateway_config` (a gateway file for the rig).

An example with every meter kind: ``simulators/examples/rig.toml``.
"""
