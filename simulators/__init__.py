"""Meters, buses and receivers in software: they answer on the same wires the gateway uses.

- The water: :mod:`consumption` (customers' use), :mod:`network` (DMA leakage, constant flows).
- Faults and what really happened: :mod:`events` (injected into a live meter), :mod:`ground_truth`
  (the JSON both simulators and scorers use), :mod:`wire_faults` (lost, late, corrupt replies).
- Live meters: :mod:`meter_model` (a customer meter at any UTC instant), :mod:`inlet_model` (a DMA's
  bulk meter), :mod:`modelled_meter` (a live meter behind a Modbus unit id).
- Wires: :mod:`serial_line` (a pty with the line's timing), :mod:`modbus_rtu`, :mod:`modbus_tcp`.
- Data sets: :mod:`fleet` (vectorised fleets with ground truth, for detection benchmarks).
"""
