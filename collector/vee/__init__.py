"""Validation, estimation and editing (VEE) of readings before billing.

- :mod:`collector.vee.config`: rules' thresholds, with defaults a utility would start from.
- :mod:`collector.vee.series`: many meters' readings as flat NumPy arrays, fetched in one query.
- :mod:`collector.vee.rules`: the validation rules, vectorised over those arrays.
- :mod:`collector.vee.estimation`: filling gaps (linear on the register, or the meter's own profile).
- :mod:`collector.vee.editing`: a person's correction, with the original kept in ``reading_history``.
- :mod:`collector.vee.runner`: load, validate, estimate and write the results for a period.
"""
