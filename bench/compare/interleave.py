#!/usr/bin/env python3
"""Scenario 9's timer: runs each named command once per round, in turn, for
warm-up rounds and then measured rounds, so that every command sees the
same load (a machine whose load drifts during a run moves both rows, not
one). Prints one line per command: name, median wall ms, mean CPU ms (user
+ system of the command's whole process tree, from the children's rusage).

    interleave.py --runs N --warmup W [--gap MS] [--prepare-copy SRC DST] NAME CMD [NAME CMD ...]

CMD is one string, split as the shell would (`shlex`) but run without one:
leading `VAR=value` words go to its environment, and `{n}` becomes a number
unique to the run (container ids). `--prepare-copy` copies SRC to DST before
every run (a bundle's pristine config.json). `--gap` pauses after every run
(default 0: back to back), so that what a run leaves to finish in the
background (the kernel dismantling network namespaces, exiting processes)
is done before the next one starts. A command that fails stops the run
with its stderr.
"""
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time


def main(argv):
    runs, warmup, gap, prepare, cases = 10, 2, 0.0, None, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--runs":
            runs, i = int(argv[i + 1]), i + 2
        elif a == "--warmup":
            warmup, i = int(argv[i + 1]), i + 2
        elif a == "--gap":
            gap, i = float(argv[i + 1]) / 1000, i + 2
        elif a == "--prepare-copy":
            prepare, i = (argv[i + 1], argv[i + 2]), i + 3
        else:
            cases.append((argv[i], argv[i + 1]))
            i += 2
    if not cases:
        sys.exit(__doc__)
    serial = 0
    wall = {name: [] for name, _ in cases}
    cpu = {name: [] for name, _ in cases}
    for r in range(warmup + runs):
        for name, cmd in cases:
            if prepare:
                shutil.copy(*prepare)
            serial += 1
            words = shlex.split(cmd.replace("{n}", str(serial)))
            env = dict(os.environ)
            while words and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                k, v = words.pop(0).split("=", 1)
                env[k] = v
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            p = subprocess.run(words, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            ms = (time.perf_counter() - t) * 1000
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if p.returncode != 0:
                sys.exit(f"{name}: `{cmd}` failed (exit {p.returncode}): {p.stderr.decode(errors='replace')}")
            if gap:
                time.sleep(gap)
            if r >= warmup:
                wall[name].append(ms)
                cpu[name].append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    for name, _ in cases:
        print(f"{name}\t{statistics.median(wall[name]):.2f}\t{statistics.mean(cpu[name]):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
