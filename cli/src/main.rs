//! `kubectl-pixie`: run PxL against a Vizier and list the bundled scripts.

use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pixie_cli::output::{Format, OutputError, Printer};
use pixie_cli::script;
use pixie_engine::client::Code;
use pixie_engine::proto::{ExecuteScriptRequest, Language};
use pixie_engine::{ClientError, ClientEvent, DEFAULT_PORT, VizierClient};

#[derive(Debug, Parser)]
#[command(name = "kubectl-pixie", version, about = "Pixie's kubectl plugin")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a PxL script (bundled, from a file) or a SQL query and print its output tables.
    Run(RunArgs),
    /// The bundled script library.
    Scripts {
        #[command(subcommand)]
        command: ScriptsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ScriptsCommand {
    /// Name and description of every bundled script.
    List,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["script", "file", "sql"])))]
struct RunArgs {
    /// A bundled script, e.g. px/http_data (`kubectl pixie scripts list`).
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
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Rows per output table (the Vizier's default, 10000, when not given).
    #[arg(long)]
    max_rows: Option<u64>,
    /// Script arguments, after `--`: `-- --start -10m --svc frontend`.
    #[arg(last = true, value_name = "ARGS")]
    script_args: Vec<String>,
}

/// Why a run failed, each with the exit code and words a user needs.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("{0}")]
    Compile(String),
    #[error("{0}; start one with `make run`")]
    Unreachable(ClientError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scripts {
            command: ScriptsCommand::List,
        } => list_scripts().map_err(RunError::from),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Compile(text)) => {
            eprint!("{text}");
            ExitCode::from(1)
        }
        Err(RunError::Other(e)) if is_broken_pipe(&e) => ExitCode::SUCCESS,
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

fn run(args: RunArgs) -> Result<(), RunError> {
    let (source, language) = match (&args.script, &args.file, &args.sql) {
        (Some(name), _, _) => (
            script::bundled_source(name)
                .map_err(anyhow::Error::from)?
                .to_owned(),
            Language::Pxl,
        ),
        (_, Some(path), _) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            Language::Pxl,
        ),
        (_, _, Some(sql)) => (sql.clone(), Language::Sql),
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
        args: script::parse_args(&args.script_args)
            .map_err(anyhow::Error::from)?
            .into_iter()
            .collect(),
        max_rows_per_output: args.max_rows.unwrap_or(0),
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let mut client = VizierClient::connect(&args.addr).await.map_err(|e| match e {
            ClientError::Unreachable { .. } => RunError::Unreachable(e),
            other => RunError::Other(other.into()),
        })?;
        let mut stream = client
            .execute(request)
            .await
            .map_err(|e| unreachable_or_other(e, &args.addr))?;
        let mut printer = Printer::new(args.output, std::io::stdout().lock());
        while let Some(event) = stream
            .next()
            .await
            .map_err(|e| unreachable_or_other(e, &args.addr))?
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
    })
}

/// A Vizier that goes away mid-query reads like one that was never there.
fn unreachable_or_other(e: ClientError, addr: &str) -> RunError {
    match &e {
        ClientError::Unreachable { .. } => RunError::Unreachable(e),
        ClientError::Status(s) if s.code() == Code::Unavailable => {
            RunError::Unreachable(ClientError::Unreachable {
                addr: addr.to_owned(),
                reason: s.message().to_owned(),
            })
        }
        _ => RunError::Other(e.into()),
    }
}

fn output_error(e: OutputError) -> RunError {
    RunError::Other(e.into())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
            || matches!(cause.downcast_ref::<OutputError>(), Some(OutputError::Io(io)) if io.kind() == ErrorKind::BrokenPipe)
    })
}
