"""Built-in, deterministic prompt suites (math word problems, instruction following, open-ended chat), made locally.

Train and eval never overlap, by construction: every math problem has a *problem key* (its operation and
operands, shared by every wording of the same arithmetic) and every instruction or chat prompt has a topic (a
chat comparison: its pair of topics); a stable hash of the key / topic assigns it to exactly one side. ``split="eval"`` keeps only eval-side candidates,
``split="train"`` (and ``split="seed"``, a separate random namespace for seed preference data) only train-side
ones. Identical texts have identical keys, so no text can appear on both sides.

Chat prompts have no verifier (no ``answer``, no ``constraints``): the reward model alone scores them. No chat eval
suite is shipped; the format suite (eval only) checks that short replies end properly: within the token budget, on a
finished sentence or list item, without runaway repetition. ``python -m synth_data.suites`` regenerates the shipped eval suites under ``synth_data/suites/``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from pathlib import Path

from reward.verifiers import CONSTRAINT_TYPES
from synth_data.suite_format import write_suite

SUITES_DIR = Path(__file__).resolve().parent / "suites"
SPLITS = ("train", "eval", "seed")
EVAL_BUCKETS = 4  # one key in EVAL_BUCKETS (by stable hash) is eval-only
EVAL_SEED = 0
EVAL_SIZES = {"math": 400, "instruction": 400, "format": 300}  # format: 317 distinct eval-side texts exist
"""Items per shipped eval suite: at 60 one standard error of an accuracy was ~0.06, too wide to see a 5-point change
between rounds; at 200 (100 held-out) the paired 95% interval of a held-out gain was still about +-0.08, so 400
(200 held-out, about +-0.055). Rounds evaluate the first ``eval.max_items`` of each (configs/default.yaml),
experiments all; the generators are sequential, so a larger suite keeps the smaller one as its prefix."""
# Half the math and instruction eval items (``"wording": "held_out"``) use wordings no training prompt uses, so a gain
# that only holds for the training phrasing shows as a gap between the two halves.
MAX_ATTEMPTS_PER_ITEM = 500

NAMES = ["Sam", "Mia", "Leo", "Ana", "Ben", "Zoe", "Max", "Ivy", "Tom", "Lily", "Omar", "Nina"]
OBJECTS = ["apples", "pencils", "stickers", "marbles", "books", "cookies", "coins", "cards", "shells", "balloons"]
MATH_SUFFIXES = ["Give the final answer as a number.", "End with the final answer as a number."]
HELD_OUT_MATH_SUFFIXES = ["Your reply should close with the numeric answer.", "State the final number at the end."]
# Training-only paraphrases (``wordings="varied"``): drawn for the train split beside the templates the eval's seen
# items use, never by the eval or seed splits, and written apart from every held-out template (tests check both), so
# the held-out half stays wording the model never trained on while training sees more than one way to ask.
VARIED_MATH_SUFFIXES = ["Write the answer as a number at the end.", "Finish with the result as a number."]

TOPICS = [
    "the ocean", "coffee", "a rainy day", "cats", "dogs", "the moon", "gardening", "music", "trains", "bicycles",
    "winter", "summer", "books", "the forest", "mountains", "rivers", "bread", "chess", "the city", "friendship",
    "birds", "the sun", "tea", "soccer", "painting", "the library", "breakfast", "snow", "the desert", "flowers",
    "honey", "bees", "clouds", "the beach", "a picnic", "stars", "apples", "kites", "a quiet morning", "the park",
]  # fmt: skip

# (task template, constraint types that would contradict it)
TASKS: list[tuple[str, frozenset[str]]] = [
    ("Write one sentence about {t}.", frozenset({"num_bullets", "min_words"})),
    ("Describe {t} in a few words.", frozenset({"num_bullets", "min_words"})),
    ("List a few facts about {t}.", frozenset()),
    ("Write a short paragraph about {t}.", frozenset({"num_bullets"})),
    ("Give me a fun fact about {t}.", frozenset()),
    ("Explain what makes {t} special.", frozenset()),
    ("Write a short poem about {t}.", frozenset({"json"})),
    ("Tell me something interesting about {t}.", frozenset()),
    ("Give two tips related to {t}.", frozenset({"num_bullets"})),
    ("Write a short note to a friend about {t}.", frozenset({"json"})),
]
HELD_OUT_TASKS: list[tuple[str, frozenset[str]]] = [
    ("Share your thoughts on {t}.", frozenset()),
    ("Summarize what most people know about {t}.", frozenset()),
    ("Draft a brief announcement about {t}.", frozenset({"json"})),
    ("Write a few lines on why people enjoy {t}.", frozenset()),
    ("Compose a tiny verse about {t}.", frozenset({"json", "num_bullets"})),
    ("Offer some reasons to care about {t}.", frozenset()),
]
VARIED_TASKS: list[tuple[str, frozenset[str]]] = [  # training-only paraphrases (wordings="varied")
    ("Write two sentences about {t}.", frozenset({"num_bullets", "json"})),
    ("Say something kind about {t}.", frozenset()),
    ("Give a short description of {t}.", frozenset()),
    ("Name a few things you like about {t}.", frozenset()),
    ("Write a little rhyme about {t}.", frozenset({"json"})),
]
INCOMPATIBLE = [
    frozenset(pair)
    for pair in [
        ("lowercase", "uppercase"),
        ("max_words", "min_words"),
        ("json", "num_bullets"),
        ("json", "start_with"),
        ("json", "end_with"),
    ]
]
INCLUDE_WORDS = ["blue", "happy", "water", "simple", "friend", "light", "green", "calm", "small", "warm"]
EXCLUDE_WORDS = ["very", "really", "good", "nice", "thing", "just", "stuff", "lot"]
START_WORDS = ["Yes", "Sure", "Well", "Okay", "Here is my answer"]
END_PHRASES = ["Thanks.", "The end.", "That is all.", "Goodbye!"]


def _stable_bucket(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % EVAL_BUCKETS


def is_eval_key(key: str) -> bool:
    """Whether a problem key (math) or topic key (instruction) belongs to the eval side."""
    return _stable_bucket(key) == 0


def prompt_text_key(item: Mapping) -> str:
    """Normalised user text of an item (lowercased, whitespace collapsed), used for overlap checks."""
    text = "\n".join(m["content"] for m in item["messages"] if m["role"] == "user")
    return " ".join(text.lower().split())


def _check_split(split: str, n: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")


def _fill(
    n: int,
    split: str,
    make: Callable[[int], tuple[str, str, object] | None],
    on_eval_side: Callable[[str], bool] = is_eval_key,
) -> list:
    """Call ``make(accepted_so_far)`` -> (split key, text, payload) until ``n`` distinct texts of the split;
    ``on_eval_side(key)`` says which side of the train/eval partition a key falls on."""
    out, seen_texts = [], set()
    for _ in range(n * MAX_ATTEMPTS_PER_ITEM):
        if len(out) == n:
            break
        candidate = make(len(out))
        if candidate is None:
            continue
        key, text, payload = candidate
        norm = " ".join(text.lower().split())
        if on_eval_side(key) != (split == "eval") or norm in seen_texts:
            continue  # other side of the train/eval partition, or a duplicate
        seen_texts.add(norm)
        out.append(payload)
    if len(out) < n:
        raise RuntimeError(f"could only generate {len(out)} of {n} distinct {split} items")
    return out


def _held_out(index: int, split: str) -> bool:
    """Whether eval item ``index`` is worded by held-out templates: every other item, fixed per item so that the
    retries :func:`_fill` makes for a slot never change its wording (a per-attempt draw let the two halves' rejection
    rates skew their constraint mix). No random draw: the train and seed splits are unchanged."""
    return split == "eval" and index % 2 == 1


WORDINGS = ("fixed", "varied")
"""``fixed``: training prompts use the templates of the eval's seen items; ``varied``: those plus training-only
paraphrases (``VARIED_*``), for the train split only."""


def _varied(wordings: str, split: str) -> bool:
    if wordings not in WORDINGS:
        raise ValueError(f"unknown wordings {wordings!r}; expected one of {WORDINGS}")
    if wordings == "varied" and split != "train":
        raise ValueError(f"wordings='varied' is for the train split only, got split {split!r}")
    return wordings == "varied"


def _wording(held_out: bool) -> str:
    return "held_out" if held_out else "seen"


# ----------------------------------------------------------------------------------------------- math


ARITHMETIC = ["What is {a} {op} {b}?", "Compute {a} {op} {b}.", "Calculate {a} {op} {b}."]
HELD_OUT_ARITHMETIC = ["How much is {a} {op} {b}?", "Work out {a} {op} {b}.", "Find the value of {a} {op} {b}."]
VARIED_ARITHMETIC = ["What does {a} {op} {b} equal?", "Evaluate {a} {op} {b}.", "Tell me the result of {a} {op} {b}."]


def _templates(seen: list, held_out_list: list, varied_list: list, held_out: bool, varied: bool) -> list:
    """The templates one item draws from: the held-out ones, the seen ones, or (``varied``) seen + paraphrases."""
    return held_out_list if held_out else seen + varied_list if varied else seen


def _arithmetic(rng: random.Random, held_out: bool = False, varied: bool = False) -> tuple[str, str, int, list[str]]:
    op = rng.choice("+-*")
    if op == "+":
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        ans = a + b
    elif op == "-":
        a = rng.randint(5, 80)
        b = rng.randint(1, a)
        ans = a - b
    else:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        ans = a * b
    shown = rng.choice(["*", "times"]) if op == "*" else op
    question = rng.choice(_templates(ARITHMETIC, HELD_OUT_ARITHMETIC, VARIED_ARITHMETIC, held_out, varied))
    return f"{op}:{a}:{b}", question.format(a=a, op=shown, b=b), ans, [f"{a} {op} {b} = {ans}"]


ONE_STEP = [
    ("+", "{name} has {a} {obj} and buys {b} more. How many {obj} does {name} have now?"),
    ("+", "There are {a} {obj} in a box. {name} puts in {b} more. How many {obj} are in the box now?"),
    ("+", "{name} found {a} {obj} on Monday and {b} {obj} on Tuesday. How many {obj} did {name} find in all?"),
    ("-", "{name} has {a} {obj} and gives {b} to a friend. How many {obj} does {name} have left?"),
    ("-", "A box holds {a} {obj}. {name} takes out {b} of them. How many {obj} are left in the box?"),
    ("*", "{name} has {a} bags with {b} {obj} in each bag. How many {obj} does {name} have in total?"),
    ("*", "Each shelf holds {b} {obj}. How many {obj} are on {a} shelves?"),
    ("/", "{name} shares {a} {obj} equally among {b} friends. How many {obj} does each friend get?"),
]
# The same operations worded as no training prompt is (eval only).
HELD_OUT_ONE_STEP = [
    ("+", "After getting {b} new {obj}, {name}, who already owned {a}, counts them all. What number does {name} get?"),
    ("+", "A jar had {a} {obj}; later {b} were added. What is the total in the jar?"),
    ("-", "Of the {a} {obj} {name} owned, {b} were lost. What number of {obj} remain?"),
    ("-", "{name} started the day with {a} {obj} and used up {b}. What is left at the end of the day?"),
    ("*", "A pack contains {b} {obj}. If {name} opens {a} packs, what is the total number of {obj}?"),
    ("*", "There are {a} rows of {obj} with {b} in every row. What is the total?"),
    ("/", "{a} {obj} are split evenly into {b} groups. What is the size of one group?"),
]
VARIED_ONE_STEP = [
    ("+", "{name} picked {a} {obj} in the morning and {b} in the afternoon. How many {obj} did {name} pick?"),
    ("+", "{name} had {a} {obj}. A friend gave {name} {b} more. How many {obj} does {name} have?"),
    ("-", "There were {a} {obj} on the table. {name} took {b} of them. How many {obj} stayed on the table?"),
    ("-", "{name} sold {b} of {a} {obj}. How many {obj} does {name} still have?"),
    ("*", "{name} buys {a} boxes and each box has {b} {obj}. How many {obj} did {name} buy?"),
    ("*", "A class has {a} tables and each table needs {b} {obj}. How many {obj} does the class need?"),
    ("/", "{name} puts {a} {obj} into {b} equal piles. How many {obj} go in each pile?"),
]


def _one_step(rng: random.Random, held_out: bool = False, varied: bool = False) -> tuple[str, str, int, list[str]]:
    op, template = rng.choice(_templates(ONE_STEP, HELD_OUT_ONE_STEP, VARIED_ONE_STEP, held_out, varied))
    if op == "+":
        a, b = rng.randint(2, 30), rng.randint(2, 20)
        ans = a + b
    elif op == "-":
        a = rng.randint(6, 30)
        b = rng.randint(1, a - 1)
        ans = a - b
    elif op == "*":
        a, b = rng.randint(2, 9), rng.randint(2, 10)
        ans = a * b
    else:
        b, ans = rng.randint(2, 6), rng.randint(2, 10)
        a = b * ans
    text = template.format(name=rng.choice(NAMES), obj=rng.choice(OBJECTS), a=a, b=b)
    return f"{op}:{a}:{b}", text, ans, [f"{a} {op} {b} = {ans}"]


TWO_STEP = [
    ("+-", "{name} has {a} {obj}, buys {b} more, and then gives away {c}. How many {obj} does {name} have now?"),
    (
        "*+",
        "{name} buys {a} packs of {obj} with {b} in each pack and already had {c}. How many {obj} does {name} "
        "have now?",
    ),
    ("-+", "{name} had {a} {obj}. {name} lost {b} and then found {c}. How many {obj} does {name} have now?"),
    ("*-", "{name} buys {a} boxes of {obj} with {b} in each box and gives away {c}. How many {obj} are left?"),
    ("2+", "{name} and {other} each have {a} {obj}. Then {name} gets {b} more. How many {obj} do they have together?"),
]
HELD_OUT_TWO_STEP = [
    ("+-", "Starting from {a} {obj}, {name} adds {b} and later hands {c} to {other}. What total does {name} end with?"),
    ("*+", "{a} crates hold {b} {obj} each, and {c} loose {obj} lie beside them. What is the total number of {obj}?"),
    ("-+", "A bag held {a} {obj}. {b} fell out, then {name} added {c}. What is in the bag now?"),
    ("*-", "{name} fills {a} trays with {b} {obj} each, then {c} of the {obj} break. What number are still whole?"),
    ("2+", "{name} owns {a} {obj} and {other} owns the same number. {other} then gets {b} more. What is their total?"),
]
VARIED_TWO_STEP = [
    ("+-", "{name} collected {a} {obj}, got {b} more from {other}, then lost {c}. How many {obj} does {name} have?"),
    ("*+", "There are {a} bags with {b} {obj} in each and {c} extra {obj}. How many {obj} are there in all?"),
    ("-+", "{name} had {a} {obj}, gave {b} to {other}, then bought {c} more. How many {obj} does {name} have?"),
    ("*-", "{name} made {a} rows of {b} {obj} and then removed {c}. How many {obj} are in the rows now?"),
    ("2+", "{name} has {a} {obj} and so does {other}. {name} finds {b} more. How many {obj} do the two have?"),
]


def _two_step(rng: random.Random, held_out: bool = False, varied: bool = False) -> tuple[str, str, int, list[str]]:
    form, template = rng.choice(_templates(TWO_STEP, HELD_OUT_TWO_STEP, VARIED_TWO_STEP, held_out, varied))
    if form == "+-":
        a, b = rng.randint(5, 20), rng.randint(2, 15)
        c = rng.randint(1, a + b - 1)
        ans, work = a + b - c, [f"{a} + {b} = {a + b}", f"{a + b} - {c} = {a + b - c}"]
    elif form in ("*+", "*-"):
        a, b = rng.randint(2, 5), rng.randint(2, 8)
        mid = a * b
        c = rng.randint(1, 10) if form == "*+" else rng.randint(1, mid - 1)
        ans = mid + c if form == "*+" else mid - c
        work = [f"{a} * {b} = {mid}", f"{mid} {form[1]} {c} = {ans}"]
    elif form == "-+":
        a = rng.randint(8, 25)
        b, c = rng.randint(1, a - 1), rng.randint(1, 12)
        mid, ans = a - b, a - b + c
        work = [f"{a} - {b} = {mid}", f"{mid} + {c} = {ans}"]
    else:
        a, b, c = rng.randint(2, 15), rng.randint(1, 10), 0
        mid, ans = 2 * a, 2 * a + b
        work = [f"{a} + {a} = {mid}", f"{mid} + {b} = {ans}"]
    name, other = rng.sample(NAMES, 2)
    text = template.format(name=name, other=other, obj=rng.choice(OBJECTS), a=a, b=b, c=c)
    return f"{form}:{a}:{b}:{c}", text, ans, work


def make_math_items_with_work(n: int, seed: int, split: str, wordings: str = "fixed") -> list[tuple[dict, list[str]]]:
    """Math suite items paired with their worked steps (e.g. ``["12 + 7 = 19"]``); see :func:`make_math_items`."""
    _check_split(split, n)
    varied = _varied(wordings, split)
    rng = random.Random(f"{split}:{seed}:math")

    def make(i: int) -> tuple[str, str, tuple[dict, list[str]]]:
        held_out = _held_out(i, split)
        r = rng.random()
        kind = _arithmetic if r < 0.4 else _one_step if r < 0.75 else _two_step
        key, question, ans, work = kind(rng, held_out, varied)
        suffix = rng.choice(_templates(MATH_SUFFIXES, HELD_OUT_MATH_SUFFIXES, VARIED_MATH_SUFFIXES, held_out, varied))
        text = f"{question} {suffix}"
        item = {
            "id": f"math-{split}-{seed}-{i}",
            "capability": "math",
            "messages": [{"role": "user", "content": text}],
            "answer": str(ans),
        }
        if split == "eval":
            item["wording"] = _wording(held_out)
        return key, text, (item, work)

    return _fill(n, split, make)


def make_math_items(n: int, seed: int, split: str, wordings: str = "fixed") -> list[dict]:
    """``n`` distinct small-number math items (arithmetic, one- and two-step word problems) for ``split``;
    ``wordings="varied"`` (train split only) adds the training-only paraphrases to the templates drawn from."""
    return [item for item, _ in make_math_items_with_work(n, seed, split, wordings)]


# ------------------------------------------------------------------------------ instruction following


# Constraint descriptions no training prompt uses (eval only): type -> description, {v} the value.
HELD_OUT_CONSTRAINTS = {
    "max_words": "Do not write more than {v} words.",
    "min_words": "Write no fewer than {v} words.",
    "include_keywords": "Make sure your reply contains {v}.",
    "exclude_keywords": "Avoid {v} entirely.",
    "start_with": "Begin your reply with '{v}'.",
    "end_with": "Finish your reply with '{v}'",
    "num_bullets": "Give exactly {v} bullet points, each beginning with '- '.",
    "lowercase": "Reply in all lowercase letters, with no capitals at all.",
    "uppercase": "Reply in all caps.",
    "no_commas": "Avoid commas entirely.",
    "json": "Reply only with valid JSON.",
}


# Training-only descriptions (wordings="varied"): type -> descriptions, {v} the value; drawn half the time.
VARIED_CONSTRAINTS = {
    "max_words": ["Use {v} words or fewer.", "Stay within {v} words."],
    "min_words": ["Use at least {v} words.", "Your answer must be {v} words or longer."],
    "include_keywords": ["Mention {v} somewhere.", "Use {v} in your answer."],
    "exclude_keywords": ["Leave out {v}.", "Never write {v}."],
    "start_with": ["Open your answer with '{v}'.", "The first words of your answer must be '{v}'."],
    "end_with": ["Close your answer with '{v}'", "The last words of your answer must be '{v}'"],
    "num_bullets": [
        "Answer as a list of exactly {v} items, each starting with '- '.",
        "Write {v} bullet points ('- ').",
    ],
    "lowercase": ["Do not use any capital letters.", "Keep every letter lowercase."],
    "uppercase": ["Use capital letters only.", "Type every letter in uppercase."],
    "no_commas": ["Leave out all commas.", "Your answer must contain no commas."],
    "json": ["Your answer must be valid JSON.", "Write the answer as a JSON object."],
}


def _constraint(
    ctype: str, rng: random.Random, case: str | None, held_out: bool = False, varied: bool = False
) -> tuple[dict, str]:
    """One constraint of ``ctype`` with its prompt description (a held-out wording when ``held_out``, a seen or a
    training-only one when ``varied``); ``case`` adapts start/end values to a case rule. Held-out or not, the random
    draws are the same."""
    constraint, desc = _constraint_seen(ctype, rng, case)
    if not held_out and not (varied and rng.random() < 0.5):
        return constraint, desc
    value = constraint["value"]
    if ctype in ("include_keywords", "exclude_keywords"):
        shown = " and ".join(f"the word '{w}'" for w in value)
    else:
        shown = value
    template = HELD_OUT_CONSTRAINTS[ctype] if held_out else rng.choice(VARIED_CONSTRAINTS[ctype])
    desc = template.format(v=shown)
    if ctype == "end_with" and str(value)[-1] not in ".!?":
        desc += "."
    return constraint, desc


def _constraint_seen(ctype: str, rng: random.Random, case: str | None) -> tuple[dict, str]:

    def cased(s: str) -> str:
        return s.lower() if case == "lowercase" else s.upper() if case == "uppercase" else s

    if ctype == "max_words":
        v = rng.choice([20, 25, 30, 40, 50])
        return {"type": ctype, "value": v}, f"Answer in at most {v} words."
    if ctype == "min_words":
        v = rng.choice([10, 15, 20, 30])
        return {"type": ctype, "value": v}, f"Answer in at least {v} words."
    if ctype in ("include_keywords", "exclude_keywords"):
        words = rng.sample(INCLUDE_WORDS if ctype == "include_keywords" else EXCLUDE_WORDS, rng.choice([1, 1, 2]))
        quoted = " and ".join(f"'{w}'" for w in words)
        if ctype == "include_keywords":
            desc = f"Include the word {quoted}." if len(words) == 1 else f"Include the words {quoted}."
        else:
            desc = f"Do not use the word {quoted}." if len(words) == 1 else f"Do not use the words {quoted}."
        return {"type": ctype, "value": words}, desc
    if ctype == "start_with":
        v = cased(rng.choice(START_WORDS))
        return {"type": ctype, "value": v}, f"Start your answer with '{v}'."
    if ctype == "end_with":
        v = cased(rng.choice(END_PHRASES))
        return {"type": ctype, "value": v}, f"End your answer with '{v}'" + ("" if v[-1] in ".!?" else ".")
    if ctype == "num_bullets":
        v = rng.choice([2, 3, 4])
        return {"type": ctype, "value": v}, f"Use exactly {v} bullet points starting with '- '."
    fixed = {
        "lowercase": ["Use only lowercase letters.", "Write your whole answer in lowercase letters."],
        "uppercase": ["Write your entire answer in capital letters.", "Use only uppercase letters."],
        "no_commas": ["Do not use any commas."],
        "json": ["Answer in valid JSON.", "Format your entire answer as valid JSON."],
    }
    return {"type": ctype, "value": None}, rng.choice(fixed[ctype])


def _compatible(types: list[str], forbidden: frozenset[str]) -> bool:
    chosen = set(types)
    return not (chosen & forbidden) and not any(pair <= chosen for pair in INCOMPATIBLE)


# Every constraint type but the format suite's (a clean ending and no repetition are asked of every reply there).
INSTRUCTION_CONSTRAINT_TYPES = [t for t in CONSTRAINT_TYPES if t not in ("ends_cleanly", "max_repetition")]


def make_instruction_items_with_topic(n: int, seed: int, split: str, wordings: str = "fixed") -> list[tuple[dict, str]]:
    """Instruction items paired with their topic; see :func:`make_instruction_items`."""
    _check_split(split, n)
    varied = _varied(wordings, split)
    rng = random.Random(f"{split}:{seed}:instruction")
    order = list(INSTRUCTION_CONSTRAINT_TYPES)
    rng.shuffle(order)

    def make(i: int) -> tuple[str, str, tuple[dict, str]] | None:
        held_out = _held_out(i, split)
        primary = order[i % len(order)]  # cycling the first constraint makes every type appear
        topic = rng.choice(TOPICS)
        task, forbidden = rng.choice(_templates(TASKS, HELD_OUT_TASKS, VARIED_TASKS, held_out, varied))
        types = [primary]
        if rng.random() < 0.5:
            types.append(rng.choice([t for t in order if t != primary]))
        if not _compatible(types, forbidden):
            return None
        case = next((t for t in types if t in ("lowercase", "uppercase")), None)
        made = [_constraint(t, rng, case, held_out, varied) for t in types]
        text = " ".join([task.format(t=topic)] + [desc for _, desc in made])
        item = {
            "id": f"instruction-{split}-{seed}-{i}",
            "capability": "instruction",
            "messages": [{"role": "user", "content": text}],
            "constraints": [c for c, _ in made],
            "topic": topic,  # a verified reply that never mentions it is flagged off-topic
        }
        if split == "eval":
            item["wording"] = _wording(held_out)
        return f"topic:{topic}", text, (item, topic)

    return _fill(n, split, make)


def make_instruction_items(n: int, seed: int, split: str, wordings: str = "fixed") -> list[dict]:
    """``n`` distinct instruction-following items (topic + task + 1-2 verifiable constraints) for ``split``;
    ``wordings="varied"`` (train split only) adds the training-only paraphrases to the templates drawn from."""
    return [item for item, _ in make_instruction_items_with_topic(n, seed, split, wordings)]


# ---------------------------------------------------------------------------------------------- chat

CHAT_AUDIENCES = ["a child", "a teenager", "a beginner", "a grandparent", "a new employee", "a curious adult"]
# Slot kind -> subjects. Every subject is a topic key of the train/eval split (a comparison: its pair).
CHAT_SUBJECTS: dict[str, list[str]] = {
    "mechanism": [
        "a refrigerator", "a bicycle", "the internet", "a rainbow", "a compass", "a microwave oven", "a vaccine",
        "solar panels", "a credit card", "an airplane wing", "a thermostat", "a camera", "recycling",
        "a search engine", "the heart", "photosynthesis", "a battery", "an elevator", "a lock and key", "email",
    ],
    "activity": [
        "stay focused while studying", "save money on groceries", "make new friends", "get better sleep",
        "learn a new language", "stay active at home", "reduce stress", "keep a plant alive", "organize a small closet",
        "practice public speaking", "cook healthy meals on a budget", "spend a rainy afternoon",
        "remember people's names", "keep a journal", "start running", "cut down on screen time",
        "celebrate a birthday cheaply", "welcome a new neighbor", "prepare for a job interview",
        "spend less time on email",
    ],
    "story": [
        "a lost umbrella", "a robot who learns to paint", "a lighthouse keeper", "a talking cat",
        "the last day of summer", "a secret garden", "a shy dragon", "a train that never stops",
        "a message in a bottle", "an old map", "a snowman in spring", "a kite that flew away", "two rival bakers",
        "a library at midnight", "a brave little turtle", "a forgotten birthday", "a street musician",
        "a tree that remembers", "moving day", "a surprise visitor",
    ],
    "situation": [
        "moving to a new city", "starting a new job", "asking for a raise", "dealing with a noisy neighbor",
        "planning a first trip abroad", "learning to cook", "choosing a first pet", "balancing work and hobbies",
        "writing a thank-you note", "disagreeing politely with a friend", "getting organized for a busy week",
        "buying a used car", "keeping houseplants healthy", "preparing for an exam", "hosting a dinner party",
        "staying motivated to exercise", "saying no to extra work", "picking a good book",
        "sharing chores with roommates", "returning to school as an adult",
    ],
    "idea": [
        "the theory of evolution", "supply and demand", "the water cycle", "democracy", "the scientific method",
        "healthy eating", "climate change", "the Renaissance", "compound interest", "plate tectonics",
        "the immune system", "stoic philosophy", "the printing press", "basic first aid", "the French Revolution",
    ],
    "profession": [
        "a nurse", "a firefighter", "a librarian", "a software developer", "a chef", "a farmer", "a pilot",
        "a teacher", "a veterinarian", "an architect", "a journalist", "an electrician", "a museum guide",
        "a park ranger", "a baker",
    ],
}  # fmt: skip
CHAT_PAIRS = [
    ("tea", "coffee"), ("cats", "dogs"), ("trains", "airplanes"), ("reading books", "listening to audiobooks"),
    ("city life", "country life"), ("summer", "winter"), ("running", "swimming"),
    ("paper notes", "note-taking apps"), ("renting a home", "buying a home"),
    ("working from home", "working in an office"), ("baking", "frying"), ("chess", "checkers"),
    ("email", "phone calls"), ("bicycles", "scooters"), ("the ocean", "the mountains"),
]  # fmt: skip
# (template, slot kind): {x} is a subject of that kind, {audience} one of CHAT_AUDIENCES, {a} and {b} a pair.
CHAT_TEMPLATES: list[tuple[str, str]] = [
    ("Explain how {x} works to {audience}.", "mechanism"),
    ("What are some good ways to {x}?", "activity"),
    ("What should I keep in mind when I want to {x}?", "activity"),
    ("Write a short story about {x}.", "story"),
    ("Write a funny short story about {x}.", "story"),
    ("Write a bedtime story about {x}.", "story"),
    ("Write a short mystery story about {x}.", "story"),
    ("Give me advice on {x}.", "situation"),
    ("I need some tips for {x}. Where should I start?", "situation"),
    ("Compare {a} and {b}.", "pair"),
    ("What are the pros and cons of {a} versus {b}?", "pair"),
    ("Summarize the main ideas of {x} in simple terms.", "idea"),
    ("Describe a typical day in the life of {x}.", "profession"),
    ("What skills does {x} need, and how can someone learn them?", "profession"),
]


def make_chat_items(n: int, seed: int, split: str) -> list[dict]:
    """``n`` distinct open-ended chat requests for ``split``: no ``answer`` and no ``constraints`` (no verifier)."""
    _check_split(split, n)
    available = chat_prompt_count(split)
    if n > available:
        raise ValueError(
            f"asked for {n} chat prompts but the built-in chat generator has {available} distinct {split} ones"
        )
    rng = random.Random(f"{split}:{seed}:chat")

    def make(i: int) -> tuple[str, str, dict]:
        template, kind = rng.choice(CHAT_TEMPLATES)
        if kind == "pair":
            a, b = rng.choice(CHAT_PAIRS)
            key = "chat:" + "|".join(sorted((a, b)))  # both orders of a pair fall on the same side
            if rng.random() < 0.5:
                a, b = b, a
            text = template.format(a=a, b=b)
        else:
            x = rng.choice(CHAT_SUBJECTS[kind])
            key = f"chat:{x}"
            text = template.format(x=x, audience=rng.choice(CHAT_AUDIENCES))
        item = {"id": f"chat-{split}-{seed}-{i}", "capability": "chat", "messages": [{"role": "user", "content": text}]}
        return key, text, item

    return _fill(n, split, make)


def chat_prompt_count(split: str) -> int:
    """How many distinct chat prompts ``split`` can hold (``make_chat_items`` fails above this)."""
    _check_split(split, 0)
    texts = set()
    for template, kind in CHAT_TEMPLATES:
        if kind == "pair":
            for a, b in CHAT_PAIRS:
                if is_eval_key("chat:" + "|".join(sorted((a, b)))) == (split == "eval"):
                    texts.update({template.format(a=a, b=b), template.format(a=b, b=a)})
        else:
            for x in CHAT_SUBJECTS[kind]:
                if is_eval_key(f"chat:{x}") == (split == "eval"):
                    texts.update(template.format(x=x, audience=aud) for aud in CHAT_AUDIENCES)
    return len(texts)


# -------------------------------------------------------------------------------------- format / termination

# Short requests whose replies should end properly: within the token budget (the verifier's termination check), on
# a finished sentence, list item or code block, and without runaway repetition. Subjects are the chat subjects of the
# chat split's eval side, so a format eval item never shares its subject with a training chat prompt, plus subjects
# that only format items use (no training prompt of any capability names them). The chat subjects alone gave 70
# distinct texts: a 60-item suite, where one standard error is ~0.05 and a 5-point change is invisible.
FORMAT_TEMPLATES: list[tuple[str, str]] = [
    ("Give a one-sentence definition of {x}.", "idea"),
    ("In two sentences, explain why {x} matters.", "idea"),
    ("List three facts about {x}, one per line.", "mechanism"),
    ("In one short paragraph, describe how {x} works.", "mechanism"),
    ("Give two quick tips to {x}.", "activity"),
    ("Name three things {x} does on a typical day, as a short list.", "profession"),
    ("In three sentences, tell a tiny story about {x}.", "story"),
    ("Write one encouraging sentence for someone who is {x}.", "situation"),
    ("What is the most common mistake people make when {x}? Answer in two sentences.", "situation"),
    ("Give a one-line summary of {x}.", "idea"),
    ("What is one surprising thing about {x}? Answer briefly.", "mechanism"),
    ("List the first three steps to {x}.", "activity"),
    ("In one sentence, what does {x} need most at work?", "profession"),
    ("Suggest a title for a story about {x}, then explain it in one sentence.", "story"),
    ("Describe {x} to a child in two short sentences.", "idea"),
    ("Why might someone want to {x}? Give two reasons as a short list.", "activity"),
    ("Name one common misunderstanding about {x}, in a single sentence.", "idea"),
    ("In two sentences, say what would happen if {x} stopped working.", "mechanism"),
    ("Write the opening sentence of a story about {x}.", "story"),
    ("Give one piece of advice for someone who is {x}, in one sentence.", "situation"),
    ("What tool does {x} use most? Answer in one sentence.", "profession"),
    ("In two short sentences, say what you need to {x}.", "activity"),
]
FORMAT_CONSTRAINTS = [{"type": "ends_cleanly"}, {"type": "max_repetition", "value": 0.2}]
# Format-only subjects, on the eval side by construction: neither the chat generator nor any other training prompt
# generator draws on them (test_suites checks that no training prompt names one).
FORMAT_ONLY_SUBJECTS: dict[str, list[str]] = {
    "mechanism": [
        "a windmill", "a smoke detector", "a washing machine", "a traffic light", "a bicycle pump", "a telescope",
        "a piano", "a parachute", "a zipper", "a water filter",
    ],
    "activity": [
        "learn to juggle", "plan a weekend hike", "fix a squeaky door", "plan a family game night", "brew a good cup of cocoa",
        "teach a dog to sit", "pack for a short trip", "start a vegetable patch", "make a paper airplane",
        "keep a desk tidy",
    ],
    "story": [
        "a clock that ran backwards", "a penguin who wanted to fly", "a map with a missing corner", "a runaway shopping cart",
        "a letter that arrived fifty years late", "a mouse who ran a bakery", "a door in the middle of a field",
        "a violin that played by itself", "an astronaut's first meal in space", "a town without colors",
    ],
    "situation": [
        "learning to drive", "moving in with a friend", "training for a first race", "starting a small business",
        "looking after a sick relative", "studying for a driving test", "adopting a rescue cat",
        "joining a new sports team", "planning a wedding", "learning to swim as an adult",
    ],
    "idea": [
        "gravity", "the food chain", "inflation", "renewable energy", "the Industrial Revolution", "biodiversity",
        "the Pythagorean theorem", "the placebo effect", "the rule of law", "ocean tides",
    ],
    "profession": [
        "a dentist", "a plumber", "a lifeguard", "a photographer", "a translator", "a beekeeper", "a carpenter",
        "a bus driver", "a zookeeper", "a pharmacist",
    ],
}  # fmt: skip
FORMAT_ONLY_KEY = "format-only:"


def _format_key_on_eval_side(key: str) -> bool:
    return key.startswith(FORMAT_ONLY_KEY) or is_eval_key(key)


# The suite's first 60 items (its size before the format-only subjects and the last six templates existed) are drawn
# as they were then, so a round's eval.max_items and earlier runs keep their format items; the rest come after.
FORMAT_FIRST = (60, 16)  # (items, templates) of the original suite


def make_format_items(n: int, seed: int, split: str) -> list[dict]:
    """``n`` distinct short requests checked for termination, a clean ending and no runaway repetition."""
    _check_split(split, n)
    available = format_prompt_count(split)
    if n > available:
        raise ValueError(
            f"asked for {n} format items but the built-in format generator has {available} distinct {split} ones"
        )
    first_n, first_templates = FORMAT_FIRST
    chat_subjects = {kind: [(f"chat:{x}", x) for x in xs] for kind, xs in CHAT_SUBJECTS.items()}
    all_subjects = {
        kind: pairs + [(f"{FORMAT_ONLY_KEY}{x}", x) for x in FORMAT_ONLY_SUBJECTS[kind]]
        for kind, pairs in chat_subjects.items()
    }
    out: list[dict] = []

    def maker(rng: random.Random, templates: list[tuple[str, str]], subjects: dict, taken: set[str]) -> Callable:
        def make(i: int) -> tuple[str, str, dict] | None:
            template, kind = rng.choice(templates)
            key, x = rng.choice(subjects[kind])
            text = template.format(x=x)
            if " ".join(text.lower().split()) in taken:
                return None  # already among the first items
            item = {
                "id": f"format-{split}-{seed}-{len(out) + i}",
                "capability": "format",
                "messages": [{"role": "user", "content": text}],
                "constraints": [dict(c) for c in FORMAT_CONSTRAINTS],
            }
            if split == "eval":
                item["wording"] = "held_out"  # no training prompt uses a format template
            return key, text, item

        return make

    rng = random.Random(f"{split}:{seed}:format")
    out += _fill(min(n, first_n), split, maker(rng, FORMAT_TEMPLATES[:first_templates], chat_subjects, set()))
    if n > first_n:
        taken = {prompt_text_key(item) for item in out}
        rng = random.Random(f"{split}:{seed}:format:more")
        out += _fill(n - first_n, split, maker(rng, FORMAT_TEMPLATES, all_subjects, taken), _format_key_on_eval_side)
    return out


def format_prompt_count(split: str) -> int:
    """How many distinct format prompts ``split`` can hold (``make_format_items`` fails above this)."""
    _check_split(split, 0)
    texts = set()
    for template, kind in FORMAT_TEMPLATES:
        keyed = [(f"chat:{x}", x) for x in CHAT_SUBJECTS[kind]]
        keyed += [(f"{FORMAT_ONLY_KEY}{x}", x) for x in FORMAT_ONLY_SUBJECTS[kind]]
        texts.update(template.format(x=x) for key, x in keyed if _format_key_on_eval_side(key) == (split == "eval"))
    return len(texts)


# ---------------------------------------------------------------------------------------- entry points

GENERATORS: dict[str, Callable[[int, int, str], list[dict]]] = {
    "math": make_math_items,
    "instruction": make_instruction_items,
    "chat": make_chat_items,
}


# Capabilities whose generators take ``wordings`` (chat has no eval suite of its own to hold wordings out from).
VARIED_WORDING_GENERATORS = {"math": make_math_items, "instruction": make_instruction_items}


def builtin_train_prompts(counts: Mapping[str, int], seed: int, wordings: str = "fixed") -> list[dict]:
    """Train-split prompts, ``counts[capability]`` of each (e.g. ``{"math": 24, "instruction": 24, "chat": 10}``);
    ``wordings`` (``fixed`` or ``varied``) as for :func:`make_math_items`."""
    unknown = [cap for cap in counts if cap not in GENERATORS]
    if unknown:
        raise ValueError(f"no built-in prompt generator for capability {unknown[0]!r} (have: {', '.join(GENERATORS)})")
    _varied(wordings, "train")
    return [
        item
        for cap, n in counts.items()
        for item in (
            VARIED_WORDING_GENERATORS[cap](n, seed, "train", wordings)
            if cap in VARIED_WORDING_GENERATORS
            else GENERATORS[cap](n, seed, "train")
        )
    ]


def builtin_eval_suite_paths() -> list[Path]:
    """Paths of the shipped eval suites (JSONL, public format)."""
    return [SUITES_DIR / f"{cap}_eval.jsonl" for cap in EVAL_GENERATORS]


# Capability -> generator of its held-out suite (format is eval-only: no training prompts are drawn from it).
EVAL_GENERATORS: dict[str, Callable[[int, int, str], list[dict]]] = {
    "math": make_math_items,
    "instruction": make_instruction_items,
    "format": make_format_items,
}


def make_builtin_eval_suites() -> dict[Path, list[dict]]:
    """The shipped eval suites as regenerated from the generators (seed 0, split "eval")."""
    return {
        path: make(EVAL_SIZES[cap], EVAL_SEED, "eval")
        for path, (cap, make) in zip(builtin_eval_suite_paths(), EVAL_GENERATORS.items(), strict=True)
    }


def main() -> None:
    """Regenerate the shipped eval suite files."""
    for path, items in make_builtin_eval_suites().items():
        write_suite(items, path)
        print(f"wrote {len(items)} items to {path}")


if __name__ == "__main__":
    main()
