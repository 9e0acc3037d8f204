"""Sources and sinks for systems outside the flow: :mod:`riffle.connectors.stdio`,
:mod:`riffle.connectors.files` and :mod:`riffle.connectors.kafka`."""
