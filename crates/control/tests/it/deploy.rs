//! The Kubernetes manifests (deploy/kubernetes): `check.py` renders every overlay, validates
//! every object against the Kubernetes 1.32 schemas and our CRDs, checks the policies and runs
//! its self-test; the gateways' `stack.json` is read with obol's own settings type. The check
//! runs with the venv `scripts/install-tools` makes ($OBOL_DEPLOY_PYTHON); without it the test
//! says why it skips, and under CI (`CI=true`) it fails.

use std::path::PathBuf;
use std::process::Command;

use obol_config::stack::{FacilitatorSetting, StackFile};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kubernetes_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// `$OBOL_DEPLOY_PYTHON`, else `<tools>/deploy/py/bin/python`; `None` (skip) outside CI.
fn deploy_python() -> Option<PathBuf> {
    let tools = std::env::var_os("OBOL_TOOLS_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| repo().join(".tools"), PathBuf::from);
    let python = std::env::var_os("OBOL_DEPLOY_PYTHON")
        .filter(|p| !p.is_empty())
        .map_or_else(|| tools.join("deploy/py/bin/python"), PathBuf::from);
    if python.exists() {
        return Some(python);
    }
    let reason = format!(
        "the manifests' check needs {} ($OBOL_DEPLOY_PYTHON): `scripts/install-tools` installs \
         deploy/kubernetes/requirements.txt there",
        python.display()
    );
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "CI=true and {reason}");
    println!("skipping: {reason}");
    None
}

#[test]
fn manifests_render_validate_and_meet_the_policies() {
    let Some(python) = deploy_python() else {
        return;
    };
    let out = Command::new(python)
        .arg(kubernetes_dir().join("check.py"))
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(
        out.status.success(),
        "deploy/kubernetes/check.py failed:\n{report}"
    );
}

#[test]
fn the_gateways_settings_are_what_obol_reads() {
    for file in ["base/settings.yaml", "overlays/production/settings.yaml"] {
        let text = std::fs::read_to_string(kubernetes_dir().join(file)).unwrap();
        let config_map: Value = serde_norway::from_str(&text).unwrap();
        let json = config_map["data"]["stack.json"].as_str().unwrap();
        let settings: StackFile = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("{file}: obol refuses its stack.json: {e}"));
        assert!(
            settings.payment_store.is_none(),
            "{file}: the payment store comes from the Secret"
        );
        assert!(
            matches!(settings.facilitator, Some(FacilitatorSetting::Url(_))),
            "{file}: the gateways use the facilitator Deployment"
        );
    }
}
