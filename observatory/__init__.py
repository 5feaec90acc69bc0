"""observatory: an open internet observatory.

Measurements in (our probes, OONI's public data, outside-in signals), incidents out (statements, charts, feeds).
The pipeline, left to right; a module may import from its left, never from its right:

    measurement -> verdict -> ingest -> store -> detect -> report -> service -> web
    probe / simulate / lab produce measurements; cli wires it all together.
"""

__version__ = "0.1.0"
