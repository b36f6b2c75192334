"""The DICOM side: the C-STORE listener and its intake, durable storage, the header and pixel
readers the workers use, the DICOM SR of a draft and the one SCU that sends it.

pynetdicom's internals are used only behind ``dicom.netseam``.
"""

__all__ = [
    "acceptance", "access", "errors", "identity", "intake", "listener", "netseam", "order", "pixels", "render", "scu",
    "selection", "sr", "status", "storage", "views",
]
