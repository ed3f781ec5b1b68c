//! Kubernetes `CustomResourceDefinition`s generated from the resource types (`obol kube
//! crds`; docs/design/kubernetes.md, "CRDs").
//!
//! The spec and status types derive `schemars::JsonSchema`; their schemas (with the original's
//! validations as schemars attributes on the fields) become structural schemas
//! ([`structural`]), the original's fields our spec refuses are added from schema-only types
//! ([`original`]), and each kind gets the original's names, short names and printer columns
//! (obol-stack.md §3). The committed files under `deploy/kubernetes/base/crds/` are this
//! module's output; a test fails when they drift.

mod original;
mod structural;

use std::path::{Path, PathBuf};

use obol_gateway::Methods;
use obol_x402::metering::NoUsage;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema, json_schema};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::identity::AgentIdentitySpec;
use crate::offer::ServiceOfferSpec;
use crate::purchase::PurchaseRequestSpec;
use crate::resource::Spec;
use original::Extra;
use structural::{PRESERVE, structural};

/// The API group of every obol resource.
pub const GROUP: &str = "obol.org";

/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

/// The first line of every generated file.
pub const HEADER: &str =
    "# Generated from the Rust types in crates/control by `obol kube crds`; do not edit.\n";

/// Why the CRDs could not be generated or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrdError {
    /// A type's schema uses a construct a structural schema cannot express.
    #[error("{path}: cannot be expressed in a structural schema: {message}")]
    Unsupported {
        /// The field, e.g. `spec.routes[].price`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A field added for the original names an object the generated schema does not have.
    #[error("spec.{0}: the generated schema has no such object")]
    MissingParent(String),
    /// Rendering YAML failed.
    #[error("rendering YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// Writing a file failed.
    #[error("cannot write {}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// One `kubectl get` column.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Header.
    pub name: &'static str,
    /// `string`, `integer` or `date`.
    pub type_: &'static str,
    /// JSONPath into the object.
    pub json_path: &'static str,
}

/// How a kind is named and shown besides its schema.
#[derive(Debug, Clone, Copy)]
struct Names {
    plural: &'static str,
    short_names: &'static [&'static str],
    description: &'static str,
    columns: &'static [Column],
    spec_required: bool,
    /// Spec fields our types require but the original does not: the CRD leaves them optional
    /// so that the original's manifests are admitted (our store then names what is missing).
    optional_in_crd: &'static [&'static str],
    extras: &'static [Extra],
}

const fn column(name: &'static str, type_: &'static str, json_path: &'static str) -> Column {
    Column {
        name,
        type_,
        json_path,
    }
}

/// The status of the `Ready` condition, last column of offers and purchases.
const READY: Column = column(
    "Ready",
    "string",
    r#".status.conditions[?(@.type=="Ready")].status"#,
);

const SERVICE_OFFER: Names = Names {
    plural: "serviceoffers",
    short_names: &["so"],
    description: "What a seller sells over x402, at what price, where it is served.",
    columns: &[
        column("Type", "string", ".spec.type"),
        column("Model", "string", ".spec.model.name"),
        column("Price", "string", ".spec.payment.price.perRequest"),
        column("Network", "string", ".spec.payment.network"),
        READY,
        column("Age", "date", ".metadata.creationTimestamp"),
    ],
    spec_required: true,
    // A `type: agent` offer of the original names `spec.agent.ref` and no upstream.
    optional_in_crd: &["upstream"],
    extras: &original::SERVICE_OFFER_EXTRAS,
};

const PURCHASE_REQUEST: Names = Names {
    plural: "purchaserequests",
    short_names: &["pr"],
    description: "A buyer's pool of pre-signed x402 authorizations for one seller.",
    columns: &[
        column("Endpoint", "string", ".spec.endpoint"),
        column("Model", "string", ".spec.model"),
        column("Price", "string", ".spec.payment.price"),
        column("Remaining", "integer", ".status.remaining"),
        column("Spent", "integer", ".status.spent"),
        READY,
    ],
    spec_required: true,
    optional_in_crd: &[],
    extras: &[],
};

