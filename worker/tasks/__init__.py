"""Celery tasks: the app and its broker, the triage and draft tasks and their retries."""

from worker.tasks.app import create_app
from worker.tasks.config import BrokerConfig, WorkerConfig
from worker.tasks.context import WEIGHTS_HINT, WorkerContext, medgemma_missing
from worker.tasks.failures import where
from worker.tasks.registration import register

__all__ = [
    "WEIGHTS_HINT",
    "BrokerConfig",
    "WorkerConfig",
    "WorkerContext",
    "create_app",
    "medgemma_missing",
    "register",
    "where",
]
