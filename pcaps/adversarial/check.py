#!/usr/bin/env python3
"""Replay each adversarial capture with the bundled policy and compare with expected.json.

    python3 pcaps/adversarial/check.py [--bin target/debug/shadowgate] [CAPTURE ...]

Prints one line per expectation (ok / FAIL / CRASH) and a summary; exits 1 when any fails.
A report for people, not a test: the tests that assert against expected.json belong in tests/.
"""
import argparse, json, os, resource, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def replay(binary, cap, timeout):
    """Run the sensor; return (exit status or signal text, observations, stderr tail, output bytes)."""
    path = os.path.join(HERE, cap)
    if not os.path.exists(path):
        path += ".held"  # kept under another name while it crashes the sensor (README.md)
    cmd = [binary, "replay", "--policy", os.path.join(ROOT, "policies"), "-q", path]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", [], "", 0
    obs = []
    for line in p.stdout.splitlines():
        try:
            obs.append(json.loads(line))
        except ValueError:
            pass
    status = p.returncode if p.returncode >= 0 else f"signal {-p.returncode}"
    err = p.stderr.decode("utf-8", "replace").strip().splitlines()
    return status, obs, " | ".join(err[-2:]), len(p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug/shadowgate"))
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("captures", nargs="*")
    a = ap.parse_args()
    cases = json.load(open(os.path.join(HERE, "expected.json")))["cases"]
    caps = a.captures or sorted({c["capture"] for c in cases})
    fails = oks = 0
    for cap in caps:
        status, obs, err, out_bytes = replay(a.bin, cap, a.timeout)
        crashed = status != 0
        decisions = [o for o in obs if o.get("decision")]
        print(f"== {cap}: exit {status}, {len(obs)} observations, {len(decisions)} decisions, {out_bytes} bytes of output" + (f" [{err}]" if crashed else ""))
        for c in (c for c in cases if c["capture"] == cap):
            problems = []
            if "kind" not in c:
                if c.get("survives") and crashed:
                    problems.append(f"did not survive (exit {status})")
                for k, got in (("max_observations", len(obs)), ("max_decisions", len(decisions)), ("max_output_bytes", out_bytes)):
                    if k in c and got > c[k]:
                        problems.append(f"{k.replace('max_', '')} {got} > {c[k]}")
                label = "whole capture"
            else:
                label = f"frame {c['frame']} {c['kind']} {c['name']!r} -> {c['service']}"
                if crashed:
                    problems.append(f"crash (exit {status})")
                else:
                    at = [o for o in obs if o.get("frame") == c["frame"] and o["client"]["ip"] == c["client"]
                          and (c["kind"] == "*" or o["kind"] == c["kind"])]
                    named = [o for o in at if o.get("name") == c["name"]]
                    if not named:
                        problems.append("not reported; at that frame: " + (", ".join(f"{o['kind']} {o.get('name')!r}" for o in at) or "nothing"))
                    else:
                        svc = [(o.get("decision") or {}).get("service") for o in named]
                        if c["service"] not in svc:
                            via = [(o.get("decision") or {}).get("via") for o in named]
                            problems.append(f"decided {svc} (via {via}), want {c['service']}")
                    for o in at:
                        s = (o.get("decision") or {}).get("service")
                        if s in c.get("never_service", []):
                            problems.append(f"decided {s} (via {o['decision'].get('via')}), which it must never be")
            if problems:
                fails += 1
                print(f"  FAIL {label}: {'; '.join(dict.fromkeys(problems))}")
            else:
                oks += 1
                print(f"  ok   {label}")
    print(f"{oks} passed, {fails} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
