"""Deliveries to a site's own systems: one sender per destination kind (HL7 v2 over MLLP, FHIR R4,
webhook, DICOM SR) behind one :class:`Sender` protocol, and the dispatcher loop that takes each
destination's due deliveries in order. ``radtriage`` builds every sender's config from settings.
"""

from worker.deliveries.notice import Notice, Outcome, Sender

__all__ = ["Notice", "Outcome", "Sender"]
