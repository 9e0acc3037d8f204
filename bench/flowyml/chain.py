"""The peer of `riffle bench pipeline`: chains of trivial steps in flowyml, first run
and cached run, one JSON line per run with the same fields as Riffle's report."""

import argparse
import json
import os
import resource
import sys
import tempfile
import time


def build(n, workdir):
    from flowyml import Pipeline, step

    pipeline = Pipeline(
        f"bench_chain_{n}",
        cache_dir=os.path.join(workdir, "cache"),
        enable_experiment_tracking=False,
        enable_checkpointing=False,
    )

    def make(i):
        if i == 0:
            def first():
                return 0
            return step(name="s0", outputs=["x0"], register=False)(first)

        # The input parameter's name must match the upstream output's name.
        src = f"def s{i}(x{i - 1}):\n    return x{i - 1} + 1\n"
        scope = {}
        exec(src, scope)  # noqa: S102 - generated trivial step bodies
        return step(name=f"s{i}", inputs=[f"x{i - 1}"], outputs=[f"x{i}"], register=False)(scope[f"s{i}"])

    for i in range(n):
        pipeline.add_step(make(i))
    return pipeline


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    for n in args.steps:
        with tempfile.TemporaryDirectory() as workdir:
            os.chdir(workdir)
            pipeline = build(n, workdir)
            for phase in ("first", "cached"):
                start = time.perf_counter()
                # No UI server: it would outlive the benchmark (a uvicorn on :8080).
                result = pipeline.run(auto_start_ui=False)
                seconds = time.perf_counter() - start
                ok = getattr(result, "success", None)
                if ok is False:
                    print(f"flowyml run failed for {n} steps", file=sys.stderr)
                    sys.exit(1)
                print(json.dumps({
                    "workload": "pipeline",
                    "peer": "flowyml 2.2.1",
                    "phase": phase,
                    "workers": 1,
                    "items": n,
                    "steps": n,
                    "seconds": seconds,
                    "items_per_s": n / seconds if seconds > 0 else 0.0,
                    "ms_per_step": seconds * 1000.0 / n,
                    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                }), flush=True)


if __name__ == "__main__":
    main()
