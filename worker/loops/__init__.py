"""The loops ``serve`` runs on timers: study assembly, the outbox relay, the reconciliation sweep,
and waiting-time escalation with idle-claim expiry (deliveries, DICOM SR included, run in ``worker.deliveries``).

Each keeps its state in the database, so a restart loses nothing.
"""

from worker.loops.assembler import Assembler
from worker.loops.broker_watch import BrokerWatch
from worker.loops.escalation import EscalationLoop, EscalationRound
from worker.loops.relay import OutboxRelay
from worker.loops.sweep import Sweep, SweepConfig

__all__ = ["Assembler", "BrokerWatch", "EscalationLoop", "EscalationRound", "OutboxRelay", "Sweep", "SweepConfig"]
