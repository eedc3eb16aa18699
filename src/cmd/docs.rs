//! `shadowgate docs --out DIR` (hidden): the manual pages (clap_mangen: `shadowgate.1` and one per
//! subcommand, `shadowgate-run.1`, `shadowgate-policy-check.1`, ...) and the bash, zsh and fish
//! completions (clap_complete), written from the command line's own definition. The Debian
//! package ships the copies in deploy/man/ and deploy/completions/; tests/it/cli_docs.rs fails when
//! they differ from what the binary writes (regenerate: `cargo run --profile ci -- docs --out deploy`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

#[derive(clap::Args)]
pub struct Args {
    /// Folder to write `man/*.1` and `completions/` into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// The completion files and their names as packaged (bash-completion, zsh and fish look for
/// these names).
pub const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "shadowgate.bash"),
    (Shell::Zsh, "_shadowgate"),
    (Shell::Fish, "shadowgate.fish"),
];

pub fn run(a: Args, cli: clap::Command) -> ExitCode {
    match write(&a.out, cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shadowgate docs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Write the pages and completions of `cli` under `out`, replacing the previous ones (a removed
/// subcommand's page goes too).
pub fn write(out: &Path, cli: clap::Command) -> Result<(), String> {
    let at = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let man = out.join("man");
    if man.is_dir() {
        for f in std::fs::read_dir(&man).map_err(|e| at(&man, e))?.flatten() {
            if f.path().extension().is_some_and(|x| x == "1") {
                std::fs::remove_file(f.path()).map_err(|e| at(&f.path(), e))?;
            }
        }
    }
    std::fs::create_dir_all(&man).map_err(|e| at(&man, e))?;
    clap_mangen::generate_to(cli.clone(), &man).map_err(|e| at(&man, e))?;
    let comp = out.join("completions");
    std::fs::create_dir_all(&comp).map_err(|e| at(&comp, e))?;
    for (shell, name) in COMPLETIONS {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cli.clone(), "shadowgate", &mut text);
        let p = comp.join(name);
        std::fs::write(&p, text).map_err(|e| at(&p, e))?;
    }
    Ok(())
}
