"""Sources and sinks for systems outside the flow: :mod:`riffle.connectors.stdio`."""
