"""Schema validation: built-in kinds against the Kubernetes schemas (PyPI kubernetes-validate,
strict: a field the schema does not declare is an error), custom resources against our CRDs'
openAPIV3Schema with the API server's semantics (strict field validation: unknown fields are
errors unless x-kubernetes-preserve-unknown-fields; nulls are pruned)."""

import jsonschema
import kubernetes_validate

KUBERNETES_VERSION = "1.32.0"


def validate_builtin(obj, version=KUBERNETES_VERSION):
    """Error messages (empty when valid)."""
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        return [f"{where}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    return []


class CrdValidator:
    """Validates custom resources against the CustomResourceDefinitions given."""

    def __init__(self, crds):
        self.schemas = {}
        for crd in crds:
            spec = crd["spec"]
            for version in spec["versions"]:
                api_version = f"{spec['group']}/{version['name']}"
                schema = to_json_schema(version["schema"]["openAPIV3Schema"])
                self.schemas[(api_version, spec["names"]["kind"])] = schema

    def knows(self, obj):
        group = obj.get("apiVersion", "").split("/")[0]
        return any(api.split("/")[0] == group for api, _ in self.schemas)

    def validate(self, obj):
        schema = self.schemas.get((obj.get("apiVersion"), obj.get("kind")))
        if schema is None:
            return [f"no CRD defines {obj.get('apiVersion')} {obj.get('kind')}"]
        errors = []
        if not obj.get("metadata", {}).get("name"):
            errors.append("metadata.name: required")
        validator = jsonschema.Draft202012Validator(schema)
        for e in sorted(validator.iter_errors(pruned(obj)), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in e.absolute_path) or "(root)"
            errors.append(f"{where}: {e.message}")
        return errors


def to_json_schema(node, root=True):
    """A structural schema as JSON Schema with the API server's strictness."""
    out = {}
    for keyword in ("type", "enum", "pattern", "minimum", "maximum", "maxLength", "minLength",
                    "maxItems", "minItems", "required"):
        if keyword in node:
            out[keyword] = node[keyword]
    known = {"description", "default", "format", "properties", "items", "additionalProperties",
             "x-kubernetes-preserve-unknown-fields", *out}
    unknown = set(node) - known
    if unknown:
        raise ValueError(f"CRD schema keyword(s) the check does not implement: {sorted(unknown)}")
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    properties = {n: to_json_schema(s, False) for n, s in node.get("properties", {}).items()}
    if root:
        # apiVersion, kind and metadata are implicit at the root; metadata is the API server's.
        properties["metadata"] = {"type": "object"}
    if properties:
        out["properties"] = properties
    if "items" in node:
        out["items"] = to_json_schema(node["items"], False)
    if "additionalProperties" in node:
        out["additionalProperties"] = to_json_schema(node["additionalProperties"], False)
    elif node.get("type") == "object" and not preserve:
        out["additionalProperties"] = False
    return out


def pruned(value):
    """``value`` without null members (the API server drops them for non-nullable fields)."""
    if isinstance(value, dict):
        return {k: pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value
