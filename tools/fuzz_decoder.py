"""Fuzz the pgoutput decoder: mutations of real captured messages, and random bytes.

    python -m tools.fuzz_decoder --count 1000000 [--seed N]

Every input must either decode or raise cdc.errors.DecodeError: anything else escaping, an
input that takes longer than --max-ms, or peak memory beyond --max-mb fails the run (exit 1).
Prints one summary line (and the first failing input, hex, to reproduce it).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path

from cdc.errors import DecodeError
from cdc.pipeline.pgoutput import decode_message

VECTORS = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "pgoutput_pg15.json"
TYPE_BYTES = b"BMCORYIUDTSEcAbPKrp"


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        kind = rng.randrange(7)
        if kind == 0 and buf:  # flip a byte
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif kind == 1:  # insert bytes
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = rng.randbytes(rng.choice((1, 2, 4, 8)))
        elif kind == 2 and buf:  # delete a run
            at = rng.randrange(len(buf))
            del buf[at : at + rng.choice((1, 2, 4, 16))]
        elif kind == 3:  # truncate
            del buf[rng.randrange(len(buf) + 1) :]
        elif kind == 4 and len(buf) >= 5:  # a length or count field made huge or negative
            at = rng.randrange(len(buf) - 4)
            buf[at : at + 4] = rng.choice(
                (b"\x7f\xff\xff\xff", b"\xff\xff\xff\xff", b"\0\0\xff\xff")
            )
        elif kind == 5 and buf:  # another message type byte
            buf[0] = rng.choice(TYPE_BYTES)
        else:  # append garbage
            buf += rng.randbytes(rng.randrange(1, 32))
    return bytes(buf)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    # A hang detector, not a speed test: a loaded machine pauses anything for a few ms.
    parser.add_argument("--max-ms", type=float, default=1000.0, help="slowest allowed input")
    parser.add_argument("--max-mb", type=float, default=64.0, help="growth of peak RSS")
    args = parser.parse_args(argv)

    vectors = [
        (bytes.fromhex(v["hex"]), bool(v["in_stream"])) for v in json.loads(VECTORS.read_text())
    ]
    rng = random.Random(args.seed)
    decoded = rejected = 0
    slowest = 0.0
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    for i in range(args.count):
        if i % 10 == 9:
            data, in_stream = rng.randbytes(rng.randrange(64)), rng.random() < 0.5
        else:
            base, in_stream = rng.choice(vectors)
            data = mutate(rng, base)
        t0 = time.perf_counter()
        try:
            decode_message(data, in_stream=in_stream)
            decoded += 1
        except DecodeError:
            rejected += 1
        except Exception as exc:  # the one thing that must never happen
            print(f"FAIL: {type(exc).__name__}: {exc} for input {data.hex()} "
                  f"(in_stream={in_stream})")  # fmt: skip
            return 1
        elapsed_ms = (time.perf_counter() - t0) * 1000
        if elapsed_ms > slowest:
            slowest = elapsed_ms
            slowest_input = data
    total = time.perf_counter() - started
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb) / 1024
    print(
        f"fuzz_decoder: {args.count} inputs (seed {args.seed}) in {total:.1f}s: {decoded} decoded, "
        f"{rejected} DecodeError, nothing else; slowest {slowest:.2f} ms, "
        f"RSS growth {peak_mb:.1f} MB"
    )
    if slowest > args.max_ms:
        print(f"FAIL: an input took {slowest:.1f} ms: {slowest_input.hex()}")
        return 1
    if peak_mb > args.max_mb:
        print(f"FAIL: peak RSS grew by {peak_mb:.1f} MB")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
