#!/usr/bin/env python3
"""Phases of `runc run` and `boundary-runc run` from `perf script` output of
sched:sched_process_{exec,fork,exit} and sched:sched_switch (bench/timeline.sh).

    timeline.py PERF_TXT SHIM_PATH [SKIP]

Each run starts at the exec of runc (plain) or of SHIM_PATH (ours); the
first SKIP runs of each kind are left out. Times are ms from that start.
"""
import collections
import re
import statistics
import sys

LINE = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+sched:(\S+):\s*(.*)$")


def events(path):
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if m:
                comm, pid, tid, cpu, t, ev, rest = m.groups()
                out.append((float(t) * 1000, ev, comm.strip(), int(pid), int(tid), int(cpu), rest))
    return out


def field(rest, name):
    m = re.search(rf"\b{name}=(\S+)", rest)
    return m.group(1) if m else None


def runs(ev, shim):
    starts = []
    for i, (t, kind, comm, pid, tid, cpu, rest) in enumerate(ev):
        if kind != "sched_process_exec":
            continue
        name = field(rest, "filename")
        if name == shim:
            starts.append(("boundary-runc run", i))
        elif name in ("/usr/sbin/runc", "/usr/bin/runc"):
            # runc exec'd by the shim keeps the shim's pid: not a run of its own.
            if not any(k == "boundary-runc run" and ev[j][3] == pid for k, j in starts[-1:]):
                starts.append(("runc run", i))
    return starts


def phases(ev, i0, ours):
    """Marks of one run, in ms from its start; `ours`: a boundary-runc run."""
    t0, _, _, root, _, _, _ = ev[i0]
    marks = {}
    parent = {}  # child pid -> parent pid (processes and threads alike)
    hooks = []  # (pid, exec time)
    builder = None
    init = None
    for t, kind, comm, pid, tid, cpu, rest in ev[i0:]:
        if t - t0 > 1000:
            break
        rel = t - t0
        if kind == "sched_process_fork":
            child = int(field(rest, "child_pid"))
            parent[child] = pid
            # The shim forks an intermediate that forks the builder.
            if ours and builder is None and "runc exec" not in marks and parent.get(pid) == root and pid != root:
                builder = child
            elif builder is not None and pid == builder and "builder starts" not in marks:
                marks["builder starts"] = rel
        elif kind == "sched_process_exec":
            name = field(rest, "filename")
            if pid == root and name != None and name.endswith("/runc") and rel > 0:
                marks.setdefault("runc exec", rel)
            elif name == "/proc/self/exe" and init is None and parent.get(pid) == root:
                init = pid
                marks["init exec"] = rel
            elif name and name.endswith("boundary-hook"):
                hooks.append((pid, rel))
            elif name == "/bin/sh" and init is not None:
                marks.setdefault("container exec", rel)
        elif kind == "sched_process_exit" and "group_dead=true" in rest:
            if pid == builder:
                marks["builder done"] = rel
            for n, (hp, ht) in enumerate(hooks[:2]):
                if pid == hp:
                    marks[("gate hook" if n == 0 else "poststop hook")] = ht
                    marks[("gate hook" if n == 0 else "poststop hook") + " done"] = rel
            if pid == root:
                marks["exit"] = rel
                break
    marks.setdefault("runc exec", 0.0)
    return marks


def cpu_by_comm(ev, start, end):
    """ms of CPU per command name between start and end, from sched_switch."""
    cur, acc = {}, collections.Counter()
    for t, kind, comm, pid, tid, cpu, rest in ev:
        if kind != "sched_switch":
            continue
        nxt = re.sub(r"/\d+$", "", (re.search(r"next_comm=(.*?) next_pid=", rest) or [None, "?"])[1])
        if t < start:
            cur[cpu] = (nxt, start)
            continue
        if t > end:
            break
        if cpu in cur:
            name, since = cur[cpu]
            acc[name] += t - since
        cur[cpu] = (nxt, t)
    for name, since in cur.values():
        acc[name] += end - since
    return acc


def main():
    path, shim = sys.argv[1], sys.argv[2]
    skip = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    ev = events(path)
    by_kind = collections.defaultdict(list)
    windows = [("runc exec", "init exec"), ("init exec", "container exec"), ("container exec", "exit"), (None, "exit")]
    cpu = {w: collections.defaultdict(collections.Counter) for w in windows}
    for kind, i in runs(ev, shim):
        by_kind[kind].append(i)
    rows = collections.defaultdict(dict)
    for kind, starts in by_kind.items():
        starts = starts[skip:]
        all_marks = [phases(ev, i, kind == "boundary-runc run") for i in starts]
        for name in sorted({n for m in all_marks for n in m}):
            vals = [m[name] for m in all_marks if name in m]
            rows[name][kind] = (statistics.median(vals), len(vals))
        for i, m in zip(starts, all_marks):
            t0 = ev[i][0]
            for w in windows:
                if all(b is None or b in m for b in w):
                    a = t0 + (m[w[0]] if w[0] else 0.0)
                    for name, ms in cpu_by_comm(ev, a, t0 + m[w[1]]).items():
                        cpu[w][kind][name] += ms / len(starts)
    kinds = ["runc run", "boundary-runc run"]
    print(f"\nmedian ms from the start of each run ({', '.join(f'{k}: {len(by_kind[k][skip:])} runs' for k in kinds)})\n")
    print(f"| mark | {' | '.join(kinds)} |")
    print("|---|---|---|")
    order = sorted(rows, key=lambda n: rows[n].get("boundary-runc run", rows[n].get("runc run"))[0])
    for name in order:
        cells = [f"{rows[name][k][0]:.2f}" if k in rows[name] else "" for k in kinds]
        print(f"| {name} | {' | '.join(cells)} |")
    for w in windows:
        since = w[0] or "the run's start"
        print(f"\nCPU (ms per run) from {since} to {w[1]}, by command:\n")
        names = sorted({n for k in kinds for n in cpu[w][k]}, key=lambda n: -max(cpu[w][k][n] for k in kinds))[:12]
        print(f"| command | {' | '.join(kinds)} |")
        print("|---|---|---|")
        for n in names:
            shown = "idle" if n.startswith("swapper") else n
            print(f"| {shown} | {' | '.join(f'{cpu[w][k][n]:.2f}' for k in kinds)} |")


if __name__ == "__main__":
    main()
