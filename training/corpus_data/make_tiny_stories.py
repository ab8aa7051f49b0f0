"""Writes tiny_stories.txt: short children's stories from a small grammar, written for this project.

The corpus is deterministic (fixed seed) and committed, so pre-training tests need no download.
Run: python training/corpus_data/make_tiny_stories.py
"""

import random
from pathlib import Path

NAMES = ["Tom", "Lily", "Max", "Mia", "Ben", "Sara", "Leo", "Anna", "Sam", "Zoe"]
ANIMALS = ["cat", "dog", "rabbit", "bird", "fox", "bear", "duck", "frog", "mouse", "horse"]
ADJECTIVES = ["little", "happy", "small", "brave", "kind", "curious", "sleepy", "funny", "shy", "clever"]
PLACES = ["garden", "park", "forest", "house", "farm", "river", "hill", "school", "beach", "village"]
THINGS = ["ball", "kite", "box", "hat", "book", "cake", "apple", "flower", "boat", "drum"]
FEELINGS = ["happy", "sad", "excited", "scared", "proud", "tired", "surprised", "calm"]
FRIENDS = ["friend", "mother", "father", "sister", "brother", "teacher", "grandma", "neighbor"]


def story(rng: random.Random) -> str:
    name, animal, adj = rng.choice(NAMES), rng.choice(ANIMALS), rng.choice(ADJECTIVES)
    place, thing, other = rng.choice(PLACES), rng.choice(THINGS), rng.choice(THINGS)
    feeling, friend = rng.choice(FEELINGS), rng.choice(FRIENDS)
    opening = rng.choice([
        f"Once upon a time, there was a {adj} {animal} named {name}.",
        f"One day, a {adj} {animal} named {name} went to the {place}.",
        f"There was a {adj} {animal} called {name} who lived near the {place}.",
    ])
    middle = rng.choice([
        f"{name} liked to play with a red {thing} in the {place}.",
        f"{name} found a big {thing} under a tree in the {place}.",
        f"{name} wanted to share a {thing} with a {friend}.",
        f"{name} lost the {thing} and looked for it all day.",
    ])
    turn = rng.choice([
        f"Then the {friend} came and said, \"Let us play together!\"",
        f"Suddenly, it started to rain, and {name} felt {feeling}.",
        f"The {friend} gave {name} a small {other}.",
        f"{name} saw a {rng.choice(ANIMALS)} who needed help.",
    ])
    ending = rng.choice([
        f"In the end, {name} was {feeling} and went home to sleep.",
        f"They played until the sun went down, and {name} was very {feeling}.",
        f"{name} learned that it is good to be {rng.choice(ADJECTIVES)}.",
        f"From that day on, {name} and the {friend} were best friends.",
    ])
    return " ".join([opening, middle, turn, ending])


def main() -> None:
    rng = random.Random(1234)
    lines = [story(rng) for _ in range(2000)]
    Path(__file__).with_name("tiny_stories.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
