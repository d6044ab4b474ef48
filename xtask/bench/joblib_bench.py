"""The joblib side of `cargo xtask bench`: a long-lived worker driven by the Rust harness.

The harness (`crates/bench/benches/compare`) starts this script with the Python of the
benchmark virtual environment and speaks a line-based JSON protocol over stdin/stdout: one
request per line, one answer per line. A request names an operation (`op`); the answer is
`{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Every time it reports is measured here,
with `time.perf_counter_ns`, around the joblib calls only, so that the interpreter's start-up
and the protocol never count.

Operations:
- `hello`: the versions of Python, joblib and numpy;
- `setup` (`w`, `dir`, parameters): prepares workload `w` in its own cache folder `dir`;
- `sample` (`w`, `iters`): runs `iters` operations of the workload and returns `ns`, their
  total time (some workloads do untimed preparation inside the sample, e.g. emptying the
  cache before a miss);
- `conc_setup` (`dir`) and `conc_run` (`n`, `start_at_ns`): the concurrent-hits workload,
  run by two workers at once, each waiting for the same wall-clock instant before its `n` hits;
- `teardown`: forgets the workload's state; `quit`: exits.

Inputs equal the Rust side's: the int 42; the list 0..100; arrays `arange(n) * 0.5` of float64;
the dict `{"key-i": i}` of 100,000 entries; array outputs `arange(n) * 1.0`.
"""

import json
import os
import platform
import shutil
import sys
import time
import warnings

import joblib
import numpy as np
from joblib import Memory

# joblib reports a failed write (a full disk, say) as a warning and goes on without caching:
# here it fails the sample instead, so that no figure comes from a cache that did not work.
warnings.filterwarnings("error", category=Warning, module=r"joblib\..*")


def square(x):
    """The small function every hit and miss workload memoizes."""
    return x * x


def total(values):
    """A function of a list of ints."""
    return sum(values)


def first(array):
    """A function of an array argument."""
    return float(array[0])


BIG = {"array": None}


def big_output(_key):
    """A function whose output is the large array prepared by the workload."""
    return BIG["array"]


