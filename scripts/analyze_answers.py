"""Breaks a run's evaluation into its parts: how often the selected program's value
is right, how often any exit's is (the oracle), and how often the answer text is
right when the value is (copying). Until `wmx report` exists this is the quick look.

    python3 scripts/analyze_answers.py runs/base/*/eval/answers.jsonl
"""
import json, sys, glob
for path in sys.argv[1:]:
    rows = [json.loads(l) for l in open(path)]
    n = len(rows); val_ok = 0; copy_ok = 0; correct = 0; oracle = 0
    for r in rows:
        a = r['answer']
        exp = r['expected']
        import re
        nums = re.findall(r'-?\d+(?:\.\d+)?', exp)
        e = float(nums[0]) if nums else (1.0 if exp.startswith('Yes') else 0.0)
        v = a['value']
        vok = v is not None and abs(v - e) <= 1e-4 * max(1, abs(e)) + 5e-5
        val_ok += vok
        if vok: copy_ok += r['correct']
        correct += r['correct']
        oracle += any(c['outcome'].get('kind') == 'value' and abs(c['outcome']['detail'] - e) <= 1e-4 * max(1, abs(e)) + 5e-5 for c in a['candidates'] if isinstance(c['outcome'].get('detail'), (int, float)))
    print(f"{path}: n={n} accuracy={correct/n:.3f} selected-value-right={val_ok/n:.3f} oracle-any-exit-right={oracle/n:.3f} text-right-given-value={copy_ok/max(1,val_ok):.3f}")
