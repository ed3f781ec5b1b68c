"""A subset of kustomize, enough to render deploy/kubernetes/overlays/* without kubectl.

Supported kustomization.yaml fields, and nothing else (any other field is an error, so the
manifests cannot use a feature this renderer would silently skip):

- ``resources``: files (multi-document YAML) and directories holding a kustomization.yaml,
  rendered recursively; a directory's objects get its own transformations first.
- ``namespace``: set on every namespaced object (cluster-scoped kinds: CLUSTER_SCOPED); a
  Namespace object keeps its name; RoleBinding subjects are left as written.
- ``labels``: ``pairs`` added to every object's metadata.labels (``includeSelectors`` and
  ``includeTemplates`` must be absent or false).
- ``images``: ``name`` → ``newName`` / ``newTag`` / ``digest`` on containers and
  initContainers of pod templates.
- ``replicas``: ``name`` + ``count`` → spec.replicas of that Deployment/StatefulSet.
- ``patches``: ``path`` or ``patch`` (no ``target``): a strategic-merge patch applied to the
  one object with its kind and name. Maps merge; a null deletes; the lists in MERGE_KEYS
  merge by their key (containers, env, volumes by name; volumeMounts by mountPath; container
  ports by containerPort; a Service's ports by port), as Kubernetes' patchMergeKey, the
  patch's items first (kustomize's order); other lists are replaced. ``$patch``/``$setElementOrder`` directives are refused.
- ``secretGenerator`` / ``configMapGenerator``: ``literals`` and ``files``, only with
  ``generatorOptions.disableNameSuffixHash: true`` (no hashed names to rewrite references to).

Order as kustomize: resources, generators, patches, then namespace, labels, images, replicas.
"""

import base64
import copy
import os

import yaml

CLUSTER_SCOPED = {
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService",
}
# patchMergeKey of the lists merged by key (field name → key); others are replaced.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
    "imagePullSecrets": "name", "volumeMounts": "mountPath",
}
FIELDS = {
    "apiVersion", "kind", "namespace", "labels", "resources", "images", "replicas",
    "patches", "secretGenerator", "configMapGenerator", "generatorOptions",
}


class RenderError(Exception):
    pass


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def key(obj):
    meta = obj.get("metadata", {})
    return (obj.get("kind"), meta.get("namespace"), meta.get("name"))


def render(directory):
    """The objects of the kustomization in ``directory``."""
    path = os.path.join(directory, "kustomization.yaml")
    if not os.path.isfile(path):
        raise RenderError(f"{directory}: no kustomization.yaml")
    [k] = load_documents(path)
    unknown = set(k) - FIELDS
    if unknown:
        raise RenderError(f"{path}: kustomize fields this renderer does not support: {sorted(unknown)}")
    objects = []
    for entry in k.get("resources", []):
        target = os.path.normpath(os.path.join(directory, entry))
        objects += render(target) if os.path.isdir(target) else load_documents(target)
    objects += generated(k, directory, path)
    for patch in k.get("patches", []):
        apply_patch(objects, patch, directory, path)
    if "namespace" in k:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = k["namespace"]
    for group in k.get("labels", []):
        if group.get("includeSelectors") or group.get("includeTemplates"):
            raise RenderError(f"{path}: labels with includeSelectors/includeTemplates are not supported")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(group["pairs"])
    for image in k.get("images", []):
        for container in containers(objects):
            set_image(container, image)
    for replicas in k.get("replicas", []):
        matches = [o for o in objects if o["metadata"]["name"] == replicas["name"]
                   and o["kind"] in ("Deployment", "StatefulSet", "ReplicaSet")]
        if len(matches) != 1:
            raise RenderError(f"{path}: replicas: {replicas['name']} matches {len(matches)} workloads")
        matches[0]["spec"]["replicas"] = replicas["count"]
    seen = set()
    for obj in objects:
        if key(obj) in seen:
            raise RenderError(f"{path}: {key(obj)} is defined twice")
        seen.add(key(obj))
    return objects


