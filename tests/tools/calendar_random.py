#!/usr/bin/env python3
"""Prints random systemd calendar events, one a line, for calendar_test.sh.

usage: calendar_random.py SEED COUNT

Every field gets "*" or a list of numbers, ranges, repetitions and ranged
repetitions drawn near its bounds; some events get weekdays, "~", a year or
a trailing UTC. Some are invalid on purpose (a range past the field's end, a
repetition that cannot repeat): the test requires systemd and Haven to agree
on those too. The same SEED prints the same events.
"""
import random
import sys

DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def item(rng, lo, hi):
    a = rng.randint(lo, hi)
    kind = rng.random()
    if kind < 0.5:
        return str(a)
    b = rng.randint(a, hi)
    step = rng.randint(1, max(1, hi - lo))
    if kind < 0.7:
        return f"{a}..{b}"
    if kind < 0.85:
        return f"{a}/{step}"
    return f"{a}..{b}/{step}"


def field(rng, lo, hi, star=0.4):
    if rng.random() < star:
        return "*"
    return ",".join(item(rng, lo, hi) for _ in range(rng.randint(1, 3)))


def event(rng):
    parts = []
    if rng.random() < 0.3:
        days = []
        for _ in range(rng.randint(1, 2)):
            a = rng.randint(0, 6)
            days.append(DAYS[a] if rng.random() < 0.5
                        else DAYS[a] + ".." + DAYS[rng.randint(a, 6)])
        parts.append(",".join(days))
    if rng.random() < 0.8:
        eom = rng.random() < 0.2
        year = field(rng, 2024, 2030, 0.8)
        date = field(rng, 1, 12) + ("~" if eom else "-") + \
            field(rng, 1, 28 if eom else 31)
        parts.append(year + "-" + date if rng.random() < 0.7 else date)
    if rng.random() < 0.8:
        time = field(rng, 0, 23) + ":" + field(rng, 0, 59)
        if rng.random() < 0.5:
            time += ":" + field(rng, 0, 59, 0.2)
        parts.append(time)
    if not parts:
        parts.append(rng.choice(["daily", "weekly", "hourly", "monthly"]))
    if rng.random() < 0.15:
        parts.append("UTC")
    return " ".join(parts)


def main():
    rng = random.Random(int(sys.argv[1]))
    for _ in range(int(sys.argv[2])):
        print(event(rng))


if __name__ == "__main__":
    main()
