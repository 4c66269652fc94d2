#!/usr/bin/env python3
"""Writes orders.jsonl: the assembly time of every order finished at four assembly stations
of a mixed-model line during one day (06:00-16:00 UTC, 11 June 2024).

Deterministic (a fixed seed, Python's Mersenne Twister), standard library only. From the
repository root:

    python3 examples/mass-customization/make-orders.py > examples/mass-customization/orders.jsonl

Lot size one: each order is one of three product variants (A 45 %, B 35 %, C 20 %), whose
assembly time is normal around its own standard time (A 120 s, B 180 s, C 240 s). A station
works in batch runs of 10 to 40 orders, one finished every assembly time plus 10 to 60 s of
handling, and pauses 25 to 50 minutes between runs (material supply, breaks). About 2 % of
the orders need rework and take 2.5 to 3 times longer. Every line is a flat observation:
dataSourceManifestReferenceID (the station), name, timestamp, value (seconds) and
productType, which the engine keeps as an attribute.

`--runs` prints the batch runs instead (station, first and last order, orders), and
`--rework` the reworked orders (station, time, variant, seconds), to check the results.
"""

import json
import random
import sys
from datetime import datetime, timedelta, timezone

SEED = 20240611
START = datetime(2024, 6, 11, 6, 0, tzinfo=timezone.utc)
END = datetime(2024, 6, 11, 16, 0, tzinfo=timezone.utc)
STATIONS = ["station-1", "station-2", "station-3", "station-4"]
# Share of the orders, mean and standard deviation of the assembly time in seconds.
VARIANTS = {"A": (0.45, 120.0, 8.0), "B": (0.35, 180.0, 10.0), "C": (0.20, 240.0, 12.0)}


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def generate():
    rng = random.Random(SEED)
    names = sorted(VARIANTS)
    weights = [VARIANTS[v][0] for v in names]
    orders, runs, rework = [], [], []
    for station in STATIONS:
        t = START + timedelta(minutes=rng.randint(0, 10))
        done = False
        while not done:
            run = []
            for _ in range(rng.randint(10, 40)):
                variant = rng.choices(names, weights)[0]
                _, mean, sd = VARIANTS[variant]
                seconds = max(30.0, rng.gauss(mean, sd))
                reworked = rng.random() < 0.02
                if reworked:
                    seconds *= rng.uniform(2.5, 3.0)
                seconds = round(seconds, 1)
                t += timedelta(seconds=seconds + rng.randint(10, 60))
                if t >= END:
                    done = True
                    break
                orders.append((t, station, variant, seconds))
                run.append(t)
                if reworked:
                    rework.append((station, stamp(t), variant, seconds))
            if run:
                runs.append((station, stamp(run[0]), stamp(run[-1]), len(run)))
            t += timedelta(minutes=rng.randint(25, 50))
    orders.sort(key=lambda o: (o[0], o[1]))
    return orders, runs, rework


def main() -> None:
    orders, runs, rework = generate()
    if "--runs" in sys.argv:
        for r in runs:
            print(*r)
        return
    if "--rework" in sys.argv:
        for r in rework:
            print(*r)
        return
    for t, station, variant, seconds in orders:
        print(json.dumps({
            "dataSourceManifestReferenceID": station,
            "name": "AssemblyTime",
            "timestamp": stamp(t),
            "value": seconds,
            "productType": variant,
        }))


if __name__ == "__main__":
    main()
