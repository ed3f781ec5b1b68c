"""Policies every rendered overlay must meet (docs/kubernetes.md, "What the check enforces")."""

import json
import re

from .render import pod_specs, split_image

# Container ports that must never be public: the gateway's /metrics + ForwardAuth, the
# operator's health and metrics.
INTERNAL_PORT_NAMES = {"internal", "health", "metrics", "admin"}
# Services buyers reach.
PUBLIC_SERVICES = {"obol-gateway"}
SECRET_ENV = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY|PAYMENT_STORE|_KEY$")
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")


def name(obj):
    meta = obj.get("metadata", {})
    return f"{obj['kind']} {meta.get('namespace', '-')}/{meta.get('name')}"


def check(objects, dev):
    """Every policy violation in ``objects``; ``dev`` allows generated Secrets and unpinned images."""
    errors = []
    for rule in (pod_security, resources, network_policies, public_services, one_settler,
                 stack_settings, rbac):
        errors += rule(objects)
    errors += inlined_secrets(objects, dev)
    if not dev:
        errors += pinned_images(objects)
    return errors


def each_container(objects):
    """(pod spec, container, "<workload> container <name>") of every container."""
    for obj, spec in pod_specs(objects):
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            yield spec, c, f"{name(obj)} container {c['name']}"


def pod_security(objects):
    errors = []
    for spec, c, where in each_container(objects):
        pod = spec.get("securityContext", {})
        sc = c.get("securityContext", {})
        effective = lambda k: sc.get(k, pod.get(k))  # noqa: E731
        if effective("runAsNonRoot") is not True or effective("runAsUser") == 0:
            errors.append(f"{where}: must run as non-root (runAsNonRoot: true)")
        if sc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{where}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{where}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or caps.get("add"):
            errors.append(f"{where}: capabilities must drop ALL and add none")
        if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
            errors.append(f"{where}: seccompProfile must be RuntimeDefault")
    return errors


def resources(objects):
    errors = []
    for _, c, where in each_container(objects):
        r = c.get("resources", {})
        missing = [f"requests.{k}" for k in ("cpu", "memory") if k not in r.get("requests", {})]
        missing += ["limits.memory"] if "memory" not in r.get("limits", {}) else []
        if missing:
            errors.append(f"{where}: resources not set: {', '.join(missing)}")
    return errors


def inlined_secrets(objects, dev):
    errors = []
    for obj in objects:
        if obj["kind"] == "Secret" and (obj.get("data") or obj.get("stringData")) and not dev:
            errors.append(f"{name(obj)}: inlines secret data (reference a Secret created out of band)")
        if obj["kind"] == "ConfigMap":
            for k, v in (obj.get("data") or {}).items():
                if URL_WITH_PASSWORD.search(str(v)):
                    errors.append(f"{name(obj)}: data.{k} inlines a URL with a password")
    for _, c, where in each_container(objects):
        for env in c.get("env", []):
            if "value" in env and SECRET_ENV.search(env["name"]) and not dev:
                errors.append(f"{where}: env {env['name']} inlines a secret (use secretKeyRef)")
            if "value" in env and URL_WITH_PASSWORD.search(str(env["value"])):
                errors.append(f"{where}: env {env['name']} inlines a URL with a password")
    return errors


def pinned_images(objects):
    errors = []
    for _, c, where in each_container(objects):
        _, tag, digest = split_image(c["image"])
        if not digest and tag in (None, "latest", "dev"):
            errors.append(f"{where}: image {c['image']} is not pinned (a version tag or digest)")
    return errors


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()) \
        and not selector.get("matchExpressions")


def pods(objects, namespace, selector):
    """(workload, pod spec) of the workloads in ``namespace`` whose pods ``selector`` selects."""
    for obj, spec in pod_specs(objects):
        labels = obj["spec"]["template"]["metadata"].get("labels", {}) if "template" in obj["spec"] else {}
        if obj["metadata"].get("namespace") == namespace and matches(selector, labels):
            yield obj, spec


def resolve_port(spec, port):
    """The container port (name, number) ``port`` (a name or number) designates, or None."""
    for c in spec.get("containers", []):
        for p in c.get("ports", []):
            if port in (p.get("name"), p["containerPort"]):
                return p.get("name"), p["containerPort"]
    return None


def internal(resolved):
    return resolved is not None and resolved[0] in INTERNAL_PORT_NAMES


