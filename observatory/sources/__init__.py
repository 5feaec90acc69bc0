"""Outside sources of measurements and signals: OONI's public stream, external outage series."""
