"""``rlhf-plug label --web``: the same labelling session as the terminal, as a page for a team.

The answers come from the same sampler (or a ``--candidates`` file) and go to
the same rankings file through the same store; :mod:`.desk` holds what the
requests share and :mod:`.app` is the thin Starlette layer. Starlette, Jinja2,
uvicorn and python-multipart are the ``web`` extra; nothing here imports them
until the page is served.
"""

from __future__ import annotations

import importlib.util

from rlhf_plug.errors import UserError

#: import name -> the package the ``web`` extra installs.
WEB_PACKAGES = {"starlette": "starlette", "jinja2": "jinja2", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}


def require_web_extra() -> None:
    """A one-line error naming the extra when a package of the ``web`` extra is missing."""
    missing = []
    for module, package in WEB_PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules (how tests hide one)
            found = False
        if not found:
            missing.append(package)
    if missing:
        raise UserError(f"--web needs {', '.join(missing)}: pip install \"rlhf-plug[web]\"")
