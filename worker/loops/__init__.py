"""The loops ``serve`` runs on timers: study assembly, the outbox relay, the reconciliation sweep, SR export,
and waiting-time escalation with idle-claim expiry.

Each keeps its state in the database, so a restart loses nothing.
"""

from worker.loops.assembler import Assembler
from worker.loops.broker_watch import BrokerWatch
from worker.loops.escalation import EscalationLoop, EscalationRound
from worker.loops.relay import OutboxRelay
from worker.loops.sr_export import ExportConfig, SrExporter
from worker.loops.sweep import Sweep, SweepConfig

__all__ = ["Assembler", "BrokerWatch", "EscalationLoop", "EscalationRound", "ExportConfig", "OutboxRelay", "SrExporter", "Sweep", "SweepConfig"]
