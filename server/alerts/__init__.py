"""Alerts from detection: listed for customer care and meterization, dismissed by a person with a reason."""
