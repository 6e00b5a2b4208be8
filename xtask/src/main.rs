//! Generation chores for the workspace, run as `cargo run -p xtask -- <chore>`. Everything a user
//! sees that is derived from code (CRD YAML today; the OLM bundle and config later) is written here.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Generation chores for the Pixie workspace")]
struct Cli {
    #[command(subcommand)]
    chore: Chore,
}

#[derive(Subcommand)]
enum Chore {
    /// Write the px.dev CRDs to crds/yaml/ (one file per kind plus kustomization.yaml).
    Crds {
        /// Do not write; fail if the files on disk differ from what the types generate.
        #[arg(long)]
        check: bool,
        /// Directory to write to, instead of crds/yaml in the workspace.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().chore {
        Chore::Crds { check, out_dir } => {
            let dir =
                out_dir.unwrap_or_else(|| workspace_root().join("crds").join(pixie_crds::YAML_DIR));
            let files = pixie_crds::render_yaml()?;
            if check {
                check_crds(&dir, &files)
            } else {
                write_crds(&dir, &files)
            }
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Writes the generated files and removes YAML files that are no longer generated (a renamed kind
/// must not leave its old CRD behind for kustomize to pick up).
fn write_crds(dir: &Path, files: &BTreeMap<String, String>) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for stale in yaml_files_in(dir)?
        .into_iter()
        .filter(|name| !files.contains_key(name))
    {
        fs::remove_file(dir.join(&stale)).with_context(|| format!("removing stale {stale}"))?;
        println!("removed {}", dir.join(&stale).display());
    }
    for (name, contents) in files {
        let path = dir.join(name);
        if fs::read_to_string(&path).ok().as_deref() != Some(contents.as_str()) {
            fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn check_crds(dir: &Path, files: &BTreeMap<String, String>) -> Result<()> {
    let mut problems = Vec::new();
    for (name, contents) in files {
        match fs::read_to_string(dir.join(name)) {
            Ok(on_disk) if on_disk == *contents => {}
            Ok(_) => problems.push(format!("{name} differs")),
            Err(_) => problems.push(format!("{name} is missing")),
        }
    }
    for extra in yaml_files_in(dir)?
        .into_iter()
        .filter(|name| !files.contains_key(name))
    {
        problems.push(format!("{extra} is not generated any more"));
    }
    if !problems.is_empty() {
        bail!(
            "{} is stale ({}): run `make crds`",
            dir.display(),
            problems.join(", ")
        );
    }
    println!("{} is up to date", dir.display());
    Ok(())
}

fn yaml_files_in(dir: &Path) -> Result<Vec<String>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".yaml") {
            names.push(name);
        }
    }
    Ok(names)
}