const AGENT_IDENTITY: Names = Names {
    plural: "agentidentities",
    short_names: &["aid"],
    description: "The stack's ERC-8004 agent ids, one per chain; the canonical one is x402/default.",
    columns: &[],
    spec_required: false,
    optional_in_crd: &[],
    extras: &[],
};

/// Every kind the CRDs define, with its plural (the resource's name in API paths:
/// `/apis/obol.org/v1alpha1/namespaces/<ns>/<plural>`).
pub const KINDS: [(&str, &str); 3] = [
    (ServiceOfferSpec::KIND, SERVICE_OFFER.plural),
    (PurchaseRequestSpec::KIND, PURCHASE_REQUEST.plural),
    (AgentIdentitySpec::KIND, AGENT_IDENTITY.plural),
];

/// The plural of `kind`, if the CRDs define it.
pub fn plural(kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p)
}

/// The schema of `payment.upto.noUsage` (`NoUsage` lives in obol-x402, which has no schemas).
pub(crate) fn no_usage_schema(_: &mut SchemaGenerator) -> Schema {
    string_enum([NoUsage::Estimate, NoUsage::Ceiling])
}

/// The schema of a route's `methods`: the names the gateway knows.
pub(crate) fn methods_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": {"type": "string", "enum": Methods::NAMES}})
}

fn string_enum<T: Serialize>(values: impl IntoIterator<Item = T>) -> Schema {
    let names: Vec<Value> = values
        .into_iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect();
    json_schema!({"type": "string", "enum": names})
}

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .into_generator()
}

/// The `properties` of the object at `parent` below `node`.
fn properties_at<'a>(
    node: &'a mut Map<String, Value>,
    parent: &[&str],
) -> Option<&'a mut Map<String, Value>> {
    let mut properties = node.get_mut("properties")?.as_object_mut()?;
    for name in parent {
        properties = properties
            .get_mut(*name)?
            .get_mut("properties")?
            .as_object_mut()?;
    }
    Some(properties)
}

/// The `openAPIV3Schema` of kind `S`.
fn open_api_schema<S>(names: &Names) -> Result<Value, CrdError>
where
    S: Spec + JsonSchema,
    S::Status: JsonSchema,
{
    let mut generator = generator();
    let mut spec = structural(generator.root_schema_for::<S>().as_value(), "spec")?;
    for extra in names.extras {
        let path = extra.path();
        let node = structural(
            (extra.schema)(&mut generator).as_value(),
            &format!("spec.{path}"),
        )?;
        properties_at(&mut spec, extra.parent)
            .ok_or(CrdError::MissingParent(path))?
            .insert(extra.name.to_owned(), Value::Object(node));
    }
    if let Some(Value::Array(required)) = spec.get_mut("required") {
        required.retain(|name| !names.optional_in_crd.iter().any(|o| name == o));
    }
    // The kind's description is the document's; the spec type's doc comment speaks of Rust.
    spec.shift_remove("description");
    let mut status = structural(
        generator.root_schema_for::<S::Status>().as_value(),
        "status",
    )?;
    // Kubernetes tools and other controllers may write status fields we do not read; our
    // status types tolerate them too.
    status.insert(PRESERVE.to_owned(), Value::Bool(true));
    let mut root = json!({
        "description": names.description,
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "description": "obol.org/v1alpha1"},
            "kind": {"type": "string", "description": S::KIND},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    });
    if names.spec_required {
        root["required"] = json!(["spec"]);
    }
    Ok(root)
}

fn definition<S>(names: &Names) -> Result<Value, CrdError>
where
    S: Spec + JsonSchema,
    S::Status: JsonSchema,
{
    let mut version = json!({
        "name": VERSION,
        "served": true,
        "storage": true,
        "subresources": {"status": {}},
        "schema": {"openAPIV3Schema": open_api_schema::<S>(names)?},
    });
    if !names.columns.is_empty() {
        let columns: Vec<Value> = names
            .columns
            .iter()
            .map(|c| json!({"name": c.name, "type": c.type_, "jsonPath": c.json_path}))
            .collect();
        version["additionalPrinterColumns"] = Value::Array(columns);
    }
    Ok(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{GROUP}", names.plural)},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": S::KIND,
                "listKind": format!("{}List", S::KIND),
                "plural": names.plural,
                "singular": S::KIND.to_lowercase(),
                "shortNames": names.short_names,
            },
            "scope": "Namespaced",
            "versions": [version],
        },
    }))
}

