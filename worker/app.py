"""The Celery application: embedded file broker by default, Redis in production."""

from __future__ import annotations

from celery import Celery

from common import Queue
from radtriage.settings import Settings
from worker import embedded_broker

# Redis priorities, 0 = served first (STACK.md); indexed by Priority.rank.
REDIS_PRIORITY_BY_RANK = {2: 0, 1: 3, 0: 6}


def broker_folder(settings: Settings):
    return settings.data_dir.resolve() / "broker"


def create_app(settings: Settings) -> Celery:
    """A Celery app wired to the configured broker; tasks are registered by ``worker.tasks``."""
    app = Celery("radtriage")
    if settings.embedded_broker:
        queue_dir = broker_folder(settings) / "queue"
        control_dir = broker_folder(settings) / "control"
        queue_dir.mkdir(parents=True, exist_ok=True)
        control_dir.mkdir(parents=True, exist_ok=True)
        embedded_broker.register()
        broker, options = f"{embedded_broker.SCHEME}://localhost/", {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
            "store_processed": False,
            # The default 1 s poll adds a second to every study.
            "polling_interval": 0.1,
        }
    else:
        broker, options = settings.broker_url, {
            "priority_steps": list(range(10)),
            "sep": ":",
            "queue_order_strategy": "priority",
        }
        if settings.broker_key_prefix:
            options["global_keyprefix"] = settings.broker_key_prefix
    app.conf.update(
        broker_url=broker,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=Queue.TRIAGE.value,
        worker_hijack_root_logger=False,
        worker_enable_remote_control=not settings.embedded_broker,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5},
    )
    app.conf["radtriage_settings"] = settings
    return app
