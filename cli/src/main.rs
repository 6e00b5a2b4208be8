//! `kubectl-pixie`: run PxL against a Vizier, list the bundled scripts, and deploy, list, inspect
//! and delete px.dev objects. Argument parsing and the I/O of each verb live here and in
//! `commands/`; what they decide and print comes from the `pixie_cli` library.

mod commands;

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pixie_cli::cluster::{ClusterError, ClusterOptions};
use pixie_cli::deploy::VizierFlags;
use pixie_cli::get::ObjectFormat;
use pixie_cli::output::{Format, OutputError, Printer};
use pixie_cli::script;
use pixie_cli::status::ReportFormat;
use pixie_engine::client::{Code, Status};
use pixie_engine::proto::{ExecuteScriptRequest, Language};
use pixie_engine::{ClientError, ClientEvent, ClientTls, DEFAULT_PORT, VizierClient};

#[derive(Debug, Parser)]
#[command(name = "kubectl-pixie", version, about = "Pixie's kubectl plugin")]
struct Cli {
    #[command(flatten)]
    cluster: ClusterFlags,
    #[command(subcommand)]
    command: Command,
}

/// kubectl's flags for reaching the cluster, accepted by every verb.
#[derive(Debug, Args)]
struct ClusterFlags {
    /// The namespace (default: the kubeconfig context's, else `pl`).
    #[arg(short = 'n', long, global = true)]
    namespace: Option<String>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true)]
    context: Option<String>,
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
}

impl ClusterFlags {
    fn options(&self) -> ClusterOptions {
        ClusterOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a PxL script (bundled, a PxlScript object, from a file) or a SQL query and print its
    /// output tables.
    Run(RunArgs),
    /// The bundled script library.
    Scripts {
        #[command(subcommand)]
        command: ScriptsCommand,
    },
    /// Install or upgrade the operator and a Vizier, then follow the rollout until Ready.
    Deploy(DeployArgs),
    /// List px.dev objects with their status: viziers (vz), scripts, cronscripts, exports, plugins.
    Get(GetArgs),
    /// Delete px.dev objects (`delete vizier pixie`), or the operator (`delete operator`).
    Delete(DeleteArgs),
    /// A Vizier's phase, conditions and the health of its components.
    Status(StatusArgs),
}

#[derive(Debug, Subcommand)]
enum ScriptsCommand {
    /// Name and description of every bundled script.
    List,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["script", "file", "sql"])))]
struct RunArgs {
    /// A bundled script, e.g. px/http_data (`kubectl pixie scripts list`), or a PxlScript object of
    /// the namespace, e.g. pxl/http-service-stats.
    script: Option<String>,
    /// A PxL file.
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// A SQL query over the same tables.
    #[arg(long)]
    sql: Option<String>,
    /// The Vizier's broker API (`vizier standalone --listen`).
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_PORT}"))]
    addr: String,
    /// The Vizier's service certificates (ca.crt, client.crt, client.key) for a broker the
    /// operator deployed, which admits only clients with a certificate of its CA. Save each with
    /// `kubectl -n pl get secret service-tls-certs -o jsonpath='{.data.ca\.crt}' | base64 -d`.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Rows per output table (the Vizier's default, 10000, when not given).
    #[arg(long)]
    max_rows: Option<u64>,
    /// Script arguments, after `--`: `-- --start -10m --svc frontend`.
    #[arg(last = true, value_name = "ARGS")]
    script_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    vizier: VizierFlags,
    /// Namespace of the operator.
    #[arg(long, default_value = pixie_operator::install::DEFAULT_NAMESPACE)]
    operator_namespace: String,
    /// The operator image (default: this release's).
    #[arg(long)]
    operator_image: Option<String>,
    /// Apply only the Vizier; the CRDs and the operator must already be installed.
    #[arg(long)]
    skip_operator: bool,
    /// Follow the rollout until the Vizier is Ready (`--wait=false` returns after applying).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    wait: bool,
    /// How long to wait for Ready, such as 90s or 10m.
    #[arg(long, default_value = "10m")]
    timeout: String,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// viziers (vz), scripts (pxlscripts), cronscripts, exports (dataexports) or plugins.
    kind: String,
    /// One object by name; every object of the kind when left out.
    name: Option<String>,
    /// List across every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = ObjectFormat::Table)]
    output: ObjectFormat,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// vizier, script, cronscript, export, plugin, or operator.
    kind: String,
    /// The objects to delete (none for `operator`).
    names: Vec<String>,
    /// Wait until the objects are gone (a Vizier's finalizer first removes its cluster-wide objects).
    #[arg(long)]
    wait: bool,
    /// How long `--wait` waits, such as 60s or 5m.
    #[arg(long, default_value = "5m")]
    timeout: String,
    /// Ask the server to check the deletion without doing it.
    #[arg(long)]
    dry_run: bool,
    /// With `operator`: also delete the px.dev CRDs, and so every px.dev object in the cluster.
    #[arg(long)]
    crds: bool,
    /// With `operator`: the namespace it was deployed to.
    #[arg(long, default_value = pixie_operator::install::DEFAULT_NAMESPACE)]
    operator_namespace: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The Vizier; the namespace's Vizier(s) when left out.
    name: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = ReportFormat::Table)]
    output: ReportFormat,
}

