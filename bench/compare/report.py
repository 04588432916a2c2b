#!/usr/bin/python3
"""The table of bench/compare.sh: medians over rounds, ratios, targets.

Usage: report.py RESULTS.tsv MACHINE.md TITLE > table.md
RESULTS lines: scenario, peer, round, metric, value (tab-separated; value
`nan` for a run that failed). A median of a figure with failed rounds is
taken over the rounds that worked and marked with how many failed.
"""

import math
import statistics
import sys
from collections import defaultdict

UNSUPPORTED = float("inf")  # the peer cannot do it (squid and HTTP/2)
PEERS = ["direct", "squid", "mitmproxy", "boundary-runc"]
B = "boundary-runc"


def load(path):
    runs = defaultdict(list)
    with open(path) as f:
        for line in f:
            scen, peer, _round, metric, value = line.rstrip("\n").split("\t")
            runs[(scen, peer, metric)].append(UNSUPPORTED if value == "unsupported" else float(value))
    return runs


class Figures:
    def __init__(self, runs):
        self.runs = runs

    def median(self, scen, peer, metric):
        vals = self.runs.get((scen, peer, metric), [])
        ok = [v for v in vals if not math.isnan(v) and v != UNSUPPORTED]
        return statistics.median(ok) if ok else None

    def failed(self, scen, peer, metric):
        vals = self.runs.get((scen, peer, metric), [])
        return sum(1 for v in vals if math.isnan(v)), len(vals)

    def cell(self, scen, peer, metric, unit_fmt):
        vals = self.runs.get((scen, peer, metric), [])
        m = self.median(scen, peer, metric)
        bad, n = self.failed(scen, peer, metric)
        if n == 0:
            return "—"
        if all(v == UNSUPPORTED for v in vals):
            return "not supported"
        if m is None:
            return "failed"
        text = unit_fmt(m)
        return f"{text} ({bad}/{n} failed)" if bad else text


def num(v):
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ms(v):
    return f"{v:.2f} ms"


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "—"


# Each check: (text, function(fig) -> (ok or None when unknown, shown value)).
def at_least(scen, metric, peer, factor, b=B):
    def check(fig):
        x, y = fig.median(scen, b, metric), fig.median(scen, peer, metric)
        if x is None or not y:
            return None, f"{peer}: n/a"
        return x >= factor * y, f"{x / y:.2f}× {peer}"
    return f"≥{factor:g}× {peer}", check


def added_at_most(scen, metric, limit_ms):
    def check(fig):
        x, y = fig.median(scen, B, metric), fig.median(scen, "direct", metric)
        if x is None or y is None:
            return None, "n/a"
        return x - y <= limit_ms, f"{x - y:+.2f} ms"
    return f"added ≤{limit_ms:g} ms", check


def drop_at_most(scen, metric, base, other, pct):
    def check(fig):
        x, y = fig.median(scen, other, metric), fig.median(scen, base, metric)
        if x is None or not y:
            return None, "n/a"
        change = (x / y - 1) * 100
        return change >= -pct, f"{change:+.1f}%"
    return f"≤{pct:g}% fewer req/s", check


def value_at_most(scen, metric, limit, unit):
    def check(fig):
        x = fig.median(scen, B, metric)
        if x is None:
            return None, "n/a"
        return x <= limit, f"{x:.1f} {unit}"
    return f"≤{limit:g} {unit}", check


def ratio_at_most(scen, metric, base, limit):
    def check(fig):
        x, y = fig.median(scen, B, metric), fig.median(scen, base, metric)
        if x is None or not y:
            return None, "n/a"
        return x / y <= limit, f"{x / y:.2f}×"
    return f"≤{limit:g}× {base}", check


# (scenario, label, metric, formatter, checks, baseline peer for 7-9)
ROWS = [
    ("1", "HTTPS keep-alive, 1 KiB, 64 conns (wrk): req/s", "rps", num,
     [at_least("1", "rps", "squid", 3), at_least("1", "rps", "mitmproxy", 10), at_least("1", "rps", "direct", 0.5)]),
    ("1", "… latency p50", "p50_ms", ms, []),
    ("1", "… latency p99", "p99_ms", ms, [added_at_most("1", "p99_ms", 1)]),
    ("2", "HTTPS, new TLS connection per request, 32 conns (wrk, `Connection: close`): conn/s", "rps", num,
     [at_least("2", "rps", "squid", 2)]),
    ("3", "HTTPS download of one big file (curl): MiB/s", "mib_per_s", num, [at_least("3", "mib_per_s", "direct", 0.7)]),
    ("4", "HTTP/2, 4 conns × 100 streams (h2load): req/s", "rps", num, [at_least("4", "rps", "direct", 0.5)]),
    ("5", "plain HTTP keep-alive, 1 KiB, 64 conns (wrk): req/s", "rps", num, []),
    ("6", "SSE, origin write → client read, median", "median_ms", ms, [added_at_most("6", "median_ms", 1)]),
]