def open_to_all(rule):
    """Whether an ingress rule admits every source: no `from`, every namespace, or any address."""
    peers = rule.get("from") or [{}]
    return any(peer == {} or peer.get("namespaceSelector") == {}
               or peer.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0") for peer in peers)


def network_policies(objects):
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    errors = []
    if not policies:
        return ["no NetworkPolicy: the admin and metrics ports would be reachable from anywhere"]
    namespaces = {o["metadata"].get("namespace") for o, _ in pod_specs(objects)}
    for ns in namespaces:
        if not any(p["metadata"].get("namespace") == ns and p["spec"].get("podSelector") == {}
                   and "Ingress" in p["spec"].get("policyTypes", []) and not p["spec"].get("ingress")
                   for p in policies):
            errors.append(f"namespace {ns}: no default-deny ingress NetworkPolicy (podSelector: {{}}, no rules)")
    for policy in policies:
        selected = list(pods(objects, policy["metadata"].get("namespace"), policy["spec"].get("podSelector", {})))
        for rule in policy["spec"].get("ingress", []):
            if not open_to_all(rule):
                continue
            for obj, spec in selected:
                ports = [p.get("port") for p in rule.get("ports", [])]
                if not ports:
                    exposed = [p for c in spec.get("containers", []) for p in c.get("ports", [])
                               if p.get("name") in INTERNAL_PORT_NAMES]
                    if exposed:
                        errors.append(f"{name(policy)}: opens every port of {name(obj)} to everyone, internal ones included")
                for port in ports:
                    if internal(resolve_port(spec, port)):
                        errors.append(f"{name(policy)}: opens internal port {port} of {name(obj)} to everyone")
    return errors


def public_services(objects):
    errors = []
    for svc in objects:
        if svc["kind"] != "Service":
            continue
        spec = svc.get("spec", {})
        public = svc["metadata"]["name"] in PUBLIC_SERVICES or spec.get("type") in ("LoadBalancer", "NodePort")
        if not public:
            continue
        for obj, pod in pods(objects, svc["metadata"].get("namespace"), {"matchLabels": spec.get("selector", {})}):
            for port in spec.get("ports", []):
                target = port.get("targetPort", port["port"])
                if internal(resolve_port(pod, target)):
                    errors.append(f"{name(svc)}: public Service exposes internal port {target} of {name(obj)}")
    return errors


# Workloads that must run as one replica, never two at once: the facilitator (one settler: its
# settle cache and gas-key nonces are per process) and the buyer (a pool has one spender).
SINGLETONS = {
    "obol-facilitator": "the facilitator runs one replica (one settler)",
    "obol-buyer": "the buyer runs one replica (a pool has one spender)",
}


def one_settler(objects):
    errors = []
    for obj in objects:
        why = SINGLETONS.get(obj["metadata"]["name"]) if obj["kind"] == "Deployment" else None
        if why is None:
            continue
        if obj["spec"].get("replicas", 1) != 1:
            errors.append(f"{name(obj)}: {why}, not {obj['spec']['replicas']}")
        if obj["spec"].get("strategy", {}).get("type") != "Recreate":
            errors.append(f"{name(obj)}: must be replaced with strategy Recreate (never two at once)")
    return errors


def stack_settings(objects):
    """stack.json names the facilitator and no payment store (its keys are checked against
    obol's own type by crates/control/tests/it/deploy.rs)."""
    errors = []
    for obj in objects:
        if obj["kind"] != "ConfigMap" or "stack.json" not in (obj.get("data") or {}):
            continue
        try:
            settings = json.loads(obj["data"]["stack.json"])
        except json.JSONDecodeError as e:
            errors.append(f"{name(obj)}: stack.json is not JSON: {e}")
            continue
        if "paymentStore" in settings:
            errors.append(f"{name(obj)}: stack.json names paymentStore: its URL carries a password; use the Secret obol-payment-store")
        if not (settings.get("facilitator") or {}).get("url"):
            errors.append(f"{name(obj)}: stack.json names no facilitator url")
    return errors


# Verbs that change an object.
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}
# Core kinds no role may change; Secrets no role may list or watch either (a list returns
# every value in it).
READ_ONLY_CORE = {"services", "secrets"}


def rbac(objects):
    """Roles grant no wildcard, never list or watch Secrets, and never write Services or
    Secrets (the operator gets the ones offers name)."""
    errors = []
    for role in objects:
        if role["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in role.get("rules") or []:
            groups, kinds, verbs = (set(rule.get(k) or []) for k in ("apiGroups", "resources", "verbs"))
            if "*" in groups | kinds | verbs:
                errors.append(f"{name(role)}: a wildcard in {rule} (name groups, resources and verbs)")
            if "" not in groups and "*" not in groups:
                continue
            for kind in sorted(kinds & (READ_ONLY_CORE | {"*"})):
                if verbs & WRITE_VERBS:
                    errors.append(f"{name(role)}: may write {kind} ({', '.join(sorted(verbs & WRITE_VERBS))}); get only")
                if kind in ("secrets", "*") and verbs & {"list", "watch"}:
                    errors.append(f"{name(role)}: may list or watch secrets (every value in the namespace); get only")
    return errors
