//! `obol sell info set|show`: the storefront's branding, kept in the stack settings
//! (`stack.json` `branding`) and read by the running stack on each storefront request.

use std::process::ExitCode;

use obol_config::stack::{Branding, StackFile};

use super::Context;
use crate::cli::{BrandingArgs, InfoCommand};
use crate::output;

pub(crate) async fn run(ctx: &Context, command: InfoCommand) -> anyhow::Result<ExitCode> {
    let path = ctx.paths.stack_file();
    let mut settings = StackFile::load(&path)?;
    if let InfoCommand::Set(args) = command {
        let branding = merged(settings.branding.take().unwrap_or_default(), &args);
        let problems = branding.problems();
        if !problems.is_empty() {
            let named: Vec<String> = problems
                .iter()
                .map(|(field, problem)| format!("branding.{field}: {problem}"))
                .collect();
            anyhow::bail!("{}", named.join("; "));
        }
        settings.branding = (branding != Branding::default()).then_some(branding);
        if let Some(cluster) = &settings.kubernetes {
            // The cluster's gateways read their own settings: those first.
            super::cluster::set_branding(cluster, settings.branding.as_ref()).await?;
            output::note(&format!(
                "set in the ConfigMap {}/obol-stack-settings: the gateways show it once the \
                 kubelet refreshes their mounted settings (within a minute or so)",
                cluster.system_namespace
            ));
        }
        settings.save(&path)?;
    }
    let branding = settings.branding.unwrap_or_default();
    if ctx.json {
        output::json(&serde_json::to_value(&branding)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let shown = serde_json::to_value(&branding)?;
    match shown.as_object().filter(|fields| !fields.is_empty()) {
        None => println!("no branding set: the storefront shows the defaults"),
        Some(fields) => {
            for (field, value) in fields {
                println!("{field:13} {}", value.as_str().unwrap_or_default());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `branding` with the flags given: a value sets the field, an empty value clears it.
fn merged(mut branding: Branding, args: &BrandingArgs) -> Branding {
    for (field, value) in [
        (&mut branding.display_name, &args.display_name),
        (&mut branding.tagline, &args.tagline),
        (&mut branding.logo_url, &args.logo_url),
        (&mut branding.theme, &args.theme),
        (&mut branding.accent_color, &args.accent_color),
        (&mut branding.favicon_url, &args.favicon_url),
        (&mut branding.og_image_url, &args.og_image_url),
        (&mut branding.description, &args.description),
        (&mut branding.contact_email, &args.contact_email),
    ] {
        if let Some(value) = value {
            *field = (!value.is_empty()).then(|| value.clone());
        }
    }
    branding
}
