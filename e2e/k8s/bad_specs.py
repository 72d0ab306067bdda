#!/usr/bin/env python3
"""Every case of e2e/k8s/bad-specs.yaml against the API server KUBECONFIG
names: each changed manifest must be refused (a server dry run, so nothing
is stored), with an error that names the case's field and says its message.
Prints one line per case and exits non-zero when any was accepted or
refused for another reason. Needs kubectl on PATH and the CRDs installed.
"""
import copy
import json
import pathlib
import subprocess
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
MANIFESTS = HERE.parent / "manifests"


def tokens(pointer):
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def locate(doc, pointer):
    """The container holding the pointer's last token, and that token."""
    *path, last = tokens(pointer)
    node = doc
    for t in path:
        node = node[int(t)] if isinstance(node, list) else node[t]
    if isinstance(node, list) and last != "-":
        last = int(last)
    return node, last


def get(doc, pointer):
    node, last = locate(doc, pointer)
    return node[last]


def apply_ops(doc, ops):
    for op in ops or []:
        if "set" in op:
            node, last = locate(doc, op["set"])
            node[last] = copy.deepcopy(op["value"])
        elif "remove" in op:
            node, last = locate(doc, op["remove"])
            del node[last]
        elif "copy" in op:
            value = copy.deepcopy(get(doc, op["copy"]))
            node, last = locate(doc, op["to"])
            if last == "-":
                node.append(value)
            else:
                node[last] = value
        elif "grow" in op:
            items = get(doc, op["grow"])
            first = items[0]
            while len(items) < op["to"]:
                item = copy.deepcopy(first)
                item["name"] = f"{first['name']}-{len(items)}"
                items.append(item)
        else:
            raise SystemExit(f"unknown operation {op}")
    return doc


def kubectl(args, obj):
    return subprocess.run(
        ["kubectl", *args, "-f", "-"], input=json.dumps(obj), capture_output=True, text=True
    )


def run_case(case):
    base = yaml.safe_load((MANIFESTS / case["base"]).read_text())
    before = apply_ops(copy.deepcopy(base), case.get("before"))
    changed = apply_ops(copy.deepcopy(before), case["change"])
    created = False
    try:
        if case.get("update"):
            r = kubectl(["create"], before)
            if r.returncode != 0:
                return f"the unchanged manifest was refused: {r.stderr.strip()[:300]}"
            created = True
            r = kubectl(["replace", "--dry-run=server"], changed)
        else:
            r = kubectl(["create", "--dry-run=server"], changed)
    finally:
        if created:
            kubectl(["delete", "--ignore-not-found", "--wait=false"], before)
    said = (r.stdout + r.stderr).strip()
    if case.get("server") == "accepts":
        # Beyond the API server's CEL budget: weir refuses it (examples.rs).
        return None if r.returncode == 0 else f"refused, but the table says the API server accepts it: {said[:300]}"
    if r.returncode == 0:
        return f"accepted: {said[:300]}"
    missing = [s for s in (case["field"], case["message"]) if s not in said]
    if missing:
        return f"refused without {missing}: {said[:400]}"
    return None


def main():
    cases = yaml.safe_load((HERE / "bad-specs.yaml").read_text())
    wanted = set(sys.argv[1:])
    bad = 0
    for case in cases:
        if wanted and case["name"] not in wanted:
            continue
        why = run_case(case)
        if why is None:
            print(f"refused as expected: {case['name']}")
        else:
            bad += 1
            print(f"NOT AS EXPECTED: {case['name']}: {why}")
    total = len(wanted) if wanted else len(cases)
    print(f"bad specs: {total - bad} of {total} refused with the expected message")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
