"""Generate the built-in TL;DR sample in plugins/data/builtin_data/ (deterministic).

Run from anywhere:  python scripts/build_tldr_sample.py

The summarize-from-feedback recipe reads TRL's trl-lib/tldr and
trl-lib/tldr-preference from the Hub; offline it falls back to these files,
written for this project (made-up Reddit-style posts, nothing from the real
dataset) in the same text format, so both paths feed identical code:

  tldr_demos.jsonl         prompt/completion: a post and its reference TL;DR (SFT)
  tldr_comparisons.jsonl   prompt/chosen/rejected: two summaries of a post, the one
                           summary_judge scores higher (by a margin) is chosen (RM)
  tldr_prompts.jsonl       prompt only (PPO)
  tldr_prompts_eval.jsonl  held-out prompts (PPO evaluation)

A prompt is "SUBREDDIT: r/...\\n\\nTITLE: ...\\n\\nPOST: ...\\n\\nTL;DR:" and a
summary " text" (leading space), as in trl-lib/tldr. No post occurs in more
than one file.
"""
import importlib.util
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "plugins" / "data" / "builtin_data"
SEED = 2020
N_DEMOS, N_COMPARISON_POSTS, PAIRS_PER_POST, N_PROMPTS, N_EVAL = 80, 36, 2, 48, 24
MARGIN = 0.15  # chosen must beat rejected by this much under summary_judge
MAX_TOTAL_BYTES = 200_000


