"""Aggregates gdb stack samples (bench/host-profile.sh) into where each thread's time goes.

For every thread that was busy in at least one sample (its innermost frame is not
a wait: futex, poll, sleep, condition variable, yield), prints the share of its
samples each function is on the stack (inclusive) and innermost (self). Generic
arguments are elided, so a function's instantiations count together.

    python3 scripts/host_profile.py bench/out/host-stacks.txt [--top 30]
    python3 scripts/host_profile.py --cpu PID [--window 5]   # each thread's CPU use
"""

import argparse
import collections
import os
import re
import time

FRAME = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(.+?)\s\(")
THREAD = re.compile(r'^Thread \d+ \(.*?LWP (\d+)\)(?: "([^"]*)")?')
WAITS = ("futex", "poll", "nanosleep", "clock_nanosleep", "pthread_cond", "sched_yield", "epoll", "__GI___poll", "syscall", "park")


def simplify(name):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    # Elide generic arguments: <...> nested.
    out, depth = [], 0
    for ch in name:
        if ch == "<":
            if depth == 0:
                out.append("<…>")
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def parse(path):
    """{thread: [stack, ...]}, each stack innermost first."""
    threads = collections.defaultdict(list)
    current = None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if line.startswith("=== sample"):
            current = None
            continue
        m = THREAD.match(line)
        if m:
            current = (m.group(2) or "?") + " " + m.group(1)
            threads[current].append([])
            continue
        m = FRAME.match(line)
        if m and current is not None:
            threads[current][-1].append(simplify(m.group(1)))
    return threads


def thread_times(pid):
    """{(tid, name): user + system clock ticks} for each thread of `pid`."""
    times = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        times[(tid, name)] = int(fields[11]) + int(fields[12])
    return times


def cpu_table(pid, window):
    before = thread_times(pid)
    time.sleep(window)
    after = thread_times(pid)
    ticks = os.sysconf("SC_CLK_TCK") * window
    print(f"| thread | CPU over {window} s |")
    print("|---|---|")
    for key, t in sorted(after.items(), key=lambda kv: before.get(kv[0], 0) - kv[1]):
        used = (t - before.get(key, 0)) / ticks
        if used >= 0.01:
            print(f"| {key[1]} {key[0]} | {used:.0%} |")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stacks", nargs="?")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--cpu", type=int, metavar="PID", help="print each thread's CPU use instead")
    parser.add_argument("--window", type=float, default=5.0)
    args = parser.parse_args()
    if args.cpu:
        cpu_table(args.cpu, args.window)
        return
    threads = parse(args.stacks)
    for thread, stacks in sorted(threads.items(), key=lambda kv: -len(kv[1])):
        busy = [s for s in stacks if s and not any(w in s[0] for w in WAITS)]
        if not busy:
            continue
        print(f"## thread {thread}: busy in {len(busy)} of {len(stacks)} samples\n")
        inclusive = collections.Counter(f for s in busy for f in set(s))
        own = collections.Counter(s[0] for s in busy)
        print("| on stack | innermost | function |")
        print("|---|---|---|")
        for name, n in inclusive.most_common(args.top):
            print(f"| {n / len(busy):.0%} | {own.get(name, 0) / len(busy):.0%} | `{name[:150]}` |")
        print()


if __name__ == "__main__":
    main()
