"""Generate the built-in toy-task datasets in plugins/data/builtin_data/ (deterministic).

Run from anywhere:  python scripts/build_builtin_data.py
Files (JSONL, ASCII, TRL conversational format):
  demos.jsonl        prompt/completion demonstrations (ideal answers) for SFT
  rankings.jsonl     prompt + 4..9 completions ordered best -> worst by annotator total
  prompts.jsonl      PPO training prompts
  prompts_eval.jsonl held-out prompts (balanced over the three families)
  pretrain.jsonl     {"text": ...} plain paragraphs for a PPO-ptx language-modelling loss
No prompt text occurs in more than one file.
"""
import importlib.util
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "plugins" / "data" / "builtin_data"
SEED = 1234
N_DEMOS, N_RANKINGS, N_PROMPTS, N_EVAL, N_PRETRAIN = 400, 250, 200, 60, 300
MAX_BYTES = 200_000
BALANCED = ["arithmetic", "harmful", "unknowable"]  # cycled: one third each


def load_annotator():
    """Import plugins/rewards/annotator.py by path (works without the package installed)."""
    spec = importlib.util.spec_from_file_location("toy_annotator", ROOT / "plugins" / "rewards" / "annotator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


A = load_annotator()


def user(text):
    """Conversational prompt with a single user turn."""
    return [{"role": "user", "content": text}]


def assistant(text):
    """Conversational completion with a single assistant turn."""
    return [{"role": "assistant", "content": text}]


def fresh_prompts(rng, n, used, families=None):
    """n new prompt texts not in `used` (which is updated); families cycles if given."""
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n:
            raise RuntimeError("prompt space exhausted")
        fam = families[len(out) % len(families)] if families else None
        p = A.make_prompt(rng, fam)
        if p not in used:
            used.add(p)
            out.append(p)
    return out


ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
       "sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def words(n):
    """English words for 0 <= n < 1000."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else "")
    rest = n % 100
    return ONES[n // 100] + " hundred" + (" and " + words(rest) if rest else "")


MATH_FACTS = ("{A} plus {B} is {C}.", "If you add {A} and {B}, you get {C}.", "{a} + {b} = {c}.",
              "The sum of {a} and {b} is {c}.")
MATH_SUB = ("{A} minus {B} is {C}.", "If you take {B} away from {A}, {C} is left.", "{a} - {b} = {c}.")
MATH_MUL = ("{A} times {B} is {C}.", "{a} groups of {b} make {c}.", "{a} x {b} = {c}.")
POLITE = ("A kind answer is short, clear and friendly.", "When you do not know something, it is best to say so.",
          "Nobody can read another person's mind.", "Nobody knows for sure what prices will do next week.",
          "It is wrong to take things that belong to other people.", "Being polite costs nothing.",
          "A good helper says no to requests that could hurt someone.", "Thank you for asking so nicely.",
          "If a question has a clear answer, give it first.", "Honest people admit when they are unsure.",
          "Please and thank you are small words that matter.", "Rude words make a conversation worse.",
          "It is fine to say that you cannot help with something harmful.", "Good manners make people feel safe.",
          "A guess is not the same as a fact.", "Cheating on a test only hurts your own learning.",
          "Talking calmly is better than sending a cruel message.", "Practice makes arithmetic easy.")
TOPICS = ("Small numbers are easy to add in your head.", "Counting is one of the first things children learn.",
          "Arithmetic is the study of adding, subtracting and multiplying numbers.",
          "A polite conversation is a pleasure for everyone.", "Simple answers are often the best answers.")


def math_sentence(rng):
    """One arithmetic fact, written with words or digits."""
    op = rng.choice("+-*")
    if op == "*":
        a, b, tpl = rng.randint(2, 9), rng.randint(2, 12), MATH_MUL
    else:
        a, b = sorted((rng.randint(1, 60), rng.randint(1, 60)), reverse=True)
        tpl = MATH_FACTS if op == "+" else MATH_SUB
    c = {"+": a + b, "-": a - b, "*": a * b}[op]
    s = rng.choice(tpl).format(a=a, b=b, c=c, A=words(a), B=words(b), C=words(c))
    return s[0].upper() + s[1:]


def pretrain_rows(rng, n):
    """n distinct short paragraphs mixing arithmetic facts and polite-conversation sentences."""
    rows, seen = [], set()
    while len(rows) < n:
        kind = rng.random()
        if kind < 0.4:
            parts = [rng.choice(TOPICS)] + [math_sentence(rng) for _ in range(rng.randint(2, 3))]
        elif kind < 0.7:
            parts = [rng.choice(TOPICS)] + rng.sample(POLITE, rng.randint(2, 3))
        else:
            parts = rng.sample(POLITE, 2) + [math_sentence(rng)]
        text = " ".join(parts)
        if text not in seen:
            seen.add(text)
            rows.append({"text": text})
    return rows


def ranking_row(rng, prompt):
    """A prompt with K in 4..9 sampled answers, best -> worst, totals strictly decreasing."""
    answers = A.rank_answers(prompt, A.sample_answers(prompt, rng, rng.randint(4, 9)))
    totals = [A.score_answer(prompt, a)["total"] for a in answers]
    assert all(x > y for x, y in zip(totals, totals[1:])), (prompt, totals)
    return {"prompt": user(prompt), "completions": [assistant(a) for a in answers]}


def write_jsonl(name, rows):
    """Write rows as ASCII JSONL; return the byte size."""
    path = OUT_DIR / name
    text = "".join(json.dumps(r, ensure_ascii=True, separators=(",", ":")) + "\n" for r in rows)
    path.write_text(text, encoding="ascii")
    size = path.stat().st_size
    assert size < MAX_BYTES, f"{name} is {size} bytes"
    return size


def main():
    """Build every file and print row counts."""
    rng, used = random.Random(SEED), set()
    eval_prompts = fresh_prompts(rng, N_EVAL, used, BALANCED)
    demo_prompts = fresh_prompts(rng, N_DEMOS, used)
    # Rankings and PPO prompts cover the three families equally, like the held-out prompts: an RM this size
    # cannot check sums, so a 60 % arithmetic mix spent most of its pairs where it learns least.
    rank_prompts = fresh_prompts(rng, N_RANKINGS, used, BALANCED)
    ppo_prompts = fresh_prompts(rng, N_PROMPTS, used, BALANCED)
    files = {
        "demos.jsonl": [{"prompt": user(p), "completion": assistant(A.ideal_answer(p, rng))} for p in demo_prompts],
        "rankings.jsonl": [ranking_row(rng, p) for p in rank_prompts],
        "prompts.jsonl": [{"prompt": user(p)} for p in ppo_prompts],
        "prompts_eval.jsonl": [{"prompt": user(p)} for p in eval_prompts],
        "pretrain.jsonl": pretrain_rows(rng, N_PRETRAIN),
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        size = write_jsonl(name, rows)
        print(f"{name:20s} {len(rows):4d} rows {size / 1000:6.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
