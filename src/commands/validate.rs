//! `hull validate`: check manifests, print the merged result.

use std::io::Write;

use anyhow::Context as _;

use super::Context;
use crate::cli::ValidateArgs;

pub fn run(cx: &Context, args: ValidateArgs) -> anyhow::Result<()> {
    let loaded = super::load_manifests(cx, &args.files)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &loaded.manifest)
            .context("cannot write the merged manifest")?;
        writeln!(out)?;
    } else if !cx.quiet {
        let names: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
        writeln!(
            out,
            "{}: valid: {}",
            names.join(" + "),
            loaded.manifest.summary()
        )?;
    }
    Ok(())
}