/// Why a command failed, each with the exit code and words a user needs.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Compile(String),
    #[error("{0}; start one with `make run`")]
    Unreachable(ClientError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
    /// Failed, and every failure was already printed (kubectl goes on after one object fails).
    #[error("some operations failed")]
    Reported,
    /// Whoever reads our output stopped (`| head`): not a failure. Only for stdout; a connection
    /// to the Vizier that breaks is an error.
    #[error("stdout was closed")]
    OutputClosed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scripts {
            command: ScriptsCommand::List,
        } => list_scripts().map_err(|e| {
            if is_broken_pipe(&e) {
                RunError::OutputClosed
            } else {
                RunError::Other(e)
            }
        }),
        command => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("error: starting the tokio runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            let cluster = cli.cluster.options();
            runtime.block_on(async move {
                match command {
                    Command::Run(args) => run(args, &cluster).await,
                    Command::Deploy(args) => commands::deploy::deploy(args, &cluster).await,
                    Command::Get(args) => commands::get::get(args, &cluster).await,
                    Command::Delete(args) => commands::delete::delete(args, &cluster).await,
                    Command::Status(args) => commands::status::status(args, &cluster).await,
                    Command::Scripts { .. } => unreachable!("handled above"),
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Compile(text)) => {
            eprint!("{text}");
            ExitCode::from(1)
        }
        Err(RunError::OutputClosed) => ExitCode::SUCCESS,
        Err(RunError::Reported) => ExitCode::from(1),
        // kubectl prints the server's refusals as they are, without its own prefix.
        Err(RunError::Cluster(e @ ClusterError::Api { .. })) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn list_scripts() -> anyhow::Result<()> {
    let scripts = script::bundled();
    let width = scripts.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for s in scripts {
        writeln!(out, "{:width$}  {}", s.name, s.description)?;
    }
    Ok(())
}

async fn run(args: RunArgs, cluster: &ClusterOptions) -> Result<(), RunError> {
    let given = script::parse_args(&args.script_args).map_err(anyhow::Error::from)?;
    let (source, language, script_args) = match (&args.script, &args.file, &args.sql) {
        (Some(name), _, _) if name.starts_with(commands::run::PXL_PREFIX) => {
            let (source, resolved) = commands::run::pxl_script(name, given, cluster).await?;
            (source, Language::Pxl, resolved)
        }
        (Some(name), _, _) => (
            script::bundled_source(name)
                .map_err(anyhow::Error::from)?
                .to_owned(),
            Language::Pxl,
            given,
        ),
        (_, Some(path), _) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            Language::Pxl,
            given,
        ),
        (_, _, Some(sql)) => (sql.clone(), Language::Sql, given),
        _ => unreachable!("clap requires one source"),
    };
    let query_name = args
        .script
        .clone()
        .or_else(|| args.file.as_ref().map(|p| p.display().to_string()))
        .unwrap_or_else(|| "sql".into());
    let request = ExecuteScriptRequest {
        query_str: source.clone(),
        language: language.into(),
        query_name,
        args: script_args.into_iter().collect(),
        max_rows_per_output: args.max_rows.unwrap_or(0),
        // No time window: the script's own start_time arguments decide (CronScripts set one).
        ..Default::default()
    };

    let tls = args
        .tls_dir
        .as_deref()
        .map(ClientTls::load)
        .transpose()
        .map_err(|e| RunError::Other(anyhow::anyhow!("--tls-dir: {e}")))?;
    let connected = VizierClient::connect_over(&args.addr, tls.as_ref()).await;
    let mut client = connected.map_err(|e| match e {
        ClientError::Unreachable { .. } => RunError::Unreachable(e),
        other => RunError::Other(other.into()),
    })?;
    let mut stream = client
        .execute(request)
        .await
        .map_err(|e| unreachable_or_other(e, &args.addr, args.tls_dir.is_some()))?;
    let mut printer = Printer::new(args.output, std::io::stdout().lock());
    while let Some(event) = stream
        .next()
        .await
        .map_err(|e| unreachable_or_other(e, &args.addr, args.tls_dir.is_some()))?
    {
        match event {
            ClientEvent::Outputs(names) => printer.outputs(&names),
            ClientEvent::Table { name, schema } => {
                printer.begin_table(&name, schema).map_err(output_error)?
            }
            ClientEvent::Batch { batch, .. } => printer.batch(batch).map_err(output_error)?,
            ClientEvent::TableEnd {
                table,
                rows,
                truncated,
            } => {
                printer.end_table().map_err(output_error)?;
                if truncated {
                    eprintln!(
                        "note: {table}: showing the first {rows} rows; more were cut (--max-rows)"
                    );
                }
            }
            ClientEvent::Stats(_) => {}
            ClientEvent::CompileError { line, col, message } => {
                return Err(RunError::Compile(script::render_compile_error(
                    &source, line, col, &message,
                )));
            }
        }
    }
    Ok(())
}

/// A Vizier that goes away mid-query reads like one that was never there.
fn unreachable_or_other(e: ClientError, addr: &str, tls: bool) -> RunError {
    match &e {
        ClientError::Unreachable { .. } => RunError::Unreachable(e),
        // A TLS server drops a plaintext HTTP/2 connection at its first bytes.
        ClientError::Status(s) if !tls && dropped_at_http2_level(s) => {
            RunError::Unreachable(ClientError::Unreachable {
                addr: addr.to_owned(),
                reason: "the connection was closed at once; a Vizier deployed by the operator admits only \
                         mutual TLS: pass --tls-dir with its service certificates"
                    .to_owned(),
            })
        }
        ClientError::Status(s) if s.code() == Code::Unavailable => {
            RunError::Unreachable(ClientError::Unreachable {
                addr: addr.to_owned(),
                reason: s.message().to_owned(),
            })
        }
        _ => RunError::Other(e.into()),
    }
}

/// A TLS server reading plaintext drops the connection; depending on when the client notices,
/// tonic reports a transport error (Unknown) or an HTTP/2 protocol error such as FRAME_SIZE_ERROR
/// (Internal).
fn dropped_at_http2_level(s: &Status) -> bool {
    match s.code() {
        Code::Unknown => s.message().contains("transport error"),
        Code::Internal => s.message().contains("h2 protocol error"),
        _ => false,
    }
}

fn output_error(e: OutputError) -> RunError {
    match &e {
        OutputError::Io(io) if io.kind() == ErrorKind::BrokenPipe => RunError::OutputClosed,
        _ => RunError::Other(e.into()),
    }
}

/// A write to stdout failed because its reader went away (`list_scripts` writes nothing else).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}
