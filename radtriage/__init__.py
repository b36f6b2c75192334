"""radtriage: chest X-ray worklist triage daemon (research use only, not a diagnosis)."""

__all__ = ["__version__"]
__version__ = "0.1.0"
