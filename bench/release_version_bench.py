# -*- coding: utf-8 -*-
# Copyright: meshos release engineering
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark release_version's planning on a large history against the raw git floor.

    . scripts/env.sh && python3 bench/release_version_bench.py [--commits 100000] [--tags 2000] [--tail 200]

Generates (git fast-import, seconds) a repository of N conventional commits with T annotated ``v*`` tags spread over
the history and ``--tail`` commits after the last tag, then times side by side, in one run:

(a) ``plan()`` from ``plugins/module_utils/_release.py``: the tag listing + the one ``git log`` since the last
    release, parsing, bump and the rendered changelog section (what the module computes);
(b) the floor: the same two git commands through subprocess, output discarded.

It repeats the measurement on a repository with a tenth of the history (same number of tags, same tail) to show the
cost does not grow with total history, and once through the real module (``ansible -m ... --check``) for scale.

Replay (issue 15): the three generated histories of tests/integration/test_release_replay.py (semantic-release,
commitizen, git-cliff; --replay-releases tagged releases each) replayed tag by tag: the time per release of the whole
``plan()`` (tag listing and window walk by git every time, parsing, revert filtering, bump, changelog) beside the raw git
floor per release (the same two git commands), and the agreement with each history's tags.
Not a test: nothing asserts on speed. Output lands in bench/output/ (git-ignored).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = ["feat", "fix", "chore", "docs", "perf", "refactor", "test", "ci"]


def _import_plan():
    tree = tempfile.mkdtemp(prefix="relver-bench-collections-")
    os.makedirs(os.path.join(tree, "ansible_collections", "meshos"))
    os.symlink(ROOT, os.path.join(tree, "ansible_collections", "meshos", "release"))
    sys.path.insert(0, tree)
    from ansible_collections.meshos.release.plugins.module_utils.release import release as _release  # pylint: disable=import-outside-toplevel
    return _release, tree