/// The CRDs: `ServiceOffer`, `PurchaseRequest`, `AgentIdentity`.
pub fn crds() -> Result<Vec<Value>, CrdError> {
    Ok(vec![
        definition::<ServiceOfferSpec>(&SERVICE_OFFER)?,
        definition::<PurchaseRequestSpec>(&PURCHASE_REQUEST)?,
        definition::<AgentIdentitySpec>(&AGENT_IDENTITY)?,
    ])
}

/// `document` as YAML.
fn yaml(document: &Value) -> Result<String, CrdError> {
    Ok(serde_norway::to_string(document)?)
}

/// Every CRD as one multi-document YAML stream.
pub fn stream() -> Result<String, CrdError> {
    let documents = crds()?.iter().map(yaml).collect::<Result<Vec<_>, _>>()?;
    Ok(format!("{HEADER}---\n{}", documents.join("---\n")))
}

/// The files of `deploy/kubernetes/base/crds/`: one per CRD (`serviceoffers.obol.org.yaml`)
/// and `kustomization.yaml` listing them, as (file name, content).
pub fn files() -> Result<Vec<(String, String)>, CrdError> {
    let mut files = Vec::new();
    for crd in crds()? {
        let name = format!(
            "{}.yaml",
            crd["metadata"]["name"].as_str().unwrap_or_default()
        );
        files.push((name, format!("{HEADER}{}", yaml(&crd)?)));
    }
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": files.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>(),
    });
    files.push((
        "kustomization.yaml".to_owned(),
        format!("{HEADER}{}", yaml(&kustomization)?),
    ));
    Ok(files)
}

/// Writes [`files`] into `dir` (created if missing); the paths written.
pub fn write_dir(dir: &Path) -> Result<Vec<PathBuf>, CrdError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CrdError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    for (name, content) in files()? {
        let path = dir.join(name);
        std::fs::write(&path, content).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer::UNSUPPORTED_FIELDS;
    use crate::resource::API_VERSION;

    #[test]
    fn kinds_name_the_crds_plurals() {
        let crds = crds().unwrap();
        let named: Vec<(String, String)> = crds
            .iter()
            .map(|c| {
                let names = &c["spec"]["names"];
                (
                    names["kind"].as_str().unwrap().to_owned(),
                    names["plural"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let kinds: Vec<(String, String)> = KINDS
            .iter()
            .map(|(k, p)| ((*k).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(named, kinds);
        assert_eq!(plural("PurchaseRequest"), Some("purchaserequests"));
        assert_eq!(plural("Pod"), None);
    }

    #[test]
    fn group_and_version_are_the_stores() {
        assert_eq!(format!("{GROUP}/{VERSION}"), API_VERSION);
    }

    #[test]
    fn every_refused_original_field_is_admitted_by_the_crd() {
        let extras: Vec<String> = original::SERVICE_OFFER_EXTRAS
            .iter()
            .map(Extra::path)
            .collect();
        let refused: Vec<String> = UNSUPPORTED_FIELDS
            .iter()
            .map(|u| u.path.to_owned())
            .collect();
        assert_eq!(extras, refused);
    }

    #[test]
    fn the_stream_and_the_directory_hold_the_same_crds() {
        let stream = stream().unwrap();
        assert!(stream.starts_with(HEADER));
        let dir = tempfile::tempdir().unwrap();
        let written = write_dir(&dir.path().join("crds")).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "serviceoffers.obol.org.yaml",
                "purchaserequests.obol.org.yaml",
                "agentidentities.obol.org.yaml",
                "kustomization.yaml"
            ]
        );
        for path in &written[..3] {
            let file = std::fs::read_to_string(path).unwrap();
            let body = file.strip_prefix(HEADER).unwrap();
            assert!(stream.contains(body), "{} is in the stream", path.display());
        }
        assert_eq!(stream.matches("\n---\n").count(), 3, "three documents");
    }
}
