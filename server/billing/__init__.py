"""Validated reads and billing determinants for an external billing system (role ``billing``)."""
