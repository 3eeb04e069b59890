"""Shared code of the LLM course: setup, corpus, plots, the test contract's check helpers."""
from .student.corpus import CorpusMissing, list_works, load_corpus
from .student.env import Setup, pick_device, resolve_profile, seed_everything, setup_notebook

__version__ = "0.1.0"
__all__ = ["Setup", "pick_device", "resolve_profile", "seed_everything", "setup_notebook",
           "CorpusMissing", "list_works", "load_corpus", "__version__"]
