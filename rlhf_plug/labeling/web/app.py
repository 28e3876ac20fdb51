"""The Starlette app: one page per annotator (their private link), and the forms it posts.

``/label/TOKEN`` shows the annotator's next prompt; ``/submit``, ``/skip`` and
``/undo`` under it change the files through :class:`~.desk.Desk` (in a worker
thread: appends are fsynced) and redirect back. Anything without a known token
is 403. A form that does not pass :mod:`.forms` is shown again with its values
and the message, status 400, and nothing is written. Templates autoescape:
prompts and answers are untrusted text. The page loads only its own files
(a Content-Security-Policy forbids anything else, inline scripts included).
"""

from __future__ import annotations

from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from rlhf_plug.labeling.terminal import message_text
from rlhf_plug.labeling.web.desk import Desk
from rlhf_plug.labeling.web.forms import FLAGS, FormError, parse_item, parse_submission

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",  # the link is the password: never send it elsewhere
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
NOTES = {
    "saved": "Saved. Here is your next prompt.",
    "skipped": "Skipped. Here is your next prompt.",
    "undone": "Your last submission was taken back; here it is again.",
}


def build_app(desk: Desk, allowed_hosts: list[str] | None = None) -> Starlette:
    """The app; with ``allowed_hosts``, a request whose ``Host`` header names another host gets 400
    (Starlette's ``TrustedHostMiddleware``: a DNS-rebinding page cannot talk to a local server)."""
    pages = Pages(desk)
    routes = [
        Route("/", pages.forbidden),
        Route("/label/{token}", pages.show),
        Route("/label/{token}/submit", pages.submit, methods=["POST"]),
        Route("/label/{token}/skip", pages.skip, methods=["POST"]),
        Route("/label/{token}/undo", pages.undo, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("rlhf_plug.labeling.web", "static")]), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)


class Pages:
    """The endpoints. Work that touches files or may wait for the model runs in a worker thread."""

    def __init__(self, desk: Desk):
        self.desk = desk
        env = jinja2.Environment(loader=jinja2.PackageLoader("rlhf_plug.labeling.web", "templates"), autoescape=True)
        self.templates = Jinja2Templates(env=env)

    def render(self, request: Request, name: str, context: dict, status: int = 200) -> Response:
        return self.templates.TemplateResponse(request, name, context, status_code=status, headers=HEADERS)

    async def forbidden(self, request: Request) -> Response:
        return self.render(request, "forbidden.html", {}, 403)

    async def show(self, request: Request) -> Response:
        annotator = self.desk.team.who(request.path_params["token"])
        if annotator is None:
            return await self.forbidden(request)
        return await run_in_threadpool(self.page, request, annotator)  # may wait for the model to sample

    async def submit(self, request: Request) -> Response:
        return await self.post(request, self._submit, "saved")

    async def skip(self, request: Request) -> Response:
        return await self.post(request, lambda annotator, form: self.desk.skip(annotator, parse_item(form)), "skipped")

    async def undo(self, request: Request) -> Response:
        annotator = self.desk.team.who(request.path_params["token"])
        if annotator is None:
            return await self.forbidden(request)
        item = await run_in_threadpool(self.desk.undo, annotator)
        return _back(request, "undone" if item is not None else "")

    async def post(self, request: Request, action, note: str) -> Response:
        """Check the token, run ``action(annotator, form)``; the next page, or this one again with the reason."""
        annotator = self.desk.team.who(request.path_params["token"])
        if annotator is None:
            return await self.forbidden(request)
        form = await request.form()
        try:
            await run_in_threadpool(action, annotator, form)
        except FormError as exc:
            return await run_in_threadpool(self.page, request, annotator, str(exc), sent_values(form))
        return _back(request, note)

    def _submit(self, annotator: str, form) -> None:
        item = parse_item(form)
        if item not in self.desk.queues[annotator]:
            raise FormError(f"prompt {item + 1} is not one of yours; reload the page")
        k = len(self.desk.bank.get(item).completions)
        self.desk.submit(annotator, parse_submission(form, k, self.desk.criteria))

    def page(self, request: Request, annotator: str, error: str | None = None, sent: dict | None = None) -> Response:
        """The annotator's next prompt (or the done page), with ``error`` and the refused form's values."""
        desk, status = self.desk, 400 if error else 200
        context = {"annotator": annotator, "token": request.path_params["token"], "error": error,
                   "note": NOTES.get(request.query_params.get("note", "")), "progress": desk.progress(annotator),
                   "team": {n: desk.progress(n) for n in desk.team.names}, "can_undo": bool(desk.history[annotator])}
        item = desk.current(annotator)
        if item is None:
            return self.render(request, "done.html", context, status)
        context.update(item_view(desk, item, desk.bank.get(item)), criteria=desk.criteria, flags=FLAGS,
                       sent=sent if sent and sent.get("item") == str(item) else {})
        return self.render(request, "item.html", context, status)


def _back(request: Request, note: str = "") -> Response:
    url = f"/label/{request.path_params['token']}" + (f"?note={note}" if note else "")
    return RedirectResponse(url, status_code=303)


def item_view(desk: Desk, item: int, samples) -> dict[str, Any]:
    """What the item page shows: the prompt's messages and the numbered answers with notes."""
    prompt = desk.bank.prompts[item]
    messages = [(m["role"], m["content"]) for m in prompt] if isinstance(prompt, list) else [("", prompt)]
    texts = [message_text(c) for c in samples.completions]
    answers = []
    for i, text in enumerate(texts):
        notes = [f"same as answer {texts.index(text) + 1}"] if text in texts[:i] else []
        notes += [] if samples.finished[i] else ["cut off at the length limit"]
        answers.append({"n": i + 1, "text": text, "notes": notes})
    return {"item": item, "messages": messages, "answers": answers}


def sent_values(form) -> dict[str, Any]:
    """The fields of a refused form, to fill the page in again."""
    return {"item": form.get("item"), "order": form.get("order", ""), "comment": form.get("comment", ""),
            "ratings": {k: v for k, v in form.items() if k.startswith("rating.")},
            "flags": {f"{k}={v}" for k, v in form.multi_items() if k.startswith("flag.")}}
