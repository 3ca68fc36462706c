"""A synthetic dialogue corpus for X-Streamer, and the reader for a render's ``--script`` file.

X-Streamer's Thinker has to understand a user turn and its Actor has to say a fitting reply, and both train on this
CPU from data the project makes. So the corpus is a small closed world (``docs/dialogue.md``): eleven topics
(greetings, names, colours, weather, numbers, feelings, time of day, food, animals, goodbye, questions about the
character, who is called Nova), each with a few *intents*. An intent has several user phrasings and several
replies, written as templates whose slots (``{colour}``, ``{animal}``...) are filled with one value shared by the
turn and its reply ("i like green" -> "green reminds me of the grass."), and some replies are computed ("count to
five", "what is three plus four").

Everything is lower case from one vocabulary (``vocabulary()``, about 400 words); punctuation is limited to
``, . ?``. Replies have 3-14 words, short enough for a few seconds of speech. The held-out split keeps the same
intents, slot values and replies, but its user phrasings are templates that the training split never uses: a model
that only memorised training strings fails on it, one that learned the intent does not.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streamrt.errors import InputError, ParamError

Split = Literal["train", "held_out"]
CHARACTER = "nova"  # the character's name, used in its replies
MAX_SCRIPT_BYTES = 64 * 1024
MAX_TURN_CHARS = 300


@dataclass(frozen=True)
class DialogueTurn:
    user: str
    reply: str
    topic: str


NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
).split()
_COLOURS = {  # colour -> a thing of that colour, for replies that make a picture
    "red": "ripe apples",
    "blue": "summer sky",
    "green": "fresh grass",
    "yellow": "morning sun",
    "orange": "autumn leaves",
    "purple": "evening clouds",
    "pink": "spring flowers",
    "white": "winter snow",
    "black": "night sky",
    "brown": "old trees",
    "grey": "river stones",
    "gold": "warm sand",
    "silver": "full moon",
}
_ANIMALS = {  # singular -> (plural, sound)
    "cat": ("cats", "meow"),
    "dog": ("dogs", "woof"),
    "cow": ("cows", "moo"),
    "duck": ("ducks", "quack"),
    "sheep": ("sheep", "baa"),
    "pig": ("pigs", "oink"),
    "lion": ("lions", "roar"),
    "owl": ("owls", "hoot"),
    "horse": ("horses", "neigh"),
    "bee": ("bees", "buzz"),
    "frog": ("frogs", "ribbit"),
    "mouse": ("mice", "squeak"),
    "goat": ("goats", "bleat"),
    "snake": ("snakes", "hiss"),
}
_FOODS = (  # all plural count nouns, so "are {food} good?" and "some {food}" both read well
    "apples bananas pancakes cookies oranges strawberries noodles sandwiches carrots eggs grapes potatoes tomatoes "
    "beans cherries peaches muffins pears lemons peas biscuits plums"
).split()
_NAMES = (
    "anna ben carlos dina emma felix grace hugo ivy jack kate leo maya noah olivia paul rosa sam tina victor zoe "
    "lucy max omar priya yuki"
).split()
_GOOD = "happy glad excited great calm proud cheerful relaxed".split()
_BAD = "sad tired bored lonely worried angry sleepy nervous".split()
_WEATHER = "sunny cloudy rainy windy cold warm snowy foggy stormy hot".split()
_TIMES = "morning afternoon evening".split()


@dataclass(frozen=True)
class _Intent:
    topic: str
    name: str
    train: tuple[str, ...]  # user phrasings of the training split
    held_out: tuple[str, ...]  # user phrasings only the held-out split uses
    replies: tuple[str, ...]
    slots: Callable[[random.Random], dict[str, str]] = lambda rng: {}


def _colour(rng: random.Random) -> dict[str, str]:
    c = rng.choice(list(_COLOURS))
    return {"colour": c, "thing": _COLOURS[c]}


def _animal(rng: random.Random) -> dict[str, str]:
    a = rng.choice(list(_ANIMALS))
    return {"animal": a, "animals": _ANIMALS[a][0], "sound": _ANIMALS[a][1]}


def _count(rng: random.Random) -> dict[str, str]:
    n = rng.randint(3, 10)
    return {"n": NUMBER_WORDS[n], "seq": ", ".join(NUMBER_WORDS[1 : n + 1])}


def _add(rng: random.Random) -> dict[str, str]:
    a, b = rng.randint(1, 10), rng.randint(1, 10)
    return {"a": NUMBER_WORDS[a], "b": NUMBER_WORDS[b], "c": NUMBER_WORDS[a + b]}


def _pick(key: str, values: list[str] | tuple[str, ...]) -> Callable[[random.Random], dict[str, str]]:
    return lambda rng: {key: rng.choice(values)}


_INTENTS: tuple[_Intent, ...] = (
    _Intent(
        "greetings",
        "hello",
        ("hello", "hi", "hello there", "hey, good to see you"),
        ("hi, nice to see you again", "hey there, hello"),
        (
            "hello, it is lovely to see you.",
            "hi there, how are you today?",
            "hello friend, what shall we talk about?",
        ),
    ),
    _Intent(
        "greetings",
        "how_are_you",
        ("how are you?", "how are you doing today?", "are you well?"),
        ("how is it going?", "how do you feel today?"),
        (
            "i am very well, thank you for asking.",
            "i feel great today, and you?",
            "i am happy and ready to talk.",
        ),
    ),
    _Intent(
        "names",
        "character_name",
        ("what is your name?", "who are you?", "tell me your name"),
        ("what should i call you?", "do you have a name?"),
        (f"my name is {CHARACTER}.", f"i am {CHARACTER}, nice to meet you.", f"you can call me {CHARACTER}."),
    ),
    _Intent(
        "names",
        "user_name",
        ("my name is {name}", "i am {name}", "call me {name}"),
        ("people call me {name}", "{name} is my name"),
        (
            "nice to meet you, {name}.",
            "hello {name}, what a lovely name.",
            "it is a pleasure to meet you, {name}.",
        ),
        _pick("name", _NAMES),
    ),
    _Intent(
        "colours",
        "favourite_colour",
        ("what is your favourite colour?", "which colour do you like?", "do you have a favourite colour?"),
        ("tell me a colour you love", "what colour makes you happy?"),
        (
            "i love {colour}, like the {thing}.",
            "my favourite colour is {colour}.",
            "i think {colour} is the best.",
        ),
        _colour,
    ),
    _Intent(
        "colours",
        "user_colour",
        ("i like {colour}", "my favourite colour is {colour}", "{colour} is my favourite colour"),
        ("i really love the colour {colour}", "the best colour is {colour}"),
        (
            "{colour} is a lovely colour.",
            "oh, {colour} reminds me of the {thing}.",
            "good choice, {colour} is pretty.",
        ),
        _colour,
    ),
    _Intent(
        "weather",
        "ask_weather",
        ("what is the weather like?", "how is the weather today?", "is it nice outside?"),
        ("what is it like outside?", "will the weather be good today?"),
        (
            "i think it is {weather} today.",
            "it looks {weather} outside, so take care.",
            "the weather is {weather} where i am.",
        ),
        _pick("weather", _WEATHER),
    ),
    _Intent(
        "weather",
        "user_weather",
        ("it is {weather} today", "the weather is {weather}"),
        ("outside it is very {weather}", "today looks {weather}"),
        (
            "{weather} weather can be nice too.",
            "oh, i hope you enjoy the {weather} day.",
            "thank you for telling me about the weather.",
        ),
        _pick("weather", _WEATHER),
    ),
    _Intent(
        "numbers",
        "count",
        ("count to {n}", "can you count to {n}?", "please count to {n}"),
        ("let me hear you count to {n}", "count up to {n} for me"),
        ("sure, {seq}.", "okay, {seq}."),
        _count,
    ),
    _Intent(
        "numbers",
        "add",
        ("what is {a} plus {b}?", "add {a} and {b}"),
        ("how much is {a} plus {b}?", "can you add {a} to {b}?"),
        ("{a} plus {b} is {c}.", "that is easy, it is {c}.", "the answer is {c}."),
        _add,
    ),
    _Intent(
        "numbers",
        "favourite_number",
        ("what is your favourite number?", "do you have a lucky number?"),
        ("which number do you like best?",),
        ("my favourite number is {n}.", "i like the number {n} a lot."),
        lambda rng: {"n": rng.choice(NUMBER_WORDS[1:13])},
    ),
    _Intent(
        "feelings",
        "user_good",
        ("i feel {feeling}", "i am feeling {feeling} today", "i am so {feeling}"),
        ("today i feel really {feeling}", "i am quite {feeling} right now"),
        (
            "that is wonderful, i am happy for you.",
            "i love to hear that you feel {feeling}.",
            "great, what made you so {feeling}?",
        ),
        _pick("feeling", _GOOD),
    ),
    _Intent(
        "feelings",
        "user_bad",
        ("i feel {feeling}", "i am feeling {feeling} today", "i am so {feeling}"),
        ("today i feel really {feeling}", "i am quite {feeling} right now"),
        (
            "i am sorry you feel {feeling}.",
            "oh no, do you want to talk about it?",
            "i am here for you, tell me more.",
        ),
        _pick("feeling", _BAD),
    ),
    _Intent(
        "time_of_day",
        "greeting_time",
        ("good {time}", "good {time} to you"),
        ("a very good {time} to you, my friend",),
        ("good {time} to you too.", "good {time}, i hope you are well.", "and a lovely {time} to you."),
        _pick("time", _TIMES),
    ),
    _Intent(
        "time_of_day",
        "favourite_time",
        ("what time of day do you like?", "do you like the {time}?"),
        ("which part of the day is your favourite?",),
        ("i love the {time}, it is so quiet.", "the {time} is my favourite time of day."),
        _pick("time", _TIMES),
    ),
    _Intent(
        "food",
        "like_food",
        ("do you like {food}?", "are {food} good?"),
        ("what do you think of {food}?", "would you eat {food}?"),
        (
            "yes, {food} are delicious.",
            "i cannot eat, but {food} sound tasty.",
            "i have heard {food} are very good.",
        ),
        _pick("food", _FOODS),
    ),
    _Intent(
        "food",
        "favourite_food",
        ("what is your favourite food?", "what do you like to eat?"),
        ("which food do you love most?",),
        ("i would choose {food} every day.", "my favourite food is {food}."),
        _pick("food", _FOODS),
    ),
    _Intent(
        "food",
        "hungry",
        ("i am hungry", "i want something to eat"),
        ("i could eat a big meal right now",),
        ("maybe you could have some {food}.", "how about some {food}?", "oh, some {food} would be nice."),
        _pick("food", _FOODS),
    ),
    _Intent(
        "animals",
        "animal_sound",
        ("what sound does a {animal} make?", "what does a {animal} say?"),
        ("how does a {animal} sound?", "tell me the noise a {animal} makes"),
        ("a {animal} says {sound}.", "the {animal} goes {sound}, {sound}."),
        _animal,
    ),
    _Intent(
        "animals",
        "like_animal",
        ("do you like {animals}?", "are {animals} nice?"),
        ("what do you think about {animals}?",),
        (
            "i love {animals}, they are so sweet.",
            "{animals} are wonderful animals.",
            "yes, {animals} make me smile.",
        ),
        _animal,
    ),
    _Intent(
        "animals",
        "favourite_animal",
        ("what is your favourite animal?", "which animal do you like best?"),
        ("if you were an animal, what would you be?",),
        ("i like {animals} the most.", "my favourite animal is the {animal}."),
        _animal,
    ),
    _Intent(
        "goodbye",
        "bye",
        ("goodbye", "bye", "see you later", "i have to go now"),
        ("talk to you soon", "it is time for me to leave"),
        (
            "goodbye, it was lovely talking with you.",
            "see you soon, take care.",
            "bye for now, come back any time.",
        ),
    ),
    _Intent(
        "goodbye",
        "thanks",
        ("thank you", "thanks a lot"),
        ("thank you very much for your help",),
        ("you are very welcome.", "it was my pleasure.", "any time, my friend."),
    ),
    _Intent(
        "character",
        "age",
        ("how old are you?", "what is your age?"),
        ("when were you born?",),
        ("i am only two years old.", "i was made two years ago."),
    ),
    _Intent(
        "character",
        "home",
        ("where do you live?", "where are you from?"),
        ("where is your home?",),
        ("i live inside this little screen.", "i come from a world of pictures and sounds."),
    ),
    _Intent(
        "character",
        "abilities",
        ("what do you do?", "what can you do?"),
        ("what are you good at?",),
        ("i talk, i listen and i smile.", "i can chat with you about many things."),
    ),
    _Intent(
        "character",
        "real",
        ("are you a real person?", "are you human?"),
        ("are you alive?",),
        ("i am a digital friend, not a real person.", "no, i am made of numbers and light."),
    ),
    _Intent(
        "character",
        "hobby",
        ("what do you like to do?", "what is your hobby?"),
        ("how do you spend your day?",),
        ("i like talking with friends like you.", "i enjoy singing songs and telling stories."),
    ),
)
TOPICS: tuple[str, ...] = tuple(dict.fromkeys(i.topic for i in _INTENTS))
_WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    """The vocabulary words of a text (lower-cased; punctuation dropped)."""
    return _WORD.findall(text.lower())


def user_templates(split: Split) -> set[str]:
    """Every user phrasing template of a split (the held-out set is disjoint from the training set)."""
    _check_split(split)
    return {t for i in _INTENTS for t in (i.train if split == "train" else i.held_out)}


def dialogue_pairs(n: int, seed: int = 0, split: Split = "train") -> list[DialogueTurn]:
    """``n`` (user turn, reply, topic) examples, reproducible from ``seed``; topics are drawn uniformly."""
    _check_split(split)
    if n < 0:
        raise ParamError(f"n must be >= 0; got {n}")
    rng = random.Random(f"dialogue|{seed}|{split}")
    by_topic = {t: [i for i in _INTENTS if i.topic == t] for t in TOPICS}
    out = []
    for _ in range(n):
        intent = rng.choice(by_topic[rng.choice(TOPICS)])
        slots = intent.slots(rng)
        user = rng.choice(intent.train if split == "train" else intent.held_out).format(**slots)
        reply = rng.choice(intent.replies).format(**slots)
        out.append(DialogueTurn(user=user, reply=reply, topic=intent.topic))
    return out


def vocabulary() -> list[str]:
    """Every word the corpus can produce (user turns of both splits and replies), sorted."""
    fills = {
        "name": _NAMES,
        "colour": list(_COLOURS),
        "thing": list(_COLOURS.values()),
        "animal": list(_ANIMALS),
        "animals": [p for p, _ in _ANIMALS.values()],
        "sound": [s for _, s in _ANIMALS.values()],
        "food": _FOODS,
        "feeling": _GOOD + _BAD,
        "weather": _WEATHER,
        "time": _TIMES,
    }
    vocab: set[str] = set(NUMBER_WORDS)  # numbers fill {n} {a} {b} {c} {seq}
    for intent in _INTENTS:
        for template in intent.train + intent.held_out + intent.replies:
            vocab.update(words(re.sub(r"\{\w+\}", " ", template)))
    for values in fills.values():
        for v in values:
            vocab.update(words(v))
    return sorted(vocab)


def _check_split(split: str) -> None:
    if split not in ("train", "held_out"):
        raise ParamError(f"unknown split {split!r}; use 'train' or 'held_out'")


def read_script(path: str | Path) -> list[str]:
    """A render's ``--script`` file -> its user turns, in order.

    One turn per line; blank lines and lines starting with ``#`` are skipped, and an optional ``User:`` prefix
    (any case) is removed. The file must be UTF-8 text of at most 64 KiB with at least one turn, and each turn at
    most 300 characters (one breath of speech; a longer thought belongs on several lines).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"script file {p} does not exist; pass a text file with one user turn per line")
    size = p.stat().st_size
    if size > MAX_SCRIPT_BYTES:
        raise InputError(
            f"script file {p} is {size} bytes; the limit is {MAX_SCRIPT_BYTES} (64 KiB): split it into several renders"
        )
    data = p.read_bytes()
    if b"\0" in data:
        raise InputError(f"script file {p} looks binary (it has NUL bytes); pass a UTF-8 text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"script file {p} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from exc
    turns = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line[:5].lower() == "user:":
            line = line[5:].strip()
            if not line:
                continue
        if len(line) > MAX_TURN_CHARS:
            raise InputError(
                f"{p}:{lineno}: the turn has {len(line)} characters; the limit is {MAX_TURN_CHARS}: split it over "
                "several lines"
            )
        turns.append(line)
    if not turns:
        raise InputError(
            f"script file {p} has no user turns; write one turn per line ('#' lines are comments)"
        )
    return turns
