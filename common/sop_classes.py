"""The storage SOP classes radtriage takes in: radiographs, and secondary captures of them."""

from __future__ import annotations

CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"  # Digital X-Ray Image Storage - For Processing
# Secondary capture is how many archives (and public chest sets) carry radiographs; an image
# of it is scored only when its Modality says CR or DX.
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

RADIOGRAPH_SOP_CLASSES = frozenset({CR_IMAGE, DX_FOR_PRESENTATION, DX_FOR_PROCESSING})
# The listener's default: negotiated in this order, every other storage class refused.
ACCEPTED_SOP_CLASSES = (CR_IMAGE, DX_FOR_PRESENTATION, DX_FOR_PROCESSING, SECONDARY_CAPTURE)
