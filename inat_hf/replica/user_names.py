"""Synthetic ``rights_holder`` strings shaped like the real ones (unique per user).

Real values are a person's name ("Glenn Caspers", "Michelle S. Koo", "Ken-ichi Ueda", with accents and
compound Spanish names), a login name ("megatherium", "rpayne") or a 21-digit numeric account id
("105615097470186309865"). The replica draws 50% names, 40% login names and 10% numeric ids.
"""

from __future__ import annotations

import unicodedata

import numpy as np

FIRST = (
    "Anna", "Glenn", "Michelle", "Ken-ichi", "José", "María", "Luis", "Zoë", "Søren", "Björn", "Jörg",
    "François", "Zoltán", "Łukasz", "Chloé", "Renée", "Ahmed", "Aisha", "Wei", "Mei", "Hiroshi", "Yuki",
    "Priya", "Arjun", "Olga", "Dmitri", "Sven", "Ingrid", "Liam", "Emma", "Noah", "Olivia", "Lucas", "Sofía",
    "Mateo", "Valentina", "Thandi", "Sipho", "Kiri", "Aroha", "Juan", "Carmen", "Pedro", "Inês", "João",
    "Ana", "Marta", "Tomás", "Jan", "Eva", "Pieter", "Femke", "Kate", "Ben", "Sarah", "David", "Laura",
    "Michael", "Jennifer", "Robert", "Linda", "James", "Susan", "Nicolás", "Andrés", "Gábor", "Csilla",
    "Dorottya", "Radek", "Jiří", "Ewa", "Agnieszka", "Nguyễn", "Minh", "Seo-yeon", "Ji-ho", "Aleksandr",
)  # fmt: skip
LAST = (
    "Caspers", "Koo", "Ueda", "García", "Pérez", "Müller", "Schmidt", "Østergaard", "Åberg", "Smith", "Jones",
    "Brown", "Taylor", "Wilson", "Martin", "Dubois", "Lefèvre", "Rossi", "Bianchi", "Nowak", "Kowalski",
    "Novák", "Horváth", "Kovács", "Ivanov", "Petrova", "Tanaka", "Suzuki", "Watanabe", "Chen", "Wang", "Li",
    "Zhang", "Kim", "Park", "Nguyen", "Tran", "Singh", "Patel", "Sharma", "Silva", "Santos", "Oliveira",
    "Souza", "Rodríguez", "Fernández", "López", "González", "Martínez", "Sánchez", "Ramírez", "Núñez",
    "Van der Merwe", "Botha", "Nkosi", "Ngata", "Walker", "Hall", "Young", "King", "Wright", "Scott",
    "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell", "Mitchell", "Roberts", "Carter", "Phillips",
    "Evans", "Turner", "Torres", "Parker", "Collins", "Edwards", "Stewart", "Morris", "Murphy", "Cook",
    "O'Brien", "McDonald", "De la Cruz", "Larsen", "Eriksson", "Lindqvist", "Virtanen", "Korhonen", "Payne",
)  # fmt: skip
WORDS = (
    "megatherium", "birdnerd", "mothman", "fernfinder", "naturalist", "herper", "lichenlover", "bugguy",
    "wildflower", "mycophile", "owlet", "trailrunner", "seashell", "dragonfly", "botanist", "hawkeye",
    "beetlemania", "froglog", "tidepooler", "cactuswren", "mossy", "sparrowhawk", "quercus", "salamandra",
)  # fmt: skip


def _ascii(text: str) -> str:
    for special, plain in (("ł", "l"), ("ø", "o"), ("æ", "ae"), ("œ", "oe"), ("ễ", "e")):
        text = text.lower().replace(special, plain)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in text if c.isalpha())


def rights_holders(n: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` distinct rights_holder strings (object array), deterministic for ``rng``."""
    kind = rng.choice(3, n, p=[0.5, 0.4, 0.1])
    f1, f2 = rng.integers(len(FIRST), size=n).tolist(), rng.integers(len(FIRST), size=n).tolist()
    l1, l2 = rng.integers(len(LAST), size=n).tolist(), rng.integers(len(LAST), size=n).tolist()
    roll, word = rng.random(n).tolist(), rng.integers(len(WORDS), size=n).tolist()
    initial, number = rng.integers(65, 91, size=n).tolist(), rng.integers(1, 1000, size=n).tolist()
    digits = rng.integers(0, 10, (n, 20)).astype(np.uint8) + ord("0")
    numeric = ["1" + d.decode() for d in digits.view("S20").ravel()]
    ascii_first, ascii_last = [_ascii(x) for x in FIRST], [_ascii(x) for x in LAST]

    def person(i: int) -> str:
        if roll[i] < 0.10:
            return f"{FIRST[f1[i]]} {FIRST[f2[i]]} {LAST[l1[i]]} {LAST[l2[i]]}"
        if roll[i] < 0.25:
            return f"{FIRST[f1[i]]} {chr(initial[i])}. {LAST[l1[i]]}"
        return f"{FIRST[f1[i]]} {LAST[l1[i]]}"

    def login(i: int) -> str:
        first, last, pattern = ascii_first[f1[i]], ascii_last[l1[i]], int(roll[i] * 5)
        if pattern == 0:
            return first[0] + last
        if pattern == 1:
            return WORDS[word[i]]
        if pattern == 2:
            return f"{WORDS[word[i]]}{number[i]}"
        return f"{first}{'_.'[pattern - 3]}{last}"

    names = [(person, login, numeric.__getitem__)[k](i) for i, k in enumerate(kind.tolist())]
    seen: set[str] = set()
    for i, name in enumerate(names):
        while name in seen:  # rare: a second surname, a digit or a new id until unique
            if kind[i] == 0:
                name = f"{name} {LAST[int(rng.integers(len(LAST)))]}"
            elif kind[i] == 1:
                name = f"{name}{int(rng.integers(10))}"
            else:
                name = "1" + "".join(map(str, rng.integers(0, 10, 20).tolist()))
        seen.add(name)
        names[i] = name
    return np.array(names, dtype=object)
