"""The Celery application: embedded file broker by default, Redis in production."""

from __future__ import annotations

from celery import Celery

from common import Queue
from worker.tasks import embedded_broker
from worker.tasks.config import BrokerConfig

# Redis message priorities (0 is served first), indexed by Priority.rank (2 = STAT).
REDIS_PRIORITY_BY_RANK = {2: 0, 1: 3, 0: 6}


def create_app(broker: BrokerConfig) -> Celery:
    """A Celery app wired to ``broker``; ``worker.tasks.registration`` adds the tasks."""
    app = Celery("radtriage")
    if broker.embedded:
        queue_dir = broker.folder / "queue"
        control_dir = broker.folder / "control"
        queue_dir.mkdir(parents=True, exist_ok=True)
        control_dir.mkdir(parents=True, exist_ok=True)
        embedded_broker.register()
        url, options = f"{embedded_broker.SCHEME}://localhost/", {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
            "store_processed": False,
            # How long an idle worker sleeps between looks at the queue folder: the default
            # 1 s would add up to a second to every study; a look is one directory listing.
            "polling_interval": 0.02,
        }
    else:
        url, options = broker.url, {
            "priority_steps": list(range(10)),
            "sep": ":",
            "queue_order_strategy": "priority",
        }
        if broker.key_prefix:
            options["global_keyprefix"] = broker.key_prefix
    app.conf.update(
        broker_url=url,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=Queue.TRIAGE.value,
        worker_hijack_root_logger=False,
        worker_enable_remote_control=not broker.embedded,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    )
    return app
