"""Open311 GeoReport v2 (JSON only) over customer care's enquiries: services, requests, and their status."""
