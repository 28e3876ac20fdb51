"""A programmatic "simulated labeller" for TL;DR summaries (stdlib only).

It plays the part of Stiennon et al.'s human labellers for the
`summarize-from-feedback` recipe: a gold judge that orders the built-in
comparison pairs and tells, in evaluation, whether PPO made summaries better
or only pleased the learned reward model. It reads only text: the prompt
("SUBREDDIT: r/...\\n\\nTITLE: ...\\n\\nPOST: ...\\n\\nTL;DR:", as in TRL's
trl-lib/tldr; any other prompt is taken whole as the post) and the summary.

Words are lower-cased and crudely stemmed ("moved", "moving", "moves" -> "mov")
so that inflections match. ``score_summary`` returns, each documented below:

- ``coverage`` in [0, 1]: share of the post's key words the summary mentions.
  Key words: the 8 content words with the most uses in the post (+1 for being
  in the title), leaving out low-information words (week, help, TIFU...).
- ``hallucination`` in [0, 1]: share of the summary's content words found
  nowhere in the title or post (low-information words are allowed).
- ``length`` in [-0.5, 0]: -0.02 per word beyond ``max_words``.
- ``copying`` in [-1, 0]: -0.05 per word beyond 8 of the longest run of
  words copied verbatim from the post.
- ``repetition`` in [-0.5, 0]: minus the share of repeated word trigrams.
- ``fluency`` in [-0.3, 0]: -0.3 for a "word salad" of six or more words with
  hardly any function words (a list of key words is not a summary).
- ``total`` in [-1, 1]: coverage - 0.7 * hallucination + the four penalties,
  clipped; an empty summary gets -1.

It judges content words, not grammar or truth beyond word overlap: a
simulated labeller, good enough to rank the built-in sample and to catch
the usual ways a policy games a learned reward (rambling, copying,
repeating, making things up).
"""

from __future__ import annotations

import re
from collections import Counter

WORD_RE = re.compile(r"\d+(?:[.,]\d+)*|[a-z0-9]+(?:'[a-z]+)?")
AGE_TAG_RE = re.compile(r"[(\[]?\b\d{1,2}\s?[MFmf]\b[)\]]?")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing don't down during each few for from further had has have having he
    her here hers herself him himself his how i i'd i'll i'm i've if in into is isn't it it's its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that that's the their theirs them themselves then there these they this those
    through to too under until up very was wasn't we were what when where which while who whom why will with
    would you your yours yourself yourselves also anyone anything still even really much got get gets
    getting one two im ive dont cant didnt doesnt wont""".split()
)
# Low-information words: never key words, and a summary may use them without the post doing so.
GENERIC = frozenset(
    """tl dr tldr tifu advice help question post situation thoughts update need want know think feel like
    anyone someone something thing way now today yesterday ago week day time lot last first next every always
    never new""".split()
)
KEY_WORDS = 8
COPY_FREE_WORDS, COPY_PER_WORD, COPY_CAP = 8, 0.05, 1.0
LENGTH_PER_WORD = 0.02
PENALTY_CAP = 0.5
HALLUCINATION_WEIGHT = 0.7
FLUENCY_PENALTY, FLUENCY_MIN_WORDS, FLUENCY_MIN_FUNCTION_SHARE = 0.3, 6, 0.15


def words(text: str) -> list[str]:
    """Lower-cased word tokens (numbers included, a trailing 's dropped)."""
    return [w.removesuffix("'s") for w in WORD_RE.findall(text.lower().replace("\u2019", "'"))]


def stem(word: str) -> str:
    """Crude suffix stripping so inflections match: bikes/bike -> bik, moved/moving -> mov."""
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def content_stems(tokens: list[str]) -> list[str]:
    """Stems of the tokens that are not function words."""
    return [stem(w) for w in tokens if w not in STOPWORDS and len(w) > 1]


def split_prompt(prompt: str) -> tuple[str, str]:
    """(title, post) of a TL;DR prompt; a prompt without ``POST:`` is all post."""
    text = re.sub(r"\s*TL;DR:\s*$", "", prompt.strip())
    title = re.search(r"^TITLE:[ \t]*(.*)$", text, re.M)
    post = re.search(r"^POST:\s*(.*)\Z", text, re.M | re.S)
    title = AGE_TAG_RE.sub(" ", title.group(1)) if title else ""  # "(24F)" says nothing worth summarising
    if post is None:
        body = re.sub(r"^(SUBREDDIT|TITLE):.*$", "", text, flags=re.M)
        return title, re.sub(r"^Article:\s*", "", body.strip())
    return title, post.group(1)


def key_stems(title_tokens: list[str], post_tokens: list[str], k: int = KEY_WORDS) -> list[str]:
    """The post's key content stems: uses in the post, +1 in the title; ties by first use."""
    generic = {stem(w) for w in GENERIC}
    title = [s for s in content_stems(title_tokens) if s not in generic]
    post = [s for s in content_stems(post_tokens) if s not in generic]
    counts = Counter(post)
    for s in set(title):
        counts[s] += 1
    first = {s: i for i, s in reversed(list(enumerate(title + post)))}
    return sorted(counts, key=lambda s: (-counts[s], first[s]))[:k]


def longest_copied_run(summary: list[str], post: list[str]) -> int:
    """Length of the longest run of words the summary shares verbatim with the post."""
    best, previous = 0, [0] * (len(post) + 1)
    for word in summary:
        current = [0] * (len(post) + 1)
        for j, other in enumerate(post, 1):
            if word == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def repeated_share(tokens: list[str], n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def score_summary(prompt: str, summary: str, max_words: int = 40) -> dict[str, float]:
    """Score a summary of a TL;DR prompt; see the module docstring for each part."""
    title, post = split_prompt(prompt)
    title_tokens, post_tokens, tokens = words(title), words(post), words(summary)
    if not tokens:
        return {"coverage": 0.0, "hallucination": 0.0, "length": 0.0, "copying": 0.0, "repetition": 0.0,
                "fluency": 0.0, "total": -1.0}
    keys = key_stems(title_tokens, post_tokens)
    summary_stems = content_stems(tokens)
    source = set(content_stems(title_tokens + post_tokens)) | {stem(w) for w in GENERIC}
    coverage = len(set(keys) & set(summary_stems)) / len(keys) if keys else 0.0
    unsupported = [s for s in summary_stems if s not in source]
    hallucination = len(unsupported) / len(summary_stems) if summary_stems else 0.0
    length = -min(PENALTY_CAP, LENGTH_PER_WORD * max(0, len(tokens) - max_words))
    copying = -min(COPY_CAP, COPY_PER_WORD * max(0, longest_copied_run(tokens, post_tokens) - COPY_FREE_WORDS))
    repetition = -min(PENALTY_CAP, repeated_share(tokens))
    function_share = 1 - len(summary_stems) / len(tokens)
    salad = len(tokens) >= FLUENCY_MIN_WORDS and function_share < FLUENCY_MIN_FUNCTION_SHARE
    fluency = -FLUENCY_PENALTY if salad else 0.0
    total = coverage - HALLUCINATION_WEIGHT * hallucination + length + copying + repetition + fluency
    parts = {"coverage": coverage, "hallucination": hallucination, "length": length, "copying": copying,
             "repetition": repetition, "fluency": fluency}
    return {**{k: round(v, 6) for k, v in parts.items()}, "total": round(max(-1.0, min(1.0, total)), 6)}
