#!/usr/bin/env python3
"""Writes pairs.jsonl: prompt pairs labelled `same` (the same answer serves both: paraphrases)
or not (near misses: the same wording around a different subject, number or direction), for
`aigw-report cache-eval`. Composed from the lists below, written for this project; rerun it
after editing them. Deterministic."""

import json
import os

COUNTRIES = [("France", "Germany"), ("Japan", "China"), ("Canada", "Mexico"), ("Italy", "Spain"),
             ("Brazil", "Argentina"), ("Egypt", "Kenya"), ("Norway", "Sweden"), ("India", "Pakistan"),
             ("Australia", "New Zealand"), ("Portugal", "Greece"), ("Peru", "Chile"), ("Poland", "Austria")]
CAPITAL = [("What is the capital of {}?", "Which city is the capital of {}?"),
           ("What's the capital city of {}?", "Tell me the capital of {}."),
           ("Name the capital of {}.", "what is {}'s capital city")]
LANGS = [("Python", "JavaScript"), ("Rust", "Go"), ("Java", "C#"), ("Ruby", "PHP"), ("Kotlin", "Swift"),
         ("TypeScript", "Python"), ("C++", "Rust"), ("Go", "Java")]
TASKS = [("reverse a list", "sort a list"), ("read a file line by line", "write a file line by line"),
         ("parse JSON", "serialise JSON"), ("convert a string to an integer", "convert an integer to a string")]
HOWTO = [("How do I {t} in {l}?", "What is the way to {t} in {l}?"),
         ("How can I {t} in {l}?", "In {l}, how do you {t}?")]
WORDS = [("ephemeral", "ethereal"), ("ubiquitous", "ambiguous"), ("benevolent", "malevolent"),
         ("pragmatic", "dogmatic"), ("meticulous", "ridiculous"), ("candid", "candied"),
         ("prudent", "impudent"), ("eloquent", "elegant"), ("lucid", "lurid"), ("frugal", "fugal")]
DEFINE = [("What does '{}' mean?", "Define the word '{}'."), ("What is the meaning of {}?", "Give me the definition of {}.")]
UNITS = [("miles", "kilometers"), ("pounds", "kilograms"), ("inches", "centimeters"), ("gallons", "liters"),
         ("Fahrenheit", "Celsius"), ("feet", "meters")]
NUMBERS = [5, 12, 30, 100, 250]
CONVERT = ("Convert {n} {a} to {b}.", "How many {b} is {n} {a}?")
PHRASES = [("good morning", "good night"), ("thank you very much", "thank you"), ("where is the station", "where is the hotel"),
           ("I am hungry", "I am thirsty"), ("see you tomorrow", "see you later")]
TONGUES = [("French", "Spanish"), ("German", "Italian"), ("Japanese", "Korean"), ("Portuguese", "Dutch")]
TRANSLATE = ("Translate '{p}' into {t}.", "How do you say '{p}' in {t}?")
SUMS = [(17, 25), (123, 456), (9, 99), (64, 36), (1000, 24)]
MATH = [("What is {a} plus {b}?", "Add {a} and {b}."), ("What is {a} times {b}?", "Multiply {a} by {b}.")]


def pairs():
    out = []
    for (x, y) in COUNTRIES:
        for (p, q) in CAPITAL:
            out.append((p.format(x), q.format(x), True))
            out.append((p.format(x), p.format(y), False))
    for (l, l2) in LANGS:
        for (t, t2) in TASKS:
            p, q = HOWTO[(len(out)) % 2]
            out.append((p.format(t=t, l=l), q.format(t=t, l=l), True))
            out.append((p.format(t=t, l=l), p.format(t=t2, l=l) if len(out) % 3 else p.format(t=t, l=l2), False))
    for (w, w2) in WORDS:
        for (p, q) in DEFINE:
            out.append((p.format(w), q.format(w), True))
            out.append((p.format(w), p.format(w2), False))
    for (a, b) in UNITS:
        for n in NUMBERS[:3]:
            out.append((CONVERT[0].format(n=n, a=a, b=b), CONVERT[1].format(n=n, a=a, b=b), True))
            out.append((CONVERT[0].format(n=n, a=a, b=b), CONVERT[0].format(n=n, a=b, b=a), False))
        out.append((CONVERT[0].format(n=NUMBERS[3], a=a, b=b), CONVERT[0].format(n=NUMBERS[4], a=a, b=b), False))
    for (ph, ph2) in PHRASES:
        for (t, t2) in TONGUES:
            out.append((TRANSLATE[0].format(p=ph, t=t), TRANSLATE[1].format(p=ph, t=t), True))
            out.append((TRANSLATE[0].format(p=ph, t=t), TRANSLATE[0].format(p=ph, t=t2) if len(out) % 2 else
                        TRANSLATE[0].format(p=ph2, t=t), False))
    for (a, b) in SUMS:
        for (p, q) in MATH:
            out.append((p.format(a=a, b=b), q.format(a=a, b=b), True))
            out.append((p.format(a=a, b=b), p.format(a=a, b=b + 1), False))
    return out


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "pairs.jsonl"), "w") as f:
        for a, b, same in pairs():
            f.write(json.dumps({"a": a, "b": b, "same": same}) + "\n")
    print(len(pairs()), "pairs")
