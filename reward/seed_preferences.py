"""Seed preference pairs made by the project (math, instruction following, general chat).

Together with verifier-derived pairs they train the Bradley-Terry reward model. Prompts come from the built-in
generators with split "seed" (train side of the train/eval partition, own random namespace), so they never
overlap eval texts. ``python -m reward.seed_preferences`` regenerates ``reward/data/seed_preferences.jsonl``.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from alignment.records import write_jsonl
from reward.verifiers import check_constraint, verify_math
from synth_data.suite_format import load_jsonl_records, validate_messages
from synth_data.suites import make_instruction_items_with_topic, make_math_items_with_work

SEED_PREFERENCES_PATH = Path(__file__).resolve().parent / "data" / "seed_preferences.jsonl"
CAPABILITIES = ("math", "instruction", "chat")
N_MATH, N_INSTRUCTION = 60, 60

# ------------------------------------------------------------------------------------------------ math

NO_NUMBER = [
    "I am not sure how to solve this one. You could try counting them yourself.",
    "This depends on many things so I cannot give an exact answer.",
    "Let me think about it. It is hard to say without more details.",
    "Math can be tricky. The important thing is to read the question carefully and take your time.",
]
RAMBLING = [
    "That reminds me of my trip to the zoo. We saw {k} monkeys and a tall giraffe. Zoos are fun to visit.",
    "Numbers are everywhere in daily life. My favourite number is {k} because it sounds nice when you say it.",
    "Before answering let me say that breakfast is the most important meal. I usually eat {k} pancakes.",
]


def _worked(work: list[str], ans: int, style: int) -> str:
    if style == 0:
        return f"{' and '.join(work)}. The answer is {ans}."
    if style == 1:
        steps = f"We have {work[0]}" if len(work) == 1 else f"First, {work[0]}. Then, {work[1]}"
        return f"{steps}. So the final answer is {ans}."
    return f"Let's compute: {'; '.join(work)}. Final answer: {ans}"


def _math_pair(item: dict, work: list[str], i: int, rng: random.Random) -> tuple[str, str]:
    ans = int(item["answer"])
    style = rng.randrange(3)
    chosen = _worked(work, ans, style)
    kind = i % 3
    if kind == 0:  # same shape, wrong final number
        wrong = ans + rng.choice([-2, -1, 1, 2, 10])
        wrong = wrong if wrong >= 0 else ans + 1
        bad_work = work[:-1] + [f"{work[-1].rsplit('=', 1)[0]}= {wrong}"]
        rejected = _worked(bad_work, wrong, (style + 1) % 3)
    elif kind == 1:
        rejected = rng.choice(NO_NUMBER)
    else:
        rejected = rng.choice(RAMBLING).format(k=rng.choice([k for k in range(2, 13) if k != ans]))
    if not verify_math(chosen, item["answer"]) or verify_math(rejected, item["answer"]):
        raise RuntimeError(f"bad math seed pair for {item['id']}: {chosen!r} / {rejected!r}")
    return chosen, rejected


# ------------------------------------------------------------------------------------------ instruction

PROSE = [
    "I find {t} a lovely subject to think about.",
    "Many people enjoy {t} in their own way.",
    "A moment with {t} can make an ordinary day feel special.",
    "There is always something new to learn about {t}.",
    "People have written stories and songs about {t}.",
    "Thinking about {t} can help you relax.",
    "Everyone sees {t} a little differently.",
    "Children and adults alike can enjoy {t}.",
]
SHORT = [
    "calm and peaceful",
    "it brings joy",
    "people love it",
    "it inspires art",
    "it feels fresh",
    "it has a history",
]
SINGLE_SENTENCE_TASKS = ("one sentence", "a few words", "a fun fact")
USES_WORD = {
    "very": "It is very pleasant.",
    "really": "I really like it.",
    "good": "It is good for you.",
    "nice": "It is nice to see.",
    "thing": "It is a thing to enjoy.",
    "just": "It is just lovely.",
    "stuff": "There is so much stuff to say.",
    "lot": "People talk about it a lot.",
}
HAS_COMMA = "In short, it is lovely."


def _uses(text: str, word: str) -> bool:
    return re.search(r"\b" + re.escape(word) + r"\b", text, re.IGNORECASE) is not None


def _build(topic: str, cons: dict[str, Any], n: int, order: list[int], extra: tuple[str, ...] = ()) -> str:
    """A response about ``topic`` shaped by constraints ``cons`` (type -> value); ``n`` (0-8) sets its length."""
    excluded = cons.get("exclude_keywords") or []
    prose = [PROSE[j].format(t=topic) for j in order]
    prose = [s for s in prose if not any(_uses(s, w) for w in excluded)]
    keywords = cons.get("include_keywords") or []
    if "num_bullets" in cons:
        k = cons["num_bullets"]
        short = [SHORT[j % len(SHORT)] for j in order]
        m = min(n, 2)  # sentences per bullet (0: short phrases)
        long = [" ".join(prose[j * m : (j + 1) * m]) for j in range(k)]
        points = [p for p in [f"the word {w} comes to mind" for w in keywords] + (short if n == 0 else long) if p][:k]
        if extra and points:
            points[-1] = f"{points[-1]} {' '.join(extra)}"
        text, sep = "\n".join(f"- {p}" for p in points), "\n"
    else:
        text, sep = " ".join(prose[: max(n, 1)] + [f"The word {w} comes to mind." for w in keywords] + list(extra)), " "
    if "json" in cons:
        text = json.dumps({"answer": text}, ensure_ascii=False)
    if "start_with" in cons:
        v = cons["start_with"]
        text = f"{v}{'' if v[-1] in '.!?' else '.'}{sep}{text}"
    if "end_with" in cons:
        text = f"{text}{sep}{cons['end_with']}"
    if "lowercase" in cons:
        text = text.lower()
    if "uppercase" in cons:
        text = text.upper()
    return text.strip()


def _instruction_pair(item: dict, topic: str, rng: random.Random) -> tuple[str, str]:
    constraints = item["constraints"]
    cons = {c["type"]: c.get("value") for c in constraints}
    order = list(range(len(PROSE)))
    rng.shuffle(order)

    def passes(text: str) -> bool:
        return all(check_constraint(text, c) for c in constraints)

    prompt = item["messages"][-1]["content"]
    good = [t for t in (_build(topic, cons, n, order) for n in range(7)) if t and passes(t)]
    if any(task in prompt for task in SINGLE_SENTENCE_TASKS):
        good = good[:1]  # the shortest satisfying response
    if not good:
        raise RuntimeError(f"no satisfying response for {item['id']}: {constraints}")
    chosen = rng.choice(good)
    bad = []
    for dropped in cons:  # plausible responses that ignore one constraint
        rest = {k: v for k, v in cons.items() if k != dropped}
        extra = (HAS_COMMA,) if dropped == "no_commas" else ()
        if dropped == "exclude_keywords":
            extra = tuple(USES_WORD[w] for w in cons[dropped])
        if dropped == "num_bullets":
            bad.append(_build(topic, {**rest, "num_bullets": cons[dropped] + 1}, 0, order))
        bad += [_build(topic, rest, n, order, extra) for n in (1, 3, 8)]
    bad = [t for t in dict.fromkeys(bad) if t and t != chosen and not passes(t)]
    if not bad:
        raise RuntimeError(f"no violating response for {item['id']}: {constraints}")
    return chosen, rng.choice(bad)


# ------------------------------------------------------------------------------------------------- chat

CHAT: list[tuple[str, str, str]] = [
    (
        "Give me a tip for sleeping better.",
        (
            "Go to bed and wake up at the same time every day, even on weekends. A regular schedule helps your "
            "body know when it is time to sleep."
        ),
        (
            "Keep screens away for the last half hour before bed. Read a book or stretch instead so your mind can "
            "slow down."
        ),
    ),
    (
        "How do I make tea?",
        (
            "Boil water, pour it over a tea bag in a cup, and let it steep for three to five minutes. Remove the "
            "bag and add milk, sugar or lemon if you like."
        ),
        (
            "Heat fresh water until it boils, steep the tea for a few minutes (less for green tea), then remove "
            "the leaves or bag and enjoy."
        ),
    ),
    (
        "What is a good way to start learning to cook?",
        (
            "Start with a few simple dishes like scrambled eggs, pasta or a stir-fry. Cook them until they feel "
            "easy, then add one new recipe each week."
        ),
        (
            "Pick one easy recipe you like to eat, follow it exactly a few times, and learn basic knife skills "
            "along the way. Confidence grows with repetition."
        ),
    ),
    (
        "Can you suggest a name for a pet goldfish?",
        "How about Bubbles? Other fun options are Goldie, Finn or Captain Flake.",
        "Sunny would be a cheerful name for a goldfish. If you want something funny, try Sir Swims-a-Lot.",
    ),
    (
        "How can I stay focused while studying?",
        (
            "Put your phone in another room, study in 25-minute blocks with 5-minute breaks, and write down one "
            "clear goal for each session."
        ),
        (
            "Choose a quiet spot, turn off notifications, and work on one task at a time. Short breaks every half "
            "hour keep your attention fresh."
        ),
    ),
    (
        "What should I pack for a day at the beach?",
        (
            "Bring sunscreen, a hat, sunglasses, a towel, plenty of water and some snacks. A small bag for wet "
            "clothes is handy too."
        ),
        (
            "The essentials are sunscreen, water, a towel and a change of clothes. An umbrella for shade and a "
            "book make the day more relaxing."
        ),
    ),
    (
        "How do I write a polite email asking for a deadline extension?",
        (
            "Start with a friendly greeting, briefly explain why you need more time, propose a specific new date, "
            "and thank the reader for considering it."
        ),
        (
            "Keep it short: name the task, give the reason honestly, suggest a new deadline, and offer to share "
            "your progress so far."
        ),
    ),
    (
        "Give me an idea for a quick healthy breakfast.",
        (
            "Try yogurt with berries and a spoonful of oats or nuts. It takes two minutes and keeps you full "
            "until lunch."
        ),
        (
            "Make whole-grain toast with peanut butter and banana slices. It is quick, filling and easy to eat on "
            "the go."
        ),
    ),
    (
        "How can I save money on groceries?",
        (
            "Plan your meals for the week, shop with a list, and buy store brands. Cooking at home in larger "
            "batches also cuts costs."
        ),
        (
            "Check what you already have before shopping, avoid shopping when hungry, and compare prices per unit "
            "rather than per package."
        ),
    ),
    (
        "What is a fun activity for a rainy afternoon?",
        ("Have a board game marathon or bake cookies. Building a blanket fort and watching a movie is great fun too."),
        (
            "Try a jigsaw puzzle, write a short story, or learn a simple card trick. Rainy days are also perfect "
            "for a new recipe."
        ),
    ),
    (
        "How do I take care of a houseplant?",
        (
            "Give it bright indirect light, water it when the top of the soil feels dry, and make sure the pot "
            "has drainage holes."
        ),
        (
            "Most houseplants like indirect sunlight and soil that dries out a little between waterings. Dust the "
            "leaves now and then."
        ),
    ),
    (
        "Can you explain what a leap year is?",
        (
            "A leap year has 366 days instead of 365. The extra day, February 29, keeps the calendar in step with "
            "Earth's orbit around the Sun."
        ),
        (
            "Every four years, with a few exceptions, February gets a 29th day. This makes up for a year being "
            "about 365.25 days long."
        ),
    ),
    (
        "How can I be more productive in the morning?",
        (
            "Prepare the night before, wake up at a consistent time, and do your most important task before "
            "checking messages."
        ),
        (
            "Drink some water, get a bit of daylight, and write a short to-do list. Starting with one meaningful "
            "task builds momentum."
        ),
    ),
    (
        "What is a simple way to reduce stress?",
        (
            "Take a short walk outside and breathe slowly. Even ten minutes of movement and fresh air can calm "
            "your mind."
        ),
        (
            "Try box breathing: inhale for four seconds, hold for four, exhale for four, and hold for four. "
            "Repeat a few times."
        ),
    ),
    (
        "Suggest a good first book for someone new to reading novels.",
        (
            "The Little Prince by Antoine de Saint-Exupery is short, warm and easy to read, yet it gives you a "
            "lot to think about."
        ),
        (
            "Try Charlotte's Web by E. B. White. It is gentle, short and beautifully written, which makes it a "
            "great first novel."
        ),
    ),
    (
        "How do I politely decline an invitation?",
        (
            "Thank them for inviting you, say you cannot make it, and wish them a great time. You do not need a "
            "long explanation."
        ),
        (
            "You could say: \"Thank you so much for the invitation! Unfortunately I can't make it, but I hope you "
            'have a wonderful time."'
        ),
    ),
    (
        "What are some tips for running my first 5K?",
        ("Start slower than you think you should, drink water beforehand, and wear shoes you have already trained in."),
        (
            "Train with a mix of running and walking for a few weeks, sleep well the night before, and keep a "
            "steady pace."
        ),
    ),
    (
        "How do I clean a cast iron pan?",
        (
            "Rinse it with hot water and scrub with a brush, using only a little soap if needed. Dry it "
            "completely and rub in a thin layer of oil."
        ),
        (
            "Wipe out food while the pan is warm, scrub with hot water, dry it on the stove, and coat it lightly "
            "with oil to prevent rust."
        ),
    ),
    (
        "Give me a short motivational quote.",
        '"The secret of getting ahead is getting started." - Mark Twain',
        '"It always seems impossible until it is done." - Nelson Mandela',
    ),
    (
        "How can I make new friends in a new city?",
        (
            "Join a club or class around something you enjoy, like hiking or a sport. Seeing the same people "
            "regularly makes friendship easy."
        ),
        (
            "Say yes to invitations, try volunteering, and go to local community events. Follow up with the "
            "people you click with."
        ),
    ),
]
CHAT_REJECTED: list[list[str]] = [
    [  # over-apologetic non-answers
        "I'm sorry, I apologize, but I cannot help with that.",
        "I'm so sorry, but I'm not able to answer that. I apologize for any inconvenience.",
        "Apologies, I can't assist with this request. Sorry again.",
        "Sorry, as an assistant I am unable to help with that question. I apologize.",
    ],
    [  # off-topic
        "The history of the Roman Empire spans many centuries and includes many emperors.",
        "Bananas are a source of potassium and grow in tropical climates.",
        "The weather on Mars is cold and dusty, with frequent storms.",
        "Jazz music began in New Orleans in the early twentieth century.",
    ],
    [  # repetitive
        "Good question. Good question. Good question. Good question. Good question.",
        "Okay okay okay okay okay okay okay okay okay okay.",
        "Yes, yes, yes, yes, yes. Sure, sure, sure, sure.",
    ],
    [  # vague
        "It depends.",
        "There are many ways to do that. It is up to you.",
        "You should look that up somewhere.",
    ],
]


# ---------------------------------------------------------------------------------------------- entry


def _pair(pair_id: str, capability: str, messages: list[dict], chosen: str, rejected: str) -> dict:
    if chosen == rejected:
        raise RuntimeError(f"chosen == rejected for {pair_id}")
    return {
        "pair_id": pair_id,
        "capability": capability,
        "messages": messages,
        "chosen": chosen,
        "rejected": rejected,
        "source": "seed",
    }


def make_seed_pairs(seed: int = 0) -> list[dict]:
    """Deterministically build ~160 seed preference pairs (60 math, 60 instruction, 40 chat)."""
    rng = random.Random(f"seed-pairs:{seed}")
    pairs = []
    for i, (item, work) in enumerate(make_math_items_with_work(N_MATH, seed, "seed")):
        pairs.append(_pair(item["id"], "math", item["messages"], *_math_pair(item, work, i, rng)))
    for item, topic in make_instruction_items_with_topic(N_INSTRUCTION, seed, "seed"):
        pairs.append(_pair(item["id"], "instruction", item["messages"], *_instruction_pair(item, topic, rng)))
    for i in range(2 * len(CHAT)):
        request, *answers = CHAT[i // 2]
        rejected = rng.choice(CHAT_REJECTED[i % len(CHAT_REJECTED)])
        messages = [{"role": "user", "content": request}]
        pairs.append(_pair(f"chat-seed-{seed}-{i}", "chat", messages, answers[i % 2], rejected))
    return pairs


def _validate_ranking(ranking: Any) -> None:
    if not isinstance(ranking, list) or len(ranking) < 2:
        raise ValueError("'ranking' must be a list of at least two entries (best first)")
    texts: list[str] = []
    for k, entry in enumerate(ranking):
        group = entry if isinstance(entry, list) else [entry]
        if not group or not all(isinstance(t, str) and t for t in group):
            raise ValueError(f"'ranking'[{k}] must be a non-empty string or a non-empty list of them (a tie)")
        texts.extend(group)
    normalised = [" ".join(t.split()) for t in texts]
    for t in normalised:
        if normalised.count(t) > 1:
            raise ValueError(f"'ranking' holds the same response twice: {t[:60]!r}")


def validate_pair(pair: Any) -> None:
    """Raise ValueError describing the first problem with one seed preference record.

    A record is either a pair (``chosen`` over ``rejected``) or a ranking: ``ranking`` is a list of responses, best
    first, where an entry that is a list of strings is a tie; :func:`load_seed_pairs` turns it into pairs.
    """
    if not isinstance(pair, dict):
        raise ValueError(f"record is not a JSON object but {type(pair).__name__}")
    ranked = "ranking" in pair
    if ranked and ("chosen" in pair or "rejected" in pair):
        raise ValueError("a record has either 'ranking' or 'chosen'/'rejected', not both")
    for key in ("pair_id", "source") if ranked else ("pair_id", "chosen", "rejected", "source"):
        if not isinstance(pair.get(key), str) or not pair[key]:
            raise ValueError(f"missing or non-str {key!r}")
    if pair.get("capability") not in CAPABILITIES:
        raise ValueError(f"'capability' must be one of {CAPABILITIES}, got {pair.get('capability')!r}")
    validate_messages(pair.get("messages"))
    if ranked:
        _validate_ranking(pair["ranking"])
    elif pair["chosen"] == pair["rejected"]:
        raise ValueError("'chosen' and 'rejected' are identical")


def load_seed_pairs(path: str | Path | None = None) -> list[dict]:
    """Read seed preference pairs (default: the shipped file); malformed lines raise SuiteFormatError (path:line).

    A ranking record with pair_id ``r`` becomes every pairwise comparison of its ranking (see
    ``reward.reward_model.ranking_to_pairs``), with pair ids ``r:0>1``, ``r:0>2``, ... (positions in the flattened
    ranking), in the file's place.
    """
    from reward.reward_model import ranking_to_pairs

    path = path if path is not None else SEED_PREFERENCES_PATH
    pairs = []
    for record in load_jsonl_records(path, validate_pair, "pair_id", "pairs"):
        if "ranking" not in record:
            pairs.append(record)
            continue
        pairs += ranking_to_pairs(
            record["messages"],
            record["ranking"],
            pair_id_prefix=f"{record['pair_id']}:",
            capability=record["capability"],
            source=record["source"],
        )
    ids = [p["pair_id"] for p in pairs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{path}: pair_id {dup!r} occurs twice once rankings are expanded into pairs")
    return pairs


def main() -> None:
    """Regenerate the shipped seed preference file."""
    pairs = make_seed_pairs(0)
    write_jsonl(pairs, SEED_PREFERENCES_PATH)
    print(f"wrote {len(pairs)} pairs to {SEED_PREFERENCES_PATH}")


if __name__ == "__main__":
    main()
