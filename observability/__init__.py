"""Metrics, traces and logs of every Tailor process (the lowest layer: imports nothing of Tailor).

``observability.metrics``: the Prometheus families (``prometheus_client``, multiprocess-safe under
``PROMETHEUS_MULTIPROC_DIR``) and ``exposition`` for ``/metrics``. ``observability.tracing``:
``span(name)`` — a shared no-op context unless tracing was configured (OpenTelemetry SDK, OTLP).
``observability.logs``: ``configure_logging`` (JSON or text, once per process), the request id
of the current request, and the silencing of third-party loader noise.
"""
