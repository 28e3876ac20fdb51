"""Data sources (``file``, ``hub``, ``builtin``) and the built-in sets in ``builtin_data/``."""