def load_judge():
    """Import plugins/rewards/summary_judge.py by path (works without the package installed)."""
    spec = importlib.util.spec_from_file_location("summary_judge", ROOT / "plugins" / "rewards" / "summary_judge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


J = load_judge()

# Each family: subreddit, title and post templates (sentences; [optional] ones are
# kept at random), reference TL;DR templates and its own slot values.
FAMILIES = [
    {
        "sub": "relationships",
        "titles": [
            "My ({age}{sex}) roommate keeps eating my food",
            "Roommate ({rage}) eats my groceries, how do I bring it up?",
        ],
        "post": [
            "I have lived with my roommate {rname} for {months} months.",
            "Every week my {food} disappears from the fridge.",
            "[I label everything and keep the receipts.]",
            "When I asked {rname} about it, {rname} laughed and said it was just {food}.",
            "[Last week I spent {money} dollars on groceries and had nothing left by Friday.]",
            "I don't want a big fight because we still share the lease until {month}.",
            "How do I get {rname} to stop without ruining things?",
        ],
        "tldrs": [
            "My {food} disappears from the fridge every week and roommate {rname} laughed when I asked. How do I get {rname} to stop "
            "without a big fight?",
            "Roommate {rname} laughed when I asked about my {food} disappearing. How do I get it to stop while we still share the "
            "lease?",
        ],
        "slots": {
            "rname": ["Jake", "Mia", "Tom", "Priya", "Sam", "Lena"],
            "food": ["yogurt", "leftovers", "cheese", "cereal", "pasta"],
            "month": ["June", "August", "December", "March"],
        },
    },
    {
        "sub": "personalfinance",
        "titles": [
            "Pay off my credit card or build an emergency fund first?",
            "{age}{sex} with {debt} dollars of card debt and no savings",
        ],
        "post": [
            "I am {age} and just started a job that pays {salary} a year.",
            "I have {debt} dollars of credit card debt at {apr} percent interest.",
            "I have almost no savings, maybe {money} dollars in checking.",
            "[My car is old and could break down any month.]",
            "My dad says to pay off the card first, but a coworker says to save three months of expenses.",
            "Which should come first?",
        ],
        "tldrs": [
            "I have {debt} dollars of credit card debt at {apr} percent and almost no savings. Pay off the card first or save three "
            "months of expenses?",
            "Just started a job with {debt} dollars of card debt and almost no savings. Dad says pay off the card, a coworker says "
            "save. Which first?",
        ],
        "slots": {
            "debt": ["3,000", "4,500", "6,200", "8,000", "2,400"],
            "apr": ["19", "22", "24", "27"],
            "salary": ["38,000", "45,000", "52,000", "61,000"],
        },
    },
    {
        "sub": "dogs",
        "titles": [
            "My {breed} barks all day when I leave for work",
            "Neighbours complaining about my {breed} barking",
        ],
        "post": [
            "We adopted a {breed} named {pet} about {months} months ago.",
            "{pet} is calm when we are home, but barks for hours when we leave.",
            "[A neighbour left a note on our door about the noise.]",
            "We tried leaving the radio on and giving {pet} a puzzle toy.",
            "[A walk before work helps a little, but not much.]",
            "We cannot afford a trainer right now.",
            "How can we help {pet} feel okay when we are gone?",
        ],
        "tldrs": [
            "Our {breed} {pet} barks for hours when we leave; a radio and a puzzle toy did not help and we cannot afford a trainer. "
            "How can we help {pet}?",
            "Adopted {breed} is calm when we are home but barks for hours when we leave, even with the radio on. How can we help "
            "{pet} feel okay?",
        ],
        "slots": {
            "breed": ["beagle", "husky", "terrier", "collie", "corgi"],
            "pet": ["Milo", "Bella", "Rocky", "Luna", "Pepper"],
        },
    },
    {
        "sub": "running",
        "titles": [
            "Knee pain {weeks} weeks before my first {race}",
            "Should I keep training with a sore knee?",
        ],
        "post": [
            "My first {race} is in {weeks} weeks.",
            "I raised my weekly distance from {km} to {km2} kilometres this month.",
            "Now the outside of my left knee hurts after about five kilometres.",
            "[It feels fine when I walk or ride my bike.]",
            "[I bought new shoes in {month}, so they are not worn out.]",
            "I don't want to lose my fitness, but I am scared of a real injury.",
            "Should I rest, see a physio, or run through it?",
        ],
        "tldrs": [
            "My left knee hurts after five kilometres since I raised my weekly distance, and my first {race} is in {weeks} weeks. "
            "Rest or see a physio?",
            "Knee hurts since I raised my weekly distance to {km2} kilometres, first {race} in {weeks} weeks. Should I rest or run "
            "through it?",
        ],
        "slots": {
            "race": ["marathon", "half marathon", "10k race"],
            "weeks": ["three", "four", "five", "six"],
            "km": ["20", "25", "30"],
            "km2": ["40", "45", "50"],
            "month": ["April", "May", "January"],
        },
    },
    {
        "sub": "careerguidance",
        "titles": [
            "Higher pay but a {commute} minute commute, is it worth it?",
            "Job offer dilemma ({age}{sex})",
        ],
        "post": [
            "I work as a {job} and I like my team.",
            "Another company offered me {raise} percent more money.",
            "The catch is that the new office is a {commute} minute drive each way.",
            "[Right now I walk to work in ten minutes.]",
            "[My manager hinted that a promotion might come next year, but nothing is promised.]",
            "I have to answer the offer by {day}.",
            "How do I decide?",
        ],
        "tldrs": [
            "Another company offered me {raise} percent more money, but the office is a {commute} minute drive each way and I like "
            "my team. How do I decide?",
            "Offer of {raise} percent more money as a {job}, but the new office is a {commute} minute drive each way. I have to "
            "answer by {day}.",
        ],
        "slots": {
            "job": ["nurse", "designer", "accountant", "developer", "teacher"],
            "raise": ["15", "20", "25", "30"],
            "commute": ["50", "60", "70", "80"],
            "day": ["Monday", "Friday", "Thursday"],
        },
    },
    {
        "sub": "Breadit",
        "titles": [
            "Why won't my {bread} rise?",
            "Third flat {bread} in a row, help",
        ],
        "post": [
            "I have been baking {bread} every weekend for {months} months.",
            "The last three loaves came out flat and dense.",
            "I use the same recipe with {flour} flour and instant yeast.",
            "[My kitchen got colder since we stopped running the heater.]",
            "[The yeast packet says it expires in {month}.]",
            "The dough barely grows during the first rise.",
            "What am I doing wrong?",
        ],
        "tldrs": [
            "My {bread} came out flat and dense three times with the same recipe, and the dough barely grows in the first rise. What "
            "am I doing wrong?",
            "Last three loaves of {bread} came out flat and dense with the same recipe and yeast, and the dough barely grows. Why?",
        ],
        "slots": {
            "bread": ["sandwich bread", "focaccia", "brioche", "rye bread"],
            "flour": ["bread", "whole wheat", "plain"],
            "month": ["October", "November", "July"],
        },
    },
    {
        "sub": "tifu",
        "titles": [
            "TIFU by sending a message about my {boss} to my {boss}",
            "TIFU with one wrong tap in the group chat",
        ],
        "post": [
            "This happened {when}.",
            "I was complaining to my friend {fname} that my {boss} takes credit for my work.",
            "I typed a long angry message and hit send.",
            "Then I saw it went to the chat that includes my {boss}.",
            "[I tried to delete it, but the app shows a note that a message was deleted.]",
            "My {boss} has not said anything yet and we have a meeting {day}.",
            "Should I apologise first or wait?",
        ],
        "tldrs": [
            "My angry message about my {boss} taking credit for my work went to the chat that includes my {boss}. Apologise first or "
            "wait for our meeting?",
            "Complaining to {fname} that my {boss} takes credit for my work, my message went to a chat with my {boss}. Should I "
            "apologise first?",
        ],
        "slots": {
            "boss": ["boss", "manager", "supervisor", "team lead"],
            "fname": ["Ana", "Chris", "Dev", "Kate", "Omar"],
            "when": ["this morning", "last night", "an hour ago"],
            "day": ["tomorrow", "on Monday", "this afternoon"],
        },
    },
    {
        "sub": "gardening",
        "titles": [
            "Yellow leaves on my {plant} plants",
            "What is wrong with my {plant}?",
        ],
        "post": [
            "I planted {count} {plant} plants in raised beds in {month}.",
            "For two weeks the lower leaves have been turning yellow with brown spots.",
            "I water every morning and the soil always feels wet.",
            "[We had a lot of rain this month too.]",
            "[The plants next to them look healthy.]",
            "I used compost but no other fertiliser.",
            "Is this overwatering, a disease, or something missing?",
        ],
        "tldrs": [
            "Lower leaves of my {plant} plants are turning yellow with brown spots, and I water each morning so the soil is wet. "
            "Overwatering or a disease?",
            "My {plant} plants in raised beds have yellow leaves with brown spots and wet soil. Is it overwatering or a disease?",
        ],
        "slots": {
            "plant": ["tomato", "pepper", "cucumber", "zucchini"],
            "count": ["four", "six", "eight", "ten"],
            "month": ["May", "April", "June"],
        },
    },
    {
        "sub": "college",
        "titles": [
            "Failing {course} and scared to tell my parents",
            "{age}{sex}, failing a class for the first time",
        ],
        "post": [
            "I am in my {year} year and I have always had good grades.",
            "This term I am failing {course} after two bad exams.",
            "[I work {hours} hours a week at a cafe to pay rent.]",
            "My parents pay part of my tuition and expect me to do well.",
            "The last day to drop the class is {day}.",
            "I don't know if I should drop it, talk to the professor, or tell my parents first.",
            "What would you do?",
        ],
        "tldrs": [
            "Failing {course} after two bad exams and my parents pay part of my tuition. Drop the class by {day}, talk to the "
            "professor, or tell my parents?",
            "Always had good grades but now I am failing {course}. Should I drop it, talk to the professor, or tell my parents first?",
        ],
        "slots": {
            "course": ["statistics", "organic chemistry", "physics", "calculus"],
            "year": ["second", "third", "first"],
            "hours": ["15", "20", "25"],
            "day": ["Friday", "next week", "Wednesday"],
        },
    },
    {
        "sub": "Renters",
        "titles": [
            "Landlord won't fix the {thing} for {weeks} weeks",
            "Broken {thing} and a landlord who does nothing",
        ],
        "post": [
            "The {thing} in my apartment broke {weeks} weeks ago.",
            "I emailed my landlord three times and called twice.",
            "Each time he says someone will come, but nobody does.",
            "[I have a small baby and it is getting hard.]",
            "[My rent of {money} dollars is always paid on time.]",
            "A friend said I could withhold rent, but I don't want to be evicted.",
            "What are my options?",
        ],
        "tldrs": [
            "The {thing} in my apartment broke {weeks} weeks ago and my landlord says someone will come, but nobody does. What are "
            "my options?",
            "Emailed and called my landlord about the {thing} that broke {weeks} weeks ago. Can I withhold rent without being evicted?",
        ],
        "slots": {
            "thing": ["heater", "fridge", "shower", "washing machine"],
            "weeks": ["two", "three", "four", "five"],
        },
    },
    {
        "sub": "travel",
        "titles": [
            "Lost my passport in {city} two days before my flight",
            "Passport gone, flight home on {day}",
        ],
        "post": [
            "I am travelling alone in {city} and my flight home is on {day}.",
            "Yesterday I noticed my passport was not in my bag.",
            "I think it fell out on the train from the airport.",
            "I still have my phone, cards and a photo of the passport.",
            "[The hotel staff called the station, but nobody found it.]",
            "I have never dealt with an embassy before.",
            "What should I do first?",
        ],
        "tldrs": [
            "My passport fell out on the train from the airport in {city} and my flight home is on {day}. I have a photo of it; what "
            "should I do first?",
            "Travelling alone in {city}, my passport is not in my bag and my flight home is on {day}. Never dealt with an embassy; "
            "what first?",
        ],
        "slots": {
            "city": ["Lisbon", "Prague", "Osaka", "Madrid", "Vienna"],
            "day": ["Sunday", "Tuesday", "Saturday"],
        },
    },
    {
        "sub": "relationship_advice",
        "titles": [
            "My partner ({page}) games every night and I feel ignored",
            "Partner spends every evening on video games",
        ],
        "post": [
            "My partner {pname} and I have been together for {years} years.",
            "Since {pname} bought a new console, {pname} plays every night until midnight.",
            "We used to cook dinner together and watch shows.",
            "[Last weekend I asked to go for a walk and got a maybe later.]",
            "I don't mind games, I just miss time together.",
            "When I bring it up {pname} says I am overreacting.",
            "How do I talk about this without it turning into a fight?",
        ],
        "tldrs": [
            "Since {pname} bought a new console, {pname} plays every night until midnight and says I am overreacting when I bring it "
            "up. How do I talk about it?",
            "My partner of {years} years plays games every night until midnight and I miss our time together. How do I talk about "
            "this without a fight?",
        ],
        "slots": {
            "pname": ["Alex", "Jordan", "Ben", "Nina", "Rosa"],
            "years": ["two", "three", "four", "five"],
        },
    },
]
COMMON = {"age": [str(a) for a in range(19, 36)], "sex": ["M", "F"], "months": ["two", "three", "four", "six", "eight"],
          "money": ["60", "80", "120", "150", "900", "1,200"], "month": ["June", "March", "September"],
          "day": ["Monday", "Friday"], "weeks": ["two", "three"]}
VAGUE = ["Need some advice about my situation, any thoughts?", "Long story, not sure what to do.",
         "Things are complicated right now and I need help.", "Read the post, I need advice."]
INVENTED = ["and the police got involved", "after my sister moved to Canada", "and now my car insurance doubled",
            "while my grandmother was in hospital", "and my laptop was stolen"]
FILLER = ["I have been thinking about this a lot lately and honestly I am not sure what the right answer is here.",
          "Any advice at all would be appreciated because this has been stressing me out for a long time now.",
          "Sorry for the long post, I am on mobile and English is not my first language."]


def fill(template: str, values: dict) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


def sample_values(family: dict, rng) -> dict:
    """One value per slot; a few derived ones (ages with sex, e.g. "24F")."""
    values = {k: rng.choice(v) for k, v in {**COMMON, **family["slots"]}.items()}
    for key in ("rage", "page"):
        values[key] = f"{rng.randint(19, 35)}{rng.choice('MF')}"
    return values


def make_post(family: dict, rng) -> dict:
    """A filled post: prompt text, reference summary and the values used."""
    values = sample_values(family, rng)
    sentences = [s for s in family["post"] if not s.startswith("[") or rng.random() < 0.5]
    post = " ".join(fill(s.strip("[]"), values) for s in sentences)
    title = fill(rng.choice(family["titles"]), values)
    prompt = f"SUBREDDIT: r/{family['sub']}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:"
    return {"prompt": prompt, "post": post, "tldr": fill(rng.choice(family["tldrs"]), values), "family": family, "values": values}


def fresh_posts(rng, n: int, used: set) -> list[dict]:
    """n posts whose prompts are new (``used`` is updated), cycling through the families."""
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n:
            raise RuntimeError("post space exhausted")
        post = make_post(FAMILIES[(len(out) + rng.randrange(len(FAMILIES))) % len(FAMILIES)], rng)
        if post["prompt"] not in used:
            used.add(post["prompt"])
            out.append(post)
    return out


def candidates(post: dict, rng) -> list[str]:
    """Summaries of varied quality: reference, partial, vague, hallucinated, copied, rambling, repetitive."""
    family, reference = post["family"], post["tldr"]
    partial = re.split(r"[;,.?](?:\s|$)", reference)[0].strip() + "."
    other = sample_values(family, rng)
    wrong = fill(rng.choice(family["tldrs"]), {**post["values"], **{k: v for k, v in other.items() if v != post["values"].get(k)}})
    made_up = f"{rng.choice(VAGUE).rstrip('.?,')} {rng.choice(INVENTED)}, {rng.choice(FILLER).lower()}"
    sentences = re.split(r"(?<=[.?!])\s+", post["post"])
    return [reference, partial, rng.choice(VAGUE), wrong, made_up, " ".join(sentences[:4]),
            reference + " " + " ".join(rng.sample(FILLER, 2)), f"{partial} {partial} {partial}"]


def comparison_rows(post: dict, rng, n_pairs: int) -> list[dict]:
    """n_pairs distinct pairs whose judge scores differ by at least MARGIN; chosen = higher."""
    scored = [(J.score_summary(post["prompt"], c)["total"], c) for c in dict.fromkeys(candidates(post, rng))]
    pairs = [(a, b) for a in scored for b in scored if a[0] - b[0] >= MARGIN]
    rows = []
    for (_, chosen), (_, rejected) in rng.sample(pairs, n_pairs):
        rows.append({"prompt": post["prompt"], "chosen": " " + chosen, "rejected": " " + rejected})
    return rows


def write_jsonl(name: str, rows: list[dict]) -> int:
    """Write rows as ASCII JSONL; return the byte size."""
    path = OUT_DIR / name
    text = "".join(json.dumps(r, ensure_ascii=True, separators=(",", ":")) + "\n" for r in rows)
    path.write_text(text, encoding="ascii")
    return path.stat().st_size


def main() -> int:
    """Build every file and print row counts and sizes."""
    rng, used = random.Random(SEED), set()
    eval_posts = fresh_posts(rng, N_EVAL, used)
    demo_posts = fresh_posts(rng, N_DEMOS, used)
    comparison_posts = fresh_posts(rng, N_COMPARISON_POSTS, used)
    ppo_posts = fresh_posts(rng, N_PROMPTS, used)
    files = {
        "tldr_demos.jsonl": [{"prompt": p["prompt"], "completion": " " + p["tldr"]} for p in demo_posts],
        "tldr_comparisons.jsonl": [r for p in comparison_posts for r in comparison_rows(p, rng, PAIRS_PER_POST)],
        "tldr_prompts.jsonl": [{"prompt": p["prompt"]} for p in ppo_posts],
        "tldr_prompts_eval.jsonl": [{"prompt": p["prompt"]} for p in eval_posts],
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, rows in files.items():
        size = write_jsonl(name, rows)
        total += size
        print(f"{name:24s} {len(rows):4d} rows {size / 1000:6.1f} KB")
    assert total < MAX_TOTAL_BYTES, f"the TL;DR sample is {total} bytes"
    print(f"{'total':24s} {sum(map(len, files.values())):4d} rows {total / 1000:6.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
