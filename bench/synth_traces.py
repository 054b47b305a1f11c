#!/usr/bin/env python3
"""bench/synth_traces.py DIR — writes three synthetic bin64 traces (big-endian int64 keys) into
DIR for bench/cache_replay.c, so that whole-cache hit ratios can be compared on traffic unlike
scarab-recs, the only trace of ../shared/traces large enough for caches that sample their hits:

  loop.bin  keys 1..100,000 in order, 10 times (1,000,000 requests): recency fails, a frequency
            or scan-resistant policy keeps part of the loop
  zipf.bin  1,500,000 requests drawn from 1,000,000 keys with Zipf exponent 0.9
  mix.bin   four rounds of 300,000 Zipf requests (as above) then 300,000 of a loop of 80,000
            other keys (2,400,000 requests): the best policy changes with the phase

Fixed seed (5): the same files every time. Pure Python, about a minute."""
import bisect
import os
import random
import struct
import sys


def write(path, keys):
    with open(path, "wb") as f:
        f.write(b"".join(struct.pack(">q", k) for k in keys))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench/synth_traces.py DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    random.seed(5)
    write(os.path.join(out, "loop.bin"), [i % 100000 + 1 for i in range(1000000)])
    n, s = 1000000, 0.9
    cdf, total = [], 0.0
    for i in range(1, n + 1):
        total += 1 / i**s
        cdf.append(total)

    def zipf():
        return bisect.bisect_left(cdf, random.random() * total) + 1

    write(os.path.join(out, "zipf.bin"), [zipf() for _ in range(1500000)])
    mix = []
    for _ in range(4):
        mix += [zipf() for _ in range(300000)]
        mix += [10000000 + i % 80000 for i in range(300000)]
    write(os.path.join(out, "mix.bin"), mix)


if __name__ == "__main__":
    main()
