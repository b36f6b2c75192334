"""The worker side: Celery tasks (``tasks``), the loops ``serve`` runs (``loops``), batch work on files on disk (``backfill``)
and deliveries to a site's own systems (``deliveries``).

``heartbeat`` is the thread in each worker process that tells the sweep the worker is alive. ``radtriage`` hands all of them narrow configs and metric
callbacks: nothing here reads settings.
"""

__all__ = ["backfill", "deliveries", "heartbeat", "loops", "tasks"]