def run_git(argv, cwd=None, data=None):
    proc = subprocess.run(argv, cwd=cwd, input=data.encode("utf-8") if isinstance(data, str) else data,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


def generate(path, commits, tags, tail):
    """A linear history through git fast-import; returns the generation time in seconds."""
    start = time.perf_counter()
    subprocess.run(["git", "init", "-q", path], check=True)
    tag_every = max(1, (commits - tail) // tags)
    # the last tag sits exactly ``tail`` commits before HEAD, the others every ``tag_every`` commits before it
    tag_at = set(commits - tail - k * tag_every for k in range(tags) if commits - tail - k * tag_every > 0)
    chunks = []
    when = 1700000000
    tag_count = 0
    for i in range(1, commits + 1):
        kind = TYPES[i % len(TYPES)]
        scope = "(mod%d)" % (i % 13) if i % 3 else ""
        msg = "%s%s: change number %d\n\nBody of change %d.\n\nSigned-off-by: Bench <bench@example.com>\n" % (
            kind, scope, i, i)
        data = msg.encode("utf-8")
        chunks.append("commit refs/heads/main\nmark :%d\ncommitter Bench <bench@example.com> %d +0000\ndata %d\n"
                      % (i, when + i, len(data)))
        chunks.append(msg)
        if i > 1:
            chunks.append("from :%d\n" % (i - 1))
        chunks.append("\n")
        if i in tag_at:
            tag_count += 1
            name = "v1.%d.%d" % (tag_count // 100, tag_count % 100)
            tmsg = "Release %s\n" % name
            chunks.append("tag %s\nfrom :%d\ntagger Bench <bench@example.com> %d +0000\ndata %d\n%s\n"
                          % (name, i, when + i, len(tmsg), tmsg))
    stream = "".join(chunks).encode("utf-8")
    subprocess.run(["git", "-C", path, "fast-import", "--quiet"], input=stream, check=True)
    subprocess.run(["git", "-C", path, "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    return time.perf_counter() - start, tag_count


def median_time(func, repeat):
    samples = []
    for _unused in range(repeat):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), samples


def floor(path, last_tag):
    """The raw git work the module cannot avoid: list the release tags, log the commits since the last release."""
    subprocess.run(["git", "-C", path, "for-each-ref", "--format=%(refname:strip=2)%1f%(objectname)%1f%(*objectname)",
                    "refs/tags/v*"], stdout=subprocess.PIPE, check=True)
    subprocess.run(["git", "-C", path, "log", "--format=%x1e%H%x1f%P%x1f%B", "%s..HEAD" % last_tag, "--"],
                   stdout=subprocess.PIPE, check=True)


def merged_listing(path):
    """For reference: ``for-each-ref --merged=HEAD``, which walks the whole history (what the module avoids)."""
    subprocess.run(["git", "-C", path, "for-each-ref", "--merged=HEAD", "--format=%(refname:strip=2)", "refs/tags/v*"],
                   stdout=subprocess.PIPE, check=True)


def measure(release, path, repeat):
    """Module and floor samples interleaved (both see the same machine load); median and best-of reported."""
    planned = release.plan(run_git, path, date="2026-01-01")
    last = planned["previous_tag"]
    module_samples, floor_samples = [], []
    for _unused in range(repeat):
        module_samples.append(median_time(lambda: release.plan(run_git, path, date="2026-01-01"), 1)[0])
        floor_samples.append(median_time(lambda: floor(path, last), 1)[0])
    merged = median_time(lambda: merged_listing(path), 3)[0]
    module, raw = statistics.median(module_samples), statistics.median(floor_samples)
    return {"merged_listing_s": merged, "module_s": module, "floor_s": raw, "ratio": module / raw,
            "module_min_s": min(module_samples), "floor_min_s": min(floor_samples),
            "ratio_min": min(module_samples) / min(floor_samples), "version": planned["version"],
            "previous": planned["previous_version"], "window_commits": planned["commits"]["count"],
            "module_samples": module_samples, "floor_samples": floor_samples}


def _import_replay():
    spec = importlib.util.spec_from_file_location(
        "release_replay", os.path.join(ROOT, "tests", "integration", "test_release_replay.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def replay_bench(out, releases, repeat):
    """Per convention: seconds per release of the module's plan and of the git floor, and the agreement."""
    replay = _import_replay()
    rows = {}
    for convention in sorted(replay.TABLES):
        path = os.path.join(out, "replay-%s.git" % convention)
        tags = replay.generate(path, convention, releases=releases)
        count = len(tags) - 1

        def module_pass():
            return replay.replay(path, tags, replay.TABLES[convention], cache=False)

        def floor_pass():
            for index in range(1, len(tags)):
                subprocess.run(["git", "-C", path, "for-each-ref",
                                "--format=%(refname:strip=2)%1f%(objectname)%1f%(*objectname)", "refs/tags/v*"],
                               stdout=subprocess.PIPE, check=True)
                subprocess.run(["git", "-C", path, "log", "--format=%x1e%H%x1f%P%x1f%B",
                                "%s..%s" % (tags[index - 1][1], tags[index][1]), "--"], stdout=subprocess.PIPE, check=True)

        agreed, wrong = module_pass()
        module_samples, floor_samples = [], []
        for _unused in range(repeat):
            module_samples.append(median_time(module_pass, 1)[0] / count)
            floor_samples.append(median_time(floor_pass, 1)[0] / count)
        rows[convention] = {"releases": count, "agreed": agreed, "disagreements": wrong[:10],
                            "module_per_release_s": statistics.median(module_samples),
                            "floor_per_release_s": statistics.median(floor_samples),
                            "module_samples": module_samples, "floor_samples": floor_samples}
        row = rows[convention]
        print("replay %-16s %d/%d releases predicted | module plan %.2f ms/release | git floor %.2f ms/release | "
              "ratio %.2fx" % (convention, agreed, count, row["module_per_release_s"] * 1000,
                               row["floor_per_release_s"] * 1000,
                               row["module_per_release_s"] / row["floor_per_release_s"]))
    return rows


def via_ansible(path):
    argv = [os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-i", "localhost,", "-c", "local",
            "-o", "--check", "-e", "ansible_python_interpreter=%s" % sys.executable,
            "-m", "meshos.release.release_version", "-a", json.dumps({"path": path})]
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    elapsed = time.perf_counter() - start
    return elapsed, proc.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--commits", type=int, default=100000)
    parser.add_argument("--tags", type=int, default=2000)
    parser.add_argument("--tail", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "output", "release_version"))
    parser.add_argument("--no-ansible", action="store_true", help="skip the run through the real module")
    parser.add_argument("--replay-releases", type=int, default=250, help="tagged releases per replayed history")
    parser.add_argument("--replay-only", action="store_true", help="only the replay of the three conventions")
    args = parser.parse_args()

    release, tree = _import_plan()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    results = {}
    try:
        results["replay"] = replay_bench(args.out, args.replay_releases, max(3, args.repeat // 3))
        if args.replay_only:
            with open(os.path.join(args.out, "results.json"), "w") as handle:
                json.dump(results, handle, indent=2)
            return
        for label, commits, tags in (("full", args.commits, args.tags), ("tenth", args.commits // 10, args.tags)):
            path = os.path.join(args.out, "repo-%s" % label)
            gen_s, made_tags = generate(path, commits, tags, args.tail)
            row = measure(release, path, args.repeat)
            row.update(commits=commits, tags=made_tags, generate_s=gen_s)
            results[label] = row
            print("%-6s %7d commits %5d tags  generated in %5.2fs | %s -> %s from %d commits | module plan %.3fs | "
                  "git floor %.3fs | ratio %.2fx (best-of: %.3fs / %.3fs = %.2fx) | (tag --merged HEAD alone: %.3fs)"
                  % (label, commits, made_tags, gen_s, row["previous"], row["version"], row["window_commits"],
                     row["module_s"], row["floor_s"], row["ratio"], row["module_min_s"], row["floor_min_s"],
                     row["ratio_min"], row["merged_listing_s"]))
        growth = results["full"]["module_min_s"] / results["tenth"]["module_min_s"]
        print("history x10 -> module time x%.2f, floor x%.2f (best-of)"
              % (growth, results["full"]["floor_min_s"] / results["tenth"]["floor_min_s"]))
        results["growth_10x_history"] = growth
        if not args.no_ansible:
            env_path = os.environ.get("ANSIBLE_COLLECTIONS_PATH")
            os.environ["ANSIBLE_COLLECTIONS_PATH"] = tree
            elapsed, rc = via_ansible(os.path.join(args.out, "repo-full"))
            if env_path is not None:
                os.environ["ANSIBLE_COLLECTIONS_PATH"] = env_path
            results["ansible_check_s"] = elapsed
            print("via ansible -m meshos.release.release_version --check (full repo): %.2fs rc=%d "
                  "(includes ansible start-up)" % (elapsed, rc))
        with open(os.path.join(args.out, "results.json"), "w") as handle:
            json.dump(results, handle, indent=2)
    finally:
        shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    main()
