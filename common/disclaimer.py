"""The notice that goes with every AI draft, wherever it is shown or sent."""

# Shown above every draft a human reads (worklist, API, SR, destinations); never removed.
DISCLAIMER = (
    "UNVERIFIED AI DRAFT - for research use only. Generated automatically, not reviewed "
    "by a radiologist; not a diagnosis."
)
