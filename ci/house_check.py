#!/usr/bin/env python3
"""house_check.py - the layout rules of the project, checked on a build.

usage: house_check.py [--explain] SOURCE_DIR BUILD_DIR

--explain prints, under each call loop, every edge inside it with the
symbols that make it ("a.c -> b.c: f, g").

Checks what the compiler and the linker cannot see (broker/README.md
"Layers"; the layer rule itself, which folder may include which, is
enforced by the build: a folder's headers are on the include path only of
the libraries that link it):

  1. no two source files call each other in a loop: the graph "a.c uses a
     symbol defined in b.c" over every non-test object of the build
     (nm) has no cycle;
  2. no two modules include each other in a loop (foo.c, foo.h and
     foo_int.h are one module);
  3. no C file is longer than MAX_LINES, except the files named in
     LONG_FILES with the reason the part's README gives;
  4. other parts never include a broker-private header: outside broker/,
     only "keel/..." headers of broker/include are included.

Prints one line per violation and exits 1, or prints a summary and exits
0.  Run by CTest (house_rules) on every build.
"""
import json
import os
import re
import subprocess
import sys

MAX_LINES = 1500
# file (relative to the source dir) -> why one job needs more lines; keep
# each reason in the part's README too.
LONG_FILES = {}

PARTS = ("broker", "harness", "leakcheck")
SKIP_DIRS = ("/tests/", "/fuzz/", "/bench", "/reading/tests/")


def is_test(path):
    return any(s in path for s in SKIP_DIRS)


def objects(build):
    """(source, object) of every non-test C file of the parts."""
    with open(os.path.join(build, "compile_commands.json")) as f:
        cmds = json.load(f)
    out = []
    for c in cmds:
        src = c["file"]
        cmd = c.get("command") or " ".join(c.get("arguments", []))
        m = re.search(r"\s-o\s+(\S+)", cmd)
        if not m or is_test(src):
            continue
        obj = m.group(1)
        if not os.path.isabs(obj):
            obj = os.path.join(c["directory"], obj)
        out.append((os.path.realpath(src), obj))
    return out


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def call_graph(src_dir, objs):
    defined, undefined = {}, {}
    for src, obj in objs:
        if not os.path.exists(obj):
            continue
        rel = os.path.relpath(src, src_dir)
        res = subprocess.run(["nm", "--defined-only", "-g", obj], capture_output=True,
                             text=True, check=True)
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3:
                defined.setdefault(parts[2], rel)
        res = subprocess.run(["nm", "-u", obj], capture_output=True, text=True, check=True)
        undefined[rel] = {p.split()[-1] for p in res.stdout.splitlines() if p.strip()}
    graph, why = {}, {}
    for rel, syms in undefined.items():
        graph[rel] = set()
        for s in sorted(syms):
            if s in defined and defined[s] != rel:
                graph[rel].add(defined[s])
                why.setdefault((rel, defined[s]), []).append(s)
    return graph, why


INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def module_of(path):
    d, b = os.path.split(path)
    stem = os.path.splitext(b)[0]
    if stem.endswith("_int"):
        stem = stem[:-4]
    return os.path.join(d, stem)


def source_files(src_dir):
    for part in PARTS:
        for root, _, files in os.walk(os.path.join(src_dir, part)):
            for f in files:
                if f.endswith((".c", ".h")):
                    p = os.path.join(root, f)
                    yield os.path.relpath(p, src_dir)


def include_graph(src_dir, files):
    by_name = {}
    for f in files:
        by_name.setdefault(os.path.basename(f), []).append(f)
    graph = {}
    for f in files:
        if is_test("/" + f):
            continue
        text = open(os.path.join(src_dir, f), errors="replace").read()
        me = module_of(f)
        for inc in INC.findall(text):
            cands = by_name.get(os.path.basename(inc), [])
            # the same folder first (quotes), then the file in the same part
            same = [c for c in cands if os.path.dirname(c) == os.path.dirname(f)]
            part = [c for c in cands if c.split("/")[0] == f.split("/")[0]]
            target = (same or part or [None])[0]
            if target is None or "/include/" in target:
                continue
            m = module_of(target)
            if m != me:
                graph.setdefault(me, set()).add(m)
    return graph


def main():
    args = sys.argv[1:]
    explain = "--explain" in args
    args = [a for a in args if a != "--explain"]
    if len(args) != 2 or args[0] in ("-h", "--help"):
        print("\n".join(__doc__.strip().splitlines()[2:6]))
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    src_dir, build = os.path.realpath(args[0]), args[1]
    errors = []

    objs = objects(build)
    if not objs:
        errors.append(f"{build}: no objects in compile_commands.json (build first)")
    graph, why = call_graph(src_dir, objs)
    for comp in cycles(graph):
        msg = "call loop: " + " <-> ".join(comp)
        if explain:
            for a in comp:
                for b in sorted(graph[a] & set(comp)):
                    msg += "\n    %s -> %s: %s" % (a, b, ", ".join(why[(a, b)]))
        errors.append(msg)

    files = sorted(source_files(src_dir))
    for comp in cycles(include_graph(src_dir, files)):
        errors.append("include loop between modules: " + " <-> ".join(comp))

    for f in files:
        if not f.endswith(".c"):
            continue
        n = sum(1 for _ in open(os.path.join(src_dir, f), errors="replace"))
        if n > MAX_LINES and f not in LONG_FILES:
            errors.append(f"{f}: {n} lines (more than {MAX_LINES}; split it by job, or "
                          "say in its part's README why one job needs it and list it here)")

    private = set()
    for f in files:
        if f.startswith("broker/") and "/include/" not in f and not is_test("/" + f):
            if f.endswith(".h"):
                private.add(os.path.basename(f))
    for f in files:
        if f.startswith("broker/"):
            continue
        text = open(os.path.join(src_dir, f), errors="replace").read()
        own = {os.path.basename(g) for g in files if g.split("/")[0] == f.split("/")[0]}
        for inc in INC.findall(text):
            b = os.path.basename(inc)
            if not inc.startswith("keel/") and b in private and b not in own:
                errors.append(f"{f}: includes broker-private \"{inc}\" "
                              "(other parts use broker/include/keel/ only)")

    for e in errors:
        print("house_check: " + e)
    if errors:
        print(f"house_check: {len(errors)} violation(s)")
        return 1
    print(f"house_check: {len(objs)} objects, {len(files)} files: no call or include loop, "
          f"no C file over {MAX_LINES} lines, no broker-private include outside broker/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
