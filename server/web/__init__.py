"""The web UI: server-rendered pages for customer-services staff."""
