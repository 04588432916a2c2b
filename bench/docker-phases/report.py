"""Runs the rounds for bench/docker-phases.sh and prints the phase table.

argv: CALLS_TSV RUNS RUNTIME... -- LABEL... (one label per runtime)."""
import collections
import statistics
import subprocess
import sys
import time

calls_path, runs = sys.argv[1], int(sys.argv[2])
sep = sys.argv.index("--")
runtimes, labels = sys.argv[3:sep], sys.argv[sep + 1:]
PHASES = ["before create", "create", "create → start", "start", "start → delete", "delete (shim's)",
          "delete → delete", "delete (clean-up)", "after the last delete", "total"]

spans = []
for r in range(runs + 2):
    order = runtimes if r % 2 == 0 else runtimes[::-1]
    for rt in order:
        t0 = time.monotonic() * 1e3
        subprocess.run(["docker", "run", "--rm", f"--runtime={rt}", "boundary-phases-true", "/bin/true"],
                       check=True, stdout=subprocess.DEVNULL)
        t1 = time.monotonic() * 1e3
        if r >= 2:
            spans.append((rt, t0, t1))

calls = []
with open(calls_path) as f:
    for line in f:
        tag, sub, start, dur = line.rstrip("\n").split("\t")
        calls.append((tag, sub, float(start), float(dur)))

values = collections.defaultdict(list)
odd = 0
for rt, t0, t1 in spans:
    values[(rt, "total")].append(t1 - t0)
    mine = [c for c in calls if c[0] == rt and t0 <= c[2] <= t1]
    if [c[1] for c in mine] != ["create", "start", "delete", "delete"]:
        odd += 1
        continue
    c, s, d1, d2 = mine
    end = lambda x: x[2] + x[3]
    for name, v in zip(PHASES, [c[2] - t0, c[3], s[2] - end(c), s[3], d1[2] - end(s), d1[3], d2[2] - end(d1), d2[3], t1 - end(d2)]):
        values[(rt, name)].append(v)

print(f"\n`docker run --rm` of /bin/true, {runs} rounds, medians in ms (runtime calls timed by a wrapper)\n")
print("| phase | " + " | ".join(labels) + " |")
print("|---|" + "---|" * len(labels))
for name in PHASES:
    cells = [f"{statistics.median(values[(rt, name)]):.2f}" if values[(rt, name)] else "" for rt in runtimes]
    print(f"| {name} | " + " | ".join(cells) + " |")
base = statistics.median(values[(runtimes[0], "total")])
print("| total ÷ first column | " + " | ".join(f"{statistics.median(values[(rt, 'total')]) / base:.3f}" for rt in runtimes) + " |")
if odd:
    print(f"\n({odd} runs whose runtime calls were not create, start, delete, delete were left out of the phases)")