def generated(k, directory, path):
    generators = [("Secret", g) for g in k.get("secretGenerator", [])]
    generators += [("ConfigMap", g) for g in k.get("configMapGenerator", [])]
    if generators and not k.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise RenderError(f"{path}: generators need generatorOptions.disableNameSuffixHash: true")
    out = []
    for kind, g in generators:
        unknown = set(g) - {"name", "literals", "files"}
        if unknown:
            raise RenderError(f"{path}: generator {g.get('name')}: unsupported {sorted(unknown)}")
        data = {}
        for literal in g.get("literals", []):
            name, _, value = literal.partition("=")
            data[name] = value
        for entry in g.get("files", []):
            name, _, file = entry.rpartition("=")
            with open(os.path.join(directory, file), encoding="utf-8") as f:
                data[name or os.path.basename(file)] = f.read()
        obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": g["name"]}}
        if kind == "Secret":
            obj["type"] = "Opaque"
            obj["data"] = {n: base64.b64encode(v.encode()).decode() for n, v in data.items()}
        else:
            obj["data"] = data
        out.append(obj)
    return out


def apply_patch(objects, entry, directory, path):
    if "target" in entry or ("path" in entry) == ("patch" in entry):
        raise RenderError(f"{path}: a patch needs exactly one of path/patch and no target")
    docs = (load_documents(os.path.join(directory, entry["path"])) if "path" in entry
            else [yaml.safe_load(entry["patch"])])
    for patch in docs:
        name = patch.get("metadata", {}).get("name")
        matches = [o for o in objects if o["kind"] == patch.get("kind") and o["metadata"]["name"] == name]
        if len(matches) != 1:
            raise RenderError(f"{path}: patch {patch.get('kind')}/{name} matches {len(matches)} objects")
        merged = merge(matches[0], patch, f"{patch.get('kind')}/{name}")
        matches[0].clear()
        matches[0].update(merged)


def merge(base, patch, where, path=()):
    """Strategic merge of ``patch`` into ``base`` (see the module docs for the subset)."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for field, value in patch.items():
        if field.startswith("$"):
            raise RenderError(f"patch {where}: directive {field} is not supported")
        merge_key = list_key(where, path + (field,), value, out.get(field))
        if value is None:
            out.pop(field, None)
        elif merge_key:
            # As kustomize orders them: the patch's items (merged), then the others.
            items = {item[merge_key]: item for item in out[field]}
            patched = [merge(items.pop(i[merge_key], {}), i, where, path + (field,)) for i in value]
            out[field] = patched + list(items.values())
        elif isinstance(value, dict):
            out[field] = merge(out.get(field, {}), value, where, path + (field,))
        else:
            out[field] = copy.deepcopy(value)
    return out


def list_key(where, path, patch, base):
    """The merge key of the list at ``path`` (None: replaced)."""
    if not (isinstance(patch, list) and isinstance(base, list)):
        return None
    if path[-1] == "ports":  # a container's by containerPort, a Service's by port, others replaced
        if "containers" in path or "initContainers" in path:
            merge_key = "containerPort"
        elif where.startswith("Service/") and path == ("spec", "ports"):
            merge_key = "port"
        else:
            merge_key = None
    else:
        merge_key = MERGE_KEYS.get(path[-1])
    if merge_key and all(isinstance(i, dict) and merge_key in i for i in patch + base):
        return merge_key
    return None


def pod_specs(objects):
    """(object, pod spec) of every workload."""
    for obj in objects:
        spec = obj.get("spec", {})
        if obj["kind"] == "Pod":
            yield obj, spec
        elif obj["kind"] == "CronJob":
            yield obj, spec["jobTemplate"]["spec"]["template"]["spec"]
        elif "template" in spec and obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield obj, spec["template"]["spec"]


def containers(objects):
    for _, spec in pod_specs(objects):
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def split_image(image):
    """(name, tag, digest) of an image reference."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest or None


def set_image(container, image):
    name, tag, digest = split_image(container["image"])
    if name != image["name"]:
        return
    name = image.get("newName", name)
    if "newTag" in image:
        tag = str(image["newTag"])
    if "digest" in image:
        digest = image["digest"]
    container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
