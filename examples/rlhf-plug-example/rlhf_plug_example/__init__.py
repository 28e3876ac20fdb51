"""An example rlhf-plug plugin: a tiny jokes dataset and a politeness reward.

Installed, it is found through the ``rlhf_plug`` entry point (plugin name
``example``); otherwise load it with ``rlhf-plug -p rlhf_plug_example`` or a
recipe's ``plugins: [rlhf_plug_example]``.

It uses only the public API (``hookimpl``, ``DataError``) and imports
``datasets`` inside ``load()``, so ``rlhf-plug plugins`` stays fast.
"""

from __future__ import annotations

import re
from typing import Literal

from rlhf_plug import DataError, hookimpl

__version__ = "0.1.0"

# (topic, joke). The jokes contain no politeness markers and no rude words,
# so the three answers built from each differ only in tone.
JOKES: list[tuple[str, str]] = [
    ("cats", "Why did the cat sit on the computer? To keep an eye on the mouse."),
    ("dogs", "Why did the dog sit in the shade? It did not want to be a hot dog."),
    ("fish", "What do you call a fish with no eyes? A fsh."),
    ("cows", "Where do cows go on a night out? To the moo-vies."),
    ("bees", "Why do bees have sticky hair? They use honeycombs."),
    ("owls", "What do owls study at school? Owl-gebra."),
    ("ducks", "What does a duck say after a joke? That was quackers."),
    ("frogs", "What is a frog's favourite drink? Croak-a-cola."),
    ("sheep", "Where do sheep get a haircut? At the baa-baa shop."),
    ("horses", "Why was the horse so chatty? It kept stirrup-ing conversation."),
    ("bananas", "Why did the banana go to the doctor? It was not peeling well."),
    ("apples", "Why did the apple stop in the middle of the road? It ran out of juice."),
    ("cheese", "What do you call cheese that is not yours? Nacho cheese."),
    ("bread", "Why did the loaf of bread break up? It felt kneaded too much."),
    ("eggs", "Why did the egg hide? It was a little chicken."),
    ("pizza", "Why did the pizza maker go broke? He just could not make enough dough."),
    ("coffee", "Why did the coffee file a police report? It got mugged."),
    ("tea", "Why did the tea bag look worried? It was in hot water."),
    ("math", "Why was the maths book sad? It had too many problems."),
    ("physics", "Why can you never trust an atom? They make up everything."),
    ("chemistry", "What did one ion say to the other? I have my ions on you."),
    ("history", "Why were the early days of history called the dark ages? Too many knights."),
    ("geography", "What is the fastest country in the world? Rush-a."),
    ("music", "Why did the piano get locked out? It lost its keys."),
    ("painting", "Why did the painter go to jail? He was framed."),
    ("books", "Why did the book join the police? It wanted to go undercover."),
    ("computers", "Why did the computer go to the doctor? It had a virus."),
    ("programmers", "Why do programmers prefer dark mode? Light attracts bugs."),
    ("robots", "Why did the robot go on holiday? It needed to recharge its batteries."),
    ("space", "How do you organise a party in space? You planet."),
    ("the moon", "Why did the moon skip dinner? It was already full."),
    ("the sun", "Why did the sun go to school? To get brighter."),
    ("weather", "What did one cloud say to the other? Let us go for a drizzle."),
    ("snowmen", "What do snowmen eat for breakfast? Frosted flakes."),
    ("trains", "Why was the train late? It had a one-track mind."),
    ("bicycles", "Why did the bicycle fall over? It was two tired."),
    ("football", "Why did the football coach go to the bank? To get his quarterback."),
    ("gardening", "What did the big flower say to the small one? Hi, bud."),
    ("the ocean", "What did the ocean say to the beach? Nothing, it just waved."),
    ("skeletons", "Why did the skeleton stay home? It had no body to go with."),
]

PROMPT = "Tell me a joke about {topic}."
POLITE = "Of course, happy to help! {joke} Thank you for asking."
PLAIN = "{joke}"
RUDE = "Ugh, what a stupid request. {joke} Now shut up."


class ExampleJokes:
    """40 joke requests: rankings (polite > plain > rude) or demos (polite answers)."""

    def __init__(self, kind: Literal["demos", "rankings"] = "rankings", topics: list[str] | None = None):
        known = [topic for topic, _ in JOKES]
        unknown = [t for t in topics or [] if t not in known]
        if unknown:
            raise DataError(f"example_jokes: unknown topic '{unknown[0]}'; topics are: {', '.join(known)}")
        self.kind = kind
        self.topics = topics

    def describe(self) -> str:
        return f"example_jokes[{self.kind}]"

    def rows(self) -> list[dict]:
        rows = []
        for topic, joke in JOKES:
            if self.topics is not None and topic not in self.topics:
                continue
            prompt = PROMPT.format(topic=topic)
            polite, plain, rude = (t.format(joke=joke) for t in (POLITE, PLAIN, RUDE))
            if self.kind == "demos":
                rows.append({"prompt": prompt, "completion": polite})
            else:
                rows.append({"prompt": prompt, "completions": [polite, plain, rude]})  # best first
        return rows

    def load(self):
        from datasets import Dataset  # heavy import inside load(), not at module top

        return Dataset.from_list(self.rows())


POLITE_WORDS = ("please", "thank you", "thanks")
RUDE_WORDS = ("stupid", "idiot", "dumb", "shut up", "ugh", "whatever")


def _pattern(words) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


def _text(completion) -> str:
    """A completion's text: a string, or the contents of a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, list):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in completion)
    return "" if completion is None else str(completion)


class ExamplePoliteness:
    """+polite per 'please'/'thank you'/'thanks', −rude per rude word, in the completion."""

    def __init__(self, polite: float = 1.0, rude: float = 1.0, extra_rude_words: tuple[str, ...] = ()):
        self.polite = polite
        self.rude = rude
        self._polite = _pattern(POLITE_WORDS)
        self._rude = _pattern((*RUDE_WORDS, *extra_rude_words))
        self.__name__ = "example_politeness"  # TRL logs reward functions by __name__

    def score(self, text: str) -> float:
        return self.polite * len(self._polite.findall(text)) - self.rude * len(self._rude.findall(text))

    def __call__(self, prompts, completions, **columns) -> list[float]:
        return [self.score(_text(c)) for c in completions]


@hookimpl
def rlhf_register_data_sources(register):
    register("example_jokes", ExampleJokes)


@hookimpl
def rlhf_register_reward_functions(register):
    register("example_politeness", ExamplePoliteness)
