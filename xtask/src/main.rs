//! Generation chores for the workspace, run as `cargo run -p xtask -- <chore>`. Everything a user
//! sees that is derived from code (the CRD YAML, the kustomize config and install.yaml, the OLM
//! bundle, the Argo CD health checks) is written here.

mod bundle;
mod manifests;

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
    /// Write config/argocd/argocd-cm-patch.yaml, which embeds config/argocd/<Kind>/health.lua.
    Argocd {
        /// Do not write; fail if the patch on disk differs from what the Lua scripts generate.
        #[arg(long)]
        check: bool,
    },
    /// Write config/rbac, config/manager, config/default and config/install.yaml from
    /// operator/src/install.rs and the CRDs.
    Manifests {
        /// Do not write; fail if the files on disk differ from what the sources generate.
        #[arg(long)]
        check: bool,
        /// Directory that holds config/, instead of the workspace root.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Write the OLM bundle: bundle/manifests, bundle/metadata and bundle/bundle.Dockerfile.
    Bundle {
        /// Do not write; fail if the files on disk differ from what the sources generate.
        #[arg(long)]
        check: bool,
        /// Directory that holds bundle/, instead of the workspace root.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// Generated files, by path relative to the output root, and the directories they fill: any other
/// file in those is stale.
pub struct Generated {
    pub files: BTreeMap<String, String>,
    pub owned_dirs: Vec<String>,
    /// What regenerates them, for the error message.
    pub make_target: &'static str,
}

impl Generated {
    fn stale_files(&self, root: &Path) -> Result<Vec<String>> {
        let mut stale = Vec::new();
        for dir in &self.owned_dirs {
            let path = root.join(dir);
            if !path.exists() {
                continue;
            }
            for entry in
                fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))?
            {
                let name = format!("{dir}/{}", entry?.file_name().to_string_lossy());
                if !self.files.contains_key(&name) {
                    stale.push(name);
                }
            }
        }
        Ok(stale)
    }

    /// Writes what changed and removes files that are no longer generated.
    fn write(&self, root: &Path) -> Result<()> {
        for stale in self.stale_files(root)? {
            let path = root.join(&stale);
            fs::remove_file(&path).with_context(|| format!("removing stale {}", path.display()))?;
            println!("removed {}", path.display());
        }
        for (name, contents) in &self.files {
            let path = root.join(name);
            if fs::read_to_string(&path).ok().as_deref() != Some(contents.as_str()) {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                fs::write(&path, contents)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
        Ok(())
    }

    fn check(&self, root: &Path) -> Result<()> {
        let mut problems = Vec::new();
        for (name, contents) in &self.files {
            match fs::read_to_string(root.join(name)) {
                Ok(on_disk) if on_disk == *contents => {}
                Ok(_) => problems.push(format!("{name} differs")),
                Err(_) => problems.push(format!("{name} is missing")),
            }
        }
        for extra in self.stale_files(root)? {
            problems.push(format!("{extra} is not generated any more"));
        }
        if !problems.is_empty() {
            bail!(
                "stale generated files ({}): run `{}`",
                problems.join(", "),
                self.make_target
            );
        }
        println!("{} generated files are up to date", self.files.len());
        Ok(())
    }

    fn write_or_check(&self, root: &Path, check: bool) -> Result<()> {
        if check {
            self.check(root)
        } else {
            self.write(root)
        }
    }
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
        Chore::Manifests { check, out_dir } => {
            let root = out_dir.unwrap_or_else(workspace_root);
            manifests::render()?.write_or_check(&root, check)
        }
        Chore::Bundle { check, out_dir } => {
            let root = out_dir.unwrap_or_else(workspace_root);
            bundle::render(&workspace_root())?.write_or_check(&root, check)
        }
        Chore::Argocd { check } => {
            let dir = workspace_root().join(ARGOCD_DIR);
            let patch = render_argocd_cm_patch(&dir)?;
            let path = dir.join(ARGOCD_CM_PATCH);
            let on_disk = fs::read_to_string(&path).ok();
            if check {
                if on_disk.as_deref() != Some(patch.as_str()) {
                    bail!("{} is stale: run `make argocd`", path.display());
                }
                println!("{} is up to date", path.display());
            } else if on_disk.as_deref() != Some(patch.as_str()) {
                fs::write(&path, patch).with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

/// Where the Argo CD health checks live: the shared `conditions.lua` prelude and one
/// `<Kind>/health.lua` per px.dev kind.
const ARGOCD_DIR: &str = "config/argocd";
const ARGOCD_PRELUDE: &str = "conditions.lua";
const ARGOCD_CM_PATCH: &str = "argocd-cm-patch.yaml";

/// The argocd-cm patch with, under `resource.customizations.health.px.dev_<Kind>`, each kind's
/// standalone check: the `conditions.lua` prelude followed by `<Kind>/health.lua` (Argo CD runs every
/// check on its own, so the prelude cannot be shared at run time).
/// Every kind the CRDs define must have a script, and every script must belong to a kind, so a new
/// kind cannot ship without a health check.
fn render_argocd_cm_patch(dir: &Path) -> Result<String> {
    let kinds: Vec<String> = pixie_crds::all_crds()
        .into_iter()
        .map(|crd| crd.spec.names.kind)
        .collect();
    let prelude_path = dir.join(ARGOCD_PRELUDE);
    let prelude = fs::read_to_string(&prelude_path)
        .with_context(|| format!("reading {}", prelude_path.display()))?;
    let mut scripts = BTreeMap::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let script = entry.path().join("health.lua");
        if !script.is_file() {
            continue;
        }
        let kind = entry.file_name().to_string_lossy().into_owned();
        if !kinds.contains(&kind) {
            bail!(
                "{} is not a px.dev kind ({})",
                script.display(),
                kinds.join(", ")
            );
        }
        let body =
            fs::read_to_string(&script).with_context(|| format!("reading {}", script.display()))?;
        let lua = format!("{prelude}\n{body}");
        // A literal block scalar (`|`) gives back exactly these bytes only under these conditions.
        if !lua.ends_with('\n') || lua.ends_with("\n\n") || lua.starts_with([' ', '\t']) {
            bail!(
                "{} must end with exactly one newline and not start with whitespace",
                script.display()
            );
        }
        scripts.insert(kind, lua);
    }
    if let Some(missing) = kinds.iter().find(|kind| !scripts.contains_key(*kind)) {
        bail!("{}/{missing}/health.lua is missing", dir.display());
    }

    let mut out = String::from(
        "# Generated by `cargo run -p xtask -- argocd` (make argocd) from config/argocd/conditions.lua and\n\
         # config/argocd/<Kind>/health.lua; do not edit by hand.\n\
         # Merge it into Argo CD's argocd-cm, for example with\n\
         # `kubectl -n argocd patch configmap argocd-cm --patch-file config/argocd/argocd-cm-patch.yaml`.\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: argocd-cm\n  namespace: argocd\n\
         data:\n",
    );
    for (kind, lua) in &scripts {
        out.push_str(&format!(
            "  resource.customizations.health.px.dev_{kind}: |\n"
        ));
        for line in lua.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    Ok(out)
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
