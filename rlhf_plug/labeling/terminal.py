"""The person's side: the prompt and K numbered completions as rich panels, then a ranking typed in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlhf_plug.labeling.keystrokes import QUIT, BadKeys, Decision, parse_ranking, usage
from rlhf_plug.labeling.sampling import Samples


def message_text(value: Any) -> str:
    """Text of a completion or prompt: a string, or the contents of a list of messages."""
    if isinstance(value, list):
        if len(value) == 1:
            return value[0]["content"]
        return "\n".join(f"{m['role']}: {m['content']}" for m in value)
    return value


class HumanRanker:
    """Shows one prompt with its completions and reads a full ranking (re-asking after bad input)."""

    def __init__(self, console, read: Callable[[str], str] | None = None):
        self.console = console
        self.read = read or console.input

    def rank(self, prompt: Any, samples: Samples, progress: str) -> Decision:
        self.show(prompt, samples, progress)
        k = len(samples.completions)
        self.console.print(f"[dim]{usage(k)}[/]", soft_wrap=True)
        while True:
            try:
                typed = self.read("ranking> ")
            except EOFError:
                return QUIT
            try:
                return parse_ranking(typed, k)
            except BadKeys as exc:
                self.console.print(f"[red]not a ranking:[/] {exc}; {usage(k)}", soft_wrap=True)

    def show(self, prompt: Any, samples: Samples, progress: str) -> None:
        from rich.panel import Panel
        from rich.text import Text

        self.console.print()
        self.console.print(Panel(Text(message_text(prompt)), title=f"Prompt {progress}", title_align="left", style="bold"))
        texts = [message_text(c) for c in samples.completions]
        for i, text in enumerate(texts):
            notes = []
            if text in texts[:i]:
                notes.append(f"same as {texts.index(text) + 1}")
            if not samples.finished[i]:
                notes.append("cut off at --max-new-tokens")
            body = Text(text) if text else Text("(empty)", style="dim")
            self.console.print(Panel(body, title=f"[bold cyan]{i + 1}[/]", title_align="left", subtitle=", ".join(notes) or None))
