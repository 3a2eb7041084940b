"""The utility's HTTP service and web UI: meters and reads now; billing, credit control, cashier and
customer care join as one package per resource (router for HTTP, service for rules, repository
for SQL), each mounted in :mod:`server.app`."""
