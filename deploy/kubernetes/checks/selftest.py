"""The check must be able to fail: each mutation breaks a rendered overlay in one way, and the
check must report it (with the expected words). Run on every check."""

import copy


def find(objects, kind, obj_name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == obj_name)


def container(objects, workload):
    return find(objects, "Deployment", workload)["spec"]["template"]["spec"]["containers"][0]


def writable_root(objects):
    container(objects, "obol-gateway")["securityContext"]["readOnlyRootFilesystem"] = False


def root_user(objects):
    find(objects, "Deployment", "obol-operator")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0


def no_limits(objects):
    del container(objects, "obol-facilitator")["resources"]["limits"]


def metrics_on_public_service(objects):
    find(objects, "Service", "obol-gateway")["spec"]["ports"].append(
        {"name": "metrics", "port": 9090, "targetPort": 9090})


def metrics_open_to_all(objects):
    find(objects, "NetworkPolicy", "obol-operator")["spec"]["ingress"][0].pop("from")


def metrics_open_to_every_namespace(objects):
    find(objects, "NetworkPolicy", "obol-gateway")["spec"]["ingress"][1]["from"].append({"namespaceSelector": {}})


def no_default_deny(objects):
    objects.remove(find(objects, "NetworkPolicy", "default-deny-ingress"))


def inlined_secret(objects):
    objects.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "obol-payment-store", "namespace": "obol-system"},
                    "stringData": {"url": "postgres://obol:hunter2@db:5432/obol"}})


def password_in_settings(objects):
    find(objects, "ConfigMap", "obol-stack-settings")["data"]["stack.json"] = \
        '{"facilitator": {"url": "http://f"}, "paymentStore": "postgres://obol:hunter2@db/obol"}'


def two_settlers(objects):
    find(objects, "Deployment", "obol-facilitator")["spec"]["replicas"] = 2


def two_buyers(objects):
    find(objects, "Deployment", "obol-buyer")["spec"]["replicas"] = 2


def unpinned_image(objects):
    container(objects, "obol-gateway")["image"] = "obol-stack:latest"


def secrets_listed(objects):
    rules = find(objects, "ClusterRole", "obol-operator")["rules"]
    next(r for r in rules if "secrets" in r["resources"])["verbs"].append("list")


def unknown_field(objects):
    find(objects, "Deployment", "obol-gateway")["spec"]["replica"] = 3


def bad_offer(offers):
    offers[0]["spec"]["payment"]["payTo"] = "not-an-address"


def unknown_offer_field(offers):
    offers[0]["spec"]["upstream"]["serviceName"] = "ollama"


# (what, mutation, words the check's report must contain, on the overlay or on the examples)
MUTATIONS = [
    ("a writable root filesystem", writable_root, "readOnlyRootFilesystem", "overlay"),
    ("a container as root", root_user, "non-root", "overlay"),
    ("no memory limit", no_limits, "limits.memory", "overlay"),
    ("metrics on the public Service", metrics_on_public_service, "public Service exposes internal port", "overlay"),
    ("metrics open to every source", metrics_open_to_all, "opens internal port", "overlay"),
    ("metrics open to every namespace", metrics_open_to_every_namespace, "opens internal port internal", "overlay"),
    ("no default-deny NetworkPolicy", no_default_deny, "default-deny", "overlay"),
    ("a Secret inlined", inlined_secret, "inlines secret data", "overlay"),
    ("a password in stack.json", password_in_settings, "paymentStore", "overlay"),
    ("two facilitator replicas", two_settlers, "one replica", "overlay"),
    ("two buyer replicas", two_buyers, "one spender", "overlay"),
    ("an unpinned image", unpinned_image, "not pinned", "overlay"),
    ("the operator allowed to list Secrets", secrets_listed, "may list or watch secrets", "overlay"),
    ("an unknown Deployment field", unknown_field, "replica", "overlay"),
    ("an offer paying a non-address", bad_offer, "payTo", "examples"),
    ("an offer with an unknown field", unknown_offer_field, "serviceName", "examples"),
]


def run(objects, offers, check_overlay, check_offers):
    """Failures of the self-test (empty when every mutation was caught)."""
    failures = []
    for what, mutate, words, on in MUTATIONS:
        broken = copy.deepcopy(objects if on == "overlay" else offers)
        mutate(broken)
        report = check_overlay(broken) if on == "overlay" else check_offers(broken)
        if not any(words in line for line in report):
            failures.append(f"self-test: {what} was not caught (expected '{words}' in {report})")
        else:
            print(f"  caught {what}: {next(line for line in report if words in line)}")
    return failures
