//! `obol kube …`: what the stack needs in a Kubernetes cluster.

use std::process::ExitCode;

use obol_control::crd;
use serde_json::json;

use crate::cli::KubeCommand;

/// Runs a `kube` subcommand.
pub(crate) fn run(command: KubeCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        KubeCommand::Crds { out: Some(dir) } => {
            let written = crd::write_dir(&dir)?;
            for path in written {
                println!("{}", path.display());
            }
        }
        KubeCommand::Crds { out: None } if json => {
            let list = json!({"apiVersion": "v1", "kind": "List", "items": crd::crds()?});
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        KubeCommand::Crds { out: None } => print!("{}", crd::stream()?),
    }
    Ok(ExitCode::SUCCESS)
}
