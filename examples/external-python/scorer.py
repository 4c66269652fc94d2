#!/usr/bin/env python3
"""A rolling z-score scorer for DDA's `external` processor (standard library only).

It speaks the protocol of docs/external.md: one JSON request per line on standard input,
one JSON answer per line on standard output.

- {"observations": [...]}: for each numeric observation, the z-score of its value against
  the previous SCORER_WINDOW values of the same series (source and name): emitted as
  `<name>-zscore` with the same source and timestamp, and attributes `input`, `mean`,
  `stddev`, `count` and `anomaly` (|z| above SCORER_THRESHOLD). The first two values of a
  series have no spread to compare with: they score 0. Values that are not numbers are
  rejected (they go to the engine's dead letters with the reason).
- {"watermark": "..."} and {"flush": true}: nothing is held back, so nothing to emit.

Settings come from the environment, which the engine configuration sets (dda.toml `env`):
SCORER_WINDOW (default 30) and SCORER_THRESHOLD (default 3). Logs go to standard error,
which the engine forwards to its log. The windows live in this process only: a restart
starts them afresh.
"""

import json
import math
import os
import sys
from collections import defaultdict, deque

WINDOW = int(os.environ.get("SCORER_WINDOW", "30"))
THRESHOLD = float(os.environ.get("SCORER_THRESHOLD", "3"))

# (source, name) -> the previous values, newest last
history = defaultdict(lambda: deque(maxlen=WINDOW))


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def score(observation):
    value = observation["value"]
    past = history[(observation.get("dataSourceManifestReferenceID"), observation["name"])]
    n = len(past)
    mean = sum(past) / n if n else value
    # Sample standard deviation of the window (n - 1 in the denominator).
    stddev = math.sqrt(sum((x - mean) ** 2 for x in past) / (n - 1)) if n >= 2 else 0.0
    z = (value - mean) / stddev if stddev > 0 else 0.0
    past.append(value)
    result = {
        "name": observation["name"] + "-zscore",
        "timestamp": observation["timestamp"],
        "value": z,
        "input": value,
        "mean": mean,
        "stddev": stddev,
        "count": n,
        "anomaly": abs(z) > THRESHOLD,
    }
    if "dataSourceManifestReferenceID" in observation:
        result["dataSourceManifestReferenceID"] = observation["dataSourceManifestReferenceID"]
    return result


def answer(request):
    if "observations" in request:
        emit, reject = [], []
        for index, observation in enumerate(request["observations"]):
            if is_number(observation.get("value")):
                emit.append(score(observation))
            else:
                reject.append({"index": index, "reason": "a z-score needs a number, got %r" % (observation.get("value"),)})
        return {"emit": emit, "reject": reject}
    return {}


def main():
    print("scorer: window %d, threshold %g" % (WINDOW, THRESHOLD), file=sys.stderr, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        sys.stdout.write(json.dumps(answer(json.loads(line))) + "\n")
        sys.stdout.flush()
    print("scorer: end of input, %d series scored" % len(history), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