def main_table(fig):
    out = ["| # | scenario | direct | squid | mitmproxy | boundary-runc | b÷direct | b÷squid | b÷mitmproxy | target | met? |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for scen, label, metric, fmt, checks in ROWS:
        cells = [fig.cell(scen, p, metric, fmt) for p in PEERS]
        b = fig.median(scen, B, metric)
        ratios = [ratio(b, fig.median(scen, p, metric)) for p in PEERS[:3]]
        out.append(f"| {scen} | {label} | " + " | ".join(cells + ratios) + " | " + verdict(fig, checks))
    out += baseline_rows(fig)
    return "\n".join(out)


def verdict(fig, checks):
    if not checks:
        return "— | — |"
    targets, results = [], []
    for text, check in checks:
        ok, shown = check(fig)
        targets.append(text)
        results.append(f"{'met' if ok else 'n/a' if ok is None else '**missed**'} ({shown})")
    return "; ".join(targets) + " | " + "; ".join(results) + " |"


def baseline_rows(fig):
    """Rows 7-9: the baseline sits in the `direct` column."""
    def row(scen, label, base_peer, metric, fmt, checks, b_peer=B):
        base = fig.cell(scen, base_peer, metric, fmt) if base_peer else "—"
        b = fig.cell(scen, b_peer, metric, fmt)
        r = ratio(fig.median(scen, b_peer, metric), fig.median(scen, base_peer, metric)) if base_peer else "—"
        return f"| {scen} | {label} | {base} | — | — | {b} | {r} | — | — | " + verdict(fig, checks)

    mib = lambda v: f"{v:.1f} MiB"  # noqa: E731
    return [
        row("7", "policy cost: scenario 1 with 10,000 rules (b) vs 1 rule (baseline in *direct*): req/s",
            B, "rps", num, [drop_at_most("7", "rps", B, B + "-10k", 5)], b_peer=B + "-10k"),
        row("8", f"sidecar RSS (keeper + supervisor + worker), idle (PSS: {pss(fig, 'idle_pss_mib')})", None, "idle_rss_mib", mib,
            [value_at_most("8", "idle_rss_mib", 8, "MiB")]),
        row("8", "sidecar RSS, peak under scenario 1", None, "load_rss_mib", mib, []),
        row("8", f"sidecar RSS of {N_IDLE} idle jails, total (PSS: {pss(fig, 'idle_n_pss_mib')})", None, "idle_n_rss_mib", mib,
            [value_at_most("8", "idle_n_rss_mib", 300, "MiB")]),
        row("9", "`run` of /bin/true, same bundle, state and bundle on a tmpfs as /run is on a standard host (interleaved rounds, median; baseline: `runc run`)", "runc", "run_ms", ms,
            [ratio_at_most("9", "run_ms", "runc", 1.25)]),
        row("9", "… the same with bundle and state on this machine's disk", "runc", "run_disk_ms", ms, []),
        row("9", "… CPU time (user + sys, mean) of the `run` process tree; the detached sidecar is not in it", "runc", "run_cpu_ms", ms, []),
        row("9", "… the same, spaced 150 ms apart (one start on a quiet machine, not a burst)", "runc", "run_spaced_ms", ms, []),
        row("9", "`docker run --rm` /bin/true (interleaved rounds, median; baseline: dockerd's runc)", "runc", "docker_ms", ms,
            [ratio_at_most("9", "docker_ms", "runc", 1.10)]),
    ]


def pss(fig, metric):
    v = fig.median("8", B, metric)
    return f"{v:.1f} MiB" if v is not None else "n/a"


if __name__ == "__main__":
    results, machine, title = sys.argv[1], sys.argv[2], sys.argv[3]
    N_IDLE = sys.argv[4] if len(sys.argv) > 4 else "50"
    fig = Figures(load(results))
    print(f"### {title}\n")
    print(main_table(fig))
    print()
    with open(machine) as f:
        print(f.read().rstrip())
