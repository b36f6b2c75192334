"""Loaded by Python at start-up when this folder is on PYTHONPATH: makes the machine-learning
libraries impossible to import, as on an install of the daemon without the ``ml`` extra."""

import importlib.abc
import sys

BLOCKED = {"torch", "tensorflow", "transformers", "huggingface_hub", "tensorflow_text", "keras"}


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: daemon-only install)")
        return None


sys.meta_path.insert(0, _Block())
