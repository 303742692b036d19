"""Does a run end on its target sparsity? Final sampled edge sparsity against the target, per mode.

    python benchmarks/reach_target.py [--fixture ioi|ioi-b] [--steps 3000] [--target 0.98] [--seeds 1]
                                      [--modes cold,warm,matched,warm+matched] [--pressures paper,steer]

Each mode (cold: the paper's start and KL; warm: started from EAP-IG-inputs scores, edgeprune.warmstart;
matched: objective="logit_diff") runs with each sparsity pressure: "paper" (the Lagrangian of
docs/method.md 3.6, with its multipliers' weight decay) and "steer" (TrainConfig.steer: the steered
penalty of edgeprune.path on the paper's linear ramp). The paper's schedule otherwise: warm-up
steps/15, ramp 5/6 of the run. Reported: the final sampled sparsity (mean of the last three logs),
the extracted circuit's sparsity (the bisected threshold, docs/method.md 5.1), and the distance of
each to the target. Writes reach_target.json under --out and prints the markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

import edgeprune  # noqa: E402
from compare_methods import FIXTURES  # noqa: E402
from edgeprune.attribution import attribute  # noqa: E402

MODES = {"cold": ({}, False), "warm": ({}, True), "matched": ({"objective": "logit_diff"}, False),
         "warm+matched": ({"objective": "logit_diff"}, True)}
PRESSURES = {"paper": {}, "steer": {"steer": True}}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fixture", choices=tuple(FIXTURES), default="ioi")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--target", type=float, default=0.98)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--pressures", default=",".join(PRESSURES))
    p.add_argument("--n-train", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "reach_target"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(os.path.join(args.out, "logs"), exist_ok=True)
    load, task = FIXTURES[args.fixture]
    model, tok = load()
    rows = []
    for seed in range(args.seeds):
        train = edgeprune.tasks.get(task, tok, split="train", n=args.n_train, seed=seed)
        scores = None
        for mode in args.modes.split(","):
            options, warm = MODES[mode]
            if warm and scores is None:
                scores = attribute(edgeprune.prunable(model), train, "eap-ig-inputs", progress=False)
            for pressure in args.pressures.split(","):
                log = os.path.join(args.out, "logs", f"{args.fixture}-{mode}-{pressure}-{args.steps}-seed{seed}.jsonl")
                if os.path.exists(log):
                    os.remove(log)
                started = time.perf_counter()
                circuit = edgeprune.train(load()[0], train, tokenizer=tok, edge_sparsity=args.target, steps=args.steps,
                                          warmup_steps=max(1, args.steps // 15), ramp_steps=args.steps * 5 // 6,
                                          batch_size=32, seed=seed, eval_every=0, progress=False, log_file=log,
                                          init=scores if warm else None, **options, **PRESSURES[pressure])
                logged = [json.loads(line) for line in open(log)]
                final = statistics.mean(r["edge_sparsity"] for r in logged[-3:])
                rows.append({"fixture": args.fixture, "seed": seed, "mode": mode, "pressure": pressure,
                             "steps": args.steps, "target": args.target, "final_sampled": final,
                             "circuit": circuit.edge_sparsity, "seconds": time.perf_counter() - started})
                print(json.dumps(rows[-1]), flush=True)
                with open(os.path.join(args.out, "reach_target.json"), "w") as f:
                    json.dump({"rows": rows, "args": vars(args)}, f, indent=1)
    print(f"\n{args.fixture}, {args.steps} steps, target {args.target}, {args.seeds} seed(s):\n")
    print("| mode | pressure | final sampled sparsity | circuit sparsity | target - final (points) |")
    print("|---|---|---|---|---|")
    for mode in args.modes.split(","):
        for pressure in args.pressures.split(","):
            got = [r for r in rows if r["mode"] == mode and r["pressure"] == pressure]
            final = statistics.mean(r["final_sampled"] for r in got)
            circuit = statistics.mean(r["circuit"] for r in got)
            print(f"| {mode} | {pressure} | {final:.3f} | {circuit:.3f} | {100 * (args.target - final):+.1f} |")


if __name__ == "__main__":
    main()
