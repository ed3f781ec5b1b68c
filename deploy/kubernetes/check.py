#!/usr/bin/env python3
"""Offline check of the Kubernetes manifests (docs/kubernetes.md, "Checking the manifests").

For each overlay under overlays/: render it (checks/render.py, a kustomize subset; when kubectl
is on PATH, also `kubectl kustomize`, and the two must agree), validate every object against the
Kubernetes 1.32 schemas (kubernetes-validate, strict) and custom resources against our CRDs,
and check the policies (checks/policy.py). The examples/ are validated against the CRDs. A
self-test then breaks the production overlay and an example in known ways and requires each
break to be reported. Exit status 0 only when everything passes.

    check.py                  # everything
    check.py --render dev     # print an overlay as rendered (no kubectl needed)

Needs PyYAML and kubernetes-validate (deploy/kubernetes/requirements.txt; scripts/install-tools
installs them into a venv and exports OBOL_DEPLOY_PYTHON).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # nothing written into the repository

import yaml  # noqa: E402

from checks import policy, render, schemas, selftest  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OVERLAYS = os.path.join(HERE, "overlays")
EXAMPLES = os.path.join(HERE, "examples")
DEV = {"dev"}


def crds():
    return [o for o in render.render(os.path.join(HERE, "base", "crds"))
            if o["kind"] == "CustomResourceDefinition"]


def check_objects(objects, validator, dev):
    errors = []
    for obj in objects:
        found = validator.validate(obj) if validator.knows(obj) else schemas.validate_builtin(obj)
        errors += [f"{policy.name(obj)}: {e}" for e in found]
    return errors + policy.check(objects, dev)


def check_offers(offers, validator):
    return [f"{policy.name(o)}: {e}" for o in offers for e in validator.validate(o)]


def normalized(obj):
    """``obj`` as compared between renderers (Secret data without base64 line breaks)."""
    obj = json.loads(json.dumps(obj, sort_keys=True))
    if obj["kind"] == "Secret":
        obj["data"] = {k: "".join(v.split()) for k, v in obj.get("data", {}).items()}
    return obj


def difference(ours, theirs, path=""):
    """Where ``ours`` and ``theirs`` first differ, with both values there."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for k in sorted(ours.keys() | theirs.keys()):
            if ours.get(k) != theirs.get(k):
                return difference(ours.get(k), theirs.get(k), f"{path}.{k}")
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for i, (a, b) in enumerate(zip(ours, theirs)):
            if a != b:
                return difference(a, b, f"{path}[{i}]")
    return f"{path or '(root)'}: ours {json.dumps(ours)}, kubectl {json.dumps(theirs)}"


def compare_with_kubectl(overlay, objects):
    kubectl = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not kubectl:
        print("  kubectl not found: rendered with the subset renderer only")
        return []
    out = subprocess.run([kubectl, "kustomize", overlay], capture_output=True, text=True)
    if out.returncode != 0:
        return [f"kubectl kustomize {overlay} failed: {out.stderr.strip()}"]
    theirs = {render.key(o): normalized(o) for o in yaml.safe_load_all(out.stdout) if o}
    ours = {render.key(o): normalized(o) for o in objects}
    errors = [f"only kubectl renders {k}" for k in theirs.keys() - ours.keys()]
    errors += [f"only the subset renderer renders {k}" for k in ours.keys() - theirs.keys()]
    errors += [f"{k} differs from kubectl's at {difference(ours[k], theirs[k])}"
               for k in sorted(ours.keys() & theirs.keys(), key=str) if ours[k] != theirs[k]]
    if not errors:
        print(f"  kubectl kustomize renders the same {len(theirs)} objects")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", metavar="OVERLAY", help="print the rendered overlay and exit")
    args = parser.parse_args()
    if args.render:
        print(yaml.safe_dump_all(render.render(os.path.join(OVERLAYS, args.render)), sort_keys=False), end="")
        return 0

    validator = schemas.CrdValidator(crds())
    failures = []
    rendered = {}
    for overlay in sorted(os.listdir(OVERLAYS)):
        path = os.path.join(OVERLAYS, overlay)
        print(f"overlay {overlay}:")
        objects = render.render(path)
        rendered[overlay] = objects
        errors = compare_with_kubectl(path, objects)
        errors += check_objects(objects, validator, overlay in DEV)
        print(f"  {len(objects)} objects, {len(errors)} problem(s)")
        failures += [f"{overlay}: {e}" for e in errors]

    offers = []
    for file in sorted(os.listdir(EXAMPLES)):
        offers += render.load_documents(os.path.join(EXAMPLES, file))
    errors = check_offers(offers, validator)
    print(f"examples: {len(offers)} custom resources against the CRDs, {len(errors)} problem(s)")
    failures += [f"examples: {e}" for e in errors]

    print("self-test (each break must be reported):")
    failures += selftest.run(
        rendered["production"], offers,
        lambda objects: check_objects(objects, validator, dev=False),
        lambda broken: check_offers(broken, validator))

    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print("FAILED" if failures else "ok", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
