"""The probe: OONI web_connectivity measurements of the platforms, from the network it runs in.

I/O edge of the observatory. Each step (dns, tcp, tls, http) returns what happened on the wire as the typed
raw-observation Structs of `observatory.measurement`; a reset or a timeout is data (an OONI failure string),
never an exception. `runner` assembles one measurement per target, `spool` keeps them durably, `upload` sends
them to a collector, `helper` is the control vantage point, `metadata` says where the probe is.
"""
