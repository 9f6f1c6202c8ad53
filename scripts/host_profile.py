"""Where a process's host time goes: each thread's CPU use, and a summary of the
folded stacks that `wmx bench train --host-profile FILE` writes (src/profile.rs;
bench/host-profile.sh runs both on the GPU machine).

    python3 scripts/host_profile.py FILE [--top 30] [--thread NAME]   # folded stacks
    python3 scripts/host_profile.py --cpu PID [--window 5]            # each thread's CPU use

For each thread, the summary prints its share of the samples (1 ms of CPU each),
the crates its time is spent in (each sample's innermost frame outside core, alloc
and std), and the functions most often on the stack (inclusive) and innermost
(self). Generic arguments are elided, so a function's instantiations count together.
"""

import argparse
import collections
import os
import re
import time

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


def crate_of(name):
    m = re.match(r"^(?:<…>::)?([A-Za-z_][A-Za-z0-9_]*)::", name)
    return m.group(1) if m else "?"


def summarise(path, top, only):
    threads = collections.defaultdict(list)
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames = stack.split(";")
        threads[frames[0]].append(([simplify(f) for f in frames[1:]], int(count)))
    total = sum(c for stacks in threads.values() for _, c in stacks)
    print(f"{total} samples (1 ms of CPU each)\n")
    for thread, stacks in sorted(threads.items(), key=lambda kv: -sum(c for _, c in kv[1])):
        n = sum(c for _, c in stacks)
        if only and only not in thread:
            continue
        print(f"## thread {thread}: {n} samples, {n / total:.1%}\n")
        inclusive, own, crates = collections.Counter(), collections.Counter(), collections.Counter()
        for frames, c in stacks:
            for f in set(frames):
                inclusive[f] += c
            if frames:
                own[frames[-1]] += c
            named = [crate_of(f) for f in frames if crate_of(f) not in ("?", "core", "alloc", "std")]
            crates[named[-1] if named else "?"] += c
        print("crates: " + ", ".join(f"{k} {v / n:.0%}" for k, v in crates.most_common(12)) + "\n")
        print("| on stack | innermost | function |")
        print("|---|---|---|")
        # Frames on every stack of the thread (its entry point) say nothing.
        for name, c in [kv for kv in inclusive.most_common() if kv[1] < n][:top]:
            print(f"| {c / n:.1%} | {own.get(name, 0) / n:.1%} | `{name[:150]}` |")
        print("\nmost often innermost:\n")
        for name, c in own.most_common(top // 2):
            print(f"| {inclusive[name] / n:.1%} | {c / n:.1%} | `{name[:150]}` |")
        print()


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
    parser.add_argument("--thread", help="only threads whose name contains this")
    args = parser.parse_args()
    if args.cpu:
        cpu_table(args.cpu, args.window)
        return
    summarise(args.stacks, args.top, args.thread)

if __name__ == "__main__":
    main()
