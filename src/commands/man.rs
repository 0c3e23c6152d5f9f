//! `hull man`: the man page generated from the clap definition.

use clap::CommandFactory;

use crate::cli::Cli;

pub fn run() -> anyhow::Result<()> {
    let page = clap_mangen::Man::new(Cli::command());
    page.render(&mut std::io::stdout())?;
    Ok(())
}