class State:
    """What the current workload needs between samples."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.w = None
        self.func = None
        self.memory = None
        self.arg = None
        self.next = 0
        self.dir = None
        self.params = {}
        self.samples = 0
        BIG["array"] = None


STATE = State()


def timed(fn, iters):
    """Runs `fn` `iters` times; returns the total nanoseconds."""
    start = time.perf_counter_ns()
    for _ in range(iters):
        fn()
    return time.perf_counter_ns() - start


def populate(memory, n):
    func = memory.cache(square)
    for i in range(n):
        func(i)
    items = len(memory.store_backend.get_items())
    if items != n:
        raise RuntimeError(f"{items} entries stored instead of {n}")
    return func


def setup(req):
    s = STATE
    s.reset()
    s.w = w = req["w"]
    s.dir = req["dir"]
    s.params = req
    os.makedirs(s.dir, exist_ok=True)
    if w == "hit_int":
        s.memory = Memory(s.dir, verbose=0)
        s.func = s.memory.cache(square)
        s.arg = 42
        s.func(s.arg)
    elif w == "hit_list":
        s.memory = Memory(s.dir, verbose=0)
        s.func = s.memory.cache(total)
        s.arg = list(range(req["n"]))
        s.func(s.arg)
    elif w == "hit_array":
        s.memory = Memory(s.dir, verbose=0)
        s.func = s.memory.cache(first)
        s.arg = np.arange(req["n"], dtype=np.float64) * 0.5
        s.func(s.arg)
    elif w == "miss_tiny":
        s.memory = Memory(s.dir, verbose=0)
        s.func = s.memory.cache(square)
        s.next = 1_000_000
    elif w in ("miss_big", "persist"):
        BIG["array"] = np.arange(req["n"], dtype=np.float64) * 1.0
        s.memory = Memory(s.dir, verbose=0)
        s.func = s.memory.cache(big_output)
        s.next = 1
    elif w in ("reload_mmap", "reload_copy"):
        BIG["array"] = np.arange(req["n"], dtype=np.float64) * 1.0
        mode = "r" if w == "reload_mmap" else None
        s.memory = Memory(s.dir, mmap_mode=mode, verbose=0)
        s.func = s.memory.cache(big_output)
        s.func(1)
        # The output lives on disk now; the worker keeps no copy of its own.
        BIG["array"] = None
        s.arg = req["probe"]
    elif w == "hash_array":
        s.arg = np.arange(req["n"], dtype=np.float64) * 0.5
    elif w == "hash_dict":
        s.arg = {f"key-{i}": i for i in range(req["n"])}
    elif w == "populate":
        s.next = 0
    elif w == "list":
        s.memory = Memory(s.dir, verbose=0)
        populate(s.memory, req["n"])
    elif w in ("reduce_half", "reduce_all"):
        template = os.path.join(s.dir, "template")
        populate(Memory(template, verbose=0), req["n"])
    else:
        raise ValueError(f"unknown workload {w!r}")
    return {}


def sample(req):
    s = STATE
    w = s.w
    iters = int(req["iters"])
    if w in ("hit_int", "hit_list", "hit_array"):
        func, arg = s.func, s.arg
        return {"ns": timed(lambda: func(arg), iters)}
    if w == "miss_tiny":
        func = s.func
        start = s.next
        s.next += iters
        values = iter(range(start, start + iters))
        return {"ns": timed(lambda: func(next(values)), iters)}
    if w in ("miss_big", "persist"):
        ns = 0
        for _ in range(iters):
            # Untimed: the previous sample's entry goes, so that the disk holds one at a time.
            s.memory.clear(warn=False)
            func = s.memory.cache(big_output)
            key = s.next
            s.next += 1
            start = time.perf_counter_ns()
            func(key)
            ns += time.perf_counter_ns() - start
        return {"ns": ns}
    if w in ("reload_mmap", "reload_copy"):
        func, probe = s.func, s.arg
        return {"ns": timed(lambda: float(func(1)[probe]), iters)}
    if w in ("hash_array", "hash_dict"):
        arg = s.arg
        return {"ns": timed(lambda: joblib.hash(arg), iters)}
    if w == "populate":
        ns = 0
        for _ in range(iters):
            folder = os.path.join(s.dir, f"run-{s.samples}")
            s.samples += 1
            memory = Memory(folder, verbose=0)
            start = time.perf_counter_ns()
            populate(memory, s.params["n"])
            ns += time.perf_counter_ns() - start
            # Kept until the workload ends, as the other contenders' stores are (deleting
            # 10,000 files slows the next files made on ext4).
        return {"ns": ns}
    if w == "list":
        memory = s.memory
        return {"ns": timed(lambda: memory.reduce_size(items_limit=10**9), iters)}
    if w in ("reduce_half", "reduce_all"):
        limit = s.params["n"] // 2 if w == "reduce_half" else 0
        ns = 0
        for _ in range(iters):
            work = os.path.join(s.dir, "work")
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(os.path.join(s.dir, "template"), work)
            memory = Memory(work, verbose=0)
            start = time.perf_counter_ns()
            memory.reduce_size(items_limit=limit)
            ns += time.perf_counter_ns() - start
        return {"ns": ns}
    raise ValueError(f"no workload set up (got {w!r})")


def conc_setup(req):
    s = STATE
    s.reset()
    s.memory = Memory(req["dir"], verbose=0)
    s.func = s.memory.cache(square)
    s.func(42)
    return {}


def conc_run(req):
    s = STATE
    delay = req["start_at_ns"] - time.time_ns()
    if delay > 0:
        time.sleep(delay / 1e9)
    func = s.func
    return {"ns": timed(lambda: func(42), int(req["n"]))}


def hello(_req):
    return {
        "python": platform.python_version(),
        "joblib": joblib.__version__,
        "numpy": np.__version__,
    }


def teardown(_req):
    STATE.reset()
    return {}


OPS = {
    "hello": hello,
    "setup": setup,
    "sample": sample,
    "conc_setup": conc_setup,
    "conc_run": conc_run,
    "teardown": teardown,
}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if req.get("op") == "quit":
                break
            answer = OPS[req["op"]](req)
            answer["ok"] = True
        except Exception as err:  # reported to the harness, which marks the row as failed
            answer = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
