//! The PxL interpreter: runs a parsed script at compile time, folding constants and building one
//! DataFusion logical plan per `px.display`.

mod args;
mod expr;
mod frame;
mod ops;
mod otel;
mod px;
mod value;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::common::DFSchemaRef;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{AggregateUDF, LogicalPlan, LogicalPlanBuilder, ScalarUDF};
use ruff_python_ast::{Expr, ModModule, Stmt, StmtFunctionDef};
use ruff_text_size::{Ranged, TextRange, TextSize};

use crate::error::{CompileError, LineIndex};
use crate::export::ExportPlan;
use crate::suggest::did_you_mean;
use crate::udf::{Pluck, PluckKind, UpidToMetadata, UpidToPid};
use crate::{
    CompileOptions, CompiledScript, MetadataField, MetadataResolver, OutputPlan, ScriptParam,
    TableCatalog,
};
pub use value::{Value, time_type};

pub type Result<T> = std::result::Result<T, CompileError>;

/// Calls nested deeper than this are reported instead of overflowing the stack.
const MAX_CALL_DEPTH: usize = 64;

pub fn compile(
    source: &str,
    catalog: &dyn TableCatalog,
    metadata: Arc<dyn MetadataResolver>,
    options: &CompileOptions,
) -> Result<CompiledScript> {
    let index = LineIndex::new(source);
    let parsed = ruff_python_parser::parse_module(source)
        .map_err(|e| index.error(e.location.start().to_usize(), syntax_message(&e.error)))?;
    let module: &ModModule = parsed.syntax();
    let mut compiler = Compiler::new(source, index, catalog, metadata, options);
    compiler.run(module)
}

/// Names exported outputs `export`, `export_1`, `export_2`, ... in call order, skipping the names
/// of displayed outputs, and points each [`ExportPlan`] at its output.
fn name_exports(outputs: &mut [Output]) {
    let mut taken: HashSet<String> = outputs
        .iter()
        .filter(|o| o.export.is_none())
        .map(|o| o.name.clone())
        .collect();
    let mut n = 0;
    for output in outputs.iter_mut() {
        let Some(export) = &mut output.export else {
            continue;
        };
        let name = loop {
            let candidate = match n {
                0 => "export".to_string(),
                n => format!("export_{n}"),
            };
            n += 1;
            if taken.insert(candidate.clone()) {
                break candidate;
            }
        };
        export.output = name.clone();
        output.name = name;
    }
}

fn syntax_message(error: &ruff_python_parser::ParseErrorType) -> String {
    format!("syntax error: {error}")
}

/// The UDFs plans embed, built once per compilation around the caller's resolver.
pub struct Functions {
    metadata: HashMap<MetadataField, Arc<ScalarUDF>>,
    pid: Arc<ScalarUDF>,
    pluck: HashMap<PluckKind, Arc<ScalarUDF>>,
    quantiles: Arc<AggregateUDF>,
}

impl Functions {
    fn new(resolver: Arc<dyn MetadataResolver>) -> Self {
        Functions {
            metadata: MetadataField::ALL
                .iter()
                .filter(|f| **f != MetadataField::Pid)
                .map(|&f| {
                    let udf = UpidToMetadata::new(f, resolver.clone());
                    (f, Arc::new(ScalarUDF::new_from_impl(udf)))
                })
                .collect(),
            pid: Arc::new(ScalarUDF::new_from_impl(UpidToPid::new())),
            pluck: [PluckKind::Text, PluckKind::Float64, PluckKind::Int64]
                .into_iter()
                .map(|k| (k, Arc::new(ScalarUDF::new_from_impl(Pluck::new(k)))))
                .collect(),
            quantiles: Arc::new(crate::udafs().remove(0)),
        }
    }
}

/// How a block of statements ended.
enum Flow<'a> {
    Next,
    Return(Value<'a>),
}

struct Output {
    /// The `px.display` name; exports are named once every display is known.
    name: String,
    plan: LogicalPlan,
    at: TextSize,
    export: Option<ExportPlan>,
}

pub struct Compiler<'a> {
    source: &'a str,
    index: LineIndex<'a>,
    catalog: &'a dyn TableCatalog,
    options: &'a CompileOptions,
    functions: Functions,
    /// `frames[0]` holds the globals; each user-function call pushes its locals.
    frames: Vec<HashMap<String, Value<'a>>>,
    /// Every DataFrame's current plan; `Value::DataFrame(i)` is `plans[i]`.
    plans: Vec<LogicalPlan>,
    outputs: Vec<Output>,
}

impl<'a> Compiler<'a> {
    fn new(
        source: &'a str,
        index: LineIndex<'a>,
        catalog: &'a dyn TableCatalog,
        metadata: Arc<dyn MetadataResolver>,
        options: &'a CompileOptions,
    ) -> Self {
        Compiler {
            source,
            index,
            catalog,
            options,
            functions: Functions::new(metadata),
            frames: vec![HashMap::new()],
            plans: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Runs the module, then the entry function if the top level displayed nothing.
    fn run(&mut self, module: &'a ModModule) -> Result<CompiledScript> {
        if let Flow::Return(_) = self.exec_block(&module.body)? {
            unreachable!("top-level return is refused in exec_stmt")
        }
        let mut params = Vec::new();
        if self.outputs.is_empty() {
            let entry = module.body.iter().rev().find_map(|stmt| match stmt {
                Stmt::FunctionDef(def) => Some(def),
                _ => None,
            });
            let Some(entry) = entry else {
                return Err(self.index.error(
                    0,
                    "the script displays nothing: call px.display(df), or define a function that \
                     returns a DataFrame",
                ));
            };
            params = self.run_entry(entry)?;
        } else if let Some(name) = self.options.args.keys().next() {
            return Err(self.error(
                self.outputs[0].at,
                format!(
                    "argument '{name}' given, but this script takes no arguments: it calls \
                     px.display at top level"
                ),
            ));
        }
        let mut outputs = std::mem::take(&mut self.outputs);
        name_exports(&mut outputs);
        let exports = outputs.iter().filter_map(|o| o.export.clone()).collect();
        let outputs = outputs
            .into_iter()
            .map(|output| {
                let plan = match self.options.max_output_rows {
                    Some(n) => LogicalPlanBuilder::from(output.plan)
                        .limit(0, Some(n))
                        .and_then(LogicalPlanBuilder::build)
                        .map_err(|e| self.plan_error(output.at, e))?,
                    None => output.plan,
                };
                Ok(OutputPlan {
                    name: output.name,
                    plan,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CompiledScript {
            outputs,
            params,
            exports,
        })
    }

    /// Calls the entry function with `options.args` (or defaults) and displays what it returns.
    fn run_entry(&mut self, def: &'a StmtFunctionDef) -> Result<Vec<ScriptParam>> {
        self.check_def(def)?;
        let mut params = Vec::new();
        let mut values = Vec::new();
        for p in def.parameters.args.iter() {
            let name = p.parameter.name.id.as_str();
            let type_name = match &p.parameter.annotation {
                Some(a) => self.text(a.range()).to_string(),
                None => "str".to_string(),
            };
            let default = match &p.default {
                Some(d) => {
                    let v = self.eval(d)?;
                    if !v.is_constant() {
                        return self.err(d.range(), "a parameter default must be a constant");
                    }
                    Some(v)
                }
                None => None,
            };
            let value = match self.options.args.get(name) {
                Some(text) => self.convert_arg(name, &type_name, text, p.parameter.range())?,
                None => match &default {
                    Some(v) => v.clone(),
                    None => {
                        return self.err(
                            p.parameter.name.range(),
                            format!(
                                "missing argument '{name}' for {}(): pass it as --{name} VALUE",
                                def.name.id
                            ),
                        );
                    }
                },
            };
            params.push(ScriptParam {
                name: name.to_string(),
                type_name,
                default: default.as_ref().map(Value::plain_text),
            });
            values.push(args::Arg {
                value,
                range: p.parameter.range(),
            });
        }
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        if let Some(unknown) = self
            .options
            .args
            .keys()
            .find(|k| !names.contains(&k.as_str()))
        {
            return self.err(
                def.name.range(),
                format!(
                    "{}() has no parameter '{unknown}'{} (parameters: {})",
                    def.name.id,
                    did_you_mean(unknown, names.iter().copied()),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            );
        }
        let call = args::CallArgs {
            positional: values,
            keywords: Vec::new(),
            range: def.name.range(),
        };
        match self.call_function(def, call)? {
            Value::DataFrame(id) => self.display(id, "output".to_string(), def.name.start())?,
            Value::None if !self.outputs.is_empty() => {}
            other => {
                return self.err(
                    def.name.range(),
                    format!(
                        "the entry function {}() must return a DataFrame (or call px.display), \
                         but returned {}",
                        def.name.id,
                        other.type_name()
                    ),
                );
            }
        }
        Ok(params)
    }

    /// Converts a command-line argument by its parameter's annotation.
    fn convert_arg(
        &self,
        name: &str,
        type_name: &str,
        text: &str,
        at: TextRange,
    ) -> Result<Value<'a>> {
        let bad = |want: &str| {
            self.err(
                at,
                format!("argument '{name}' must be {want}, got '{text}'"),
            )
        };
        match type_name {
            "int" => text
                .trim()
                .parse()
                .map(Value::Int)
                .or_else(|_| bad("an int")),
            "float" => text
                .trim()
                .parse()
                .map(Value::Float)
                .or_else(|_| bad("a float")),
            "bool" => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Value::Bool(true)),
                "false" | "0" | "no" => Ok(Value::Bool(false)),
                _ => bad("true or false"),
            },
            _ => Ok(Value::Str(text.to_string())),
        }
    }

    /// Refuses function definitions the interpreter cannot call.
    fn check_def(&self, def: &'a StmtFunctionDef) -> Result<()> {
        if let Some(d) = def.decorator_list.first() {
            return self.err(d.range(), "decorators are not supported in PxL");
        }
        if def.is_async {
            return self.err(def.range(), "async functions are not supported in PxL");
        }
        let p = &def.parameters;
        if let Some(v) = &p.vararg {
            return self.err(v.range(), "*args parameters are not supported in PxL");
        }
        if let Some(k) = &p.kwarg {
            return self.err(k.range(), "**kwargs parameters are not supported in PxL");
        }
        if let Some(k) = p.posonlyargs.first().or(p.kwonlyargs.first()) {
            return self.err(
                k.range(),
                "positional-only and keyword-only parameters are not supported in PxL",
            );
        }
        for param in p.args.iter() {
            if let Some(a) = &param.parameter.annotation {
                let text = self.text(a.range());
                let known =
                    matches!(text, "str" | "int" | "float" | "bool") || text.starts_with("px.");
                if !known {
                    return self.err(
                        a.range(),
                        format!(
                            "unsupported parameter type '{text}': use str, int, float, bool or a \
                             px semantic type such as px.Service"
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn exec_block(&mut self, body: &'a [Stmt]) -> Result<Flow<'a>> {
        for stmt in body {
            if let Flow::Return(v) = self.exec_stmt(stmt)? {
                return Ok(Flow::Return(v));
            }
        }
        Ok(Flow::Next)
    }

    fn exec_stmt(&mut self, stmt: &'a Stmt) -> Result<Flow<'a>> {
        match stmt {
            Stmt::Import(import) => {
                for alias in &import.names {
                    if alias.name.id.as_str() != "px" {
                        return self.err(
                            alias.range(),
                            format!(
                                "cannot import '{}': PxL scripts can only 'import px'",
                                alias.name.id
                            ),
                        );
                    }
                    let bound = alias.asname.as_ref().unwrap_or(&alias.name);
                    self.bind(bound.id.to_string(), Value::Px);
                }
            }
            Stmt::ImportFrom(i) => {
                return self.err(i.range(), "PxL scripts can only 'import px'");
            }
            Stmt::FunctionDef(def) => {
                self.check_def(def)?;
                self.bind(def.name.id.to_string(), Value::Function(def));
            }
            Stmt::Assign(assign) => {
                let value = self.eval(&assign.value)?;
                for target in &assign.targets {
                    self.assign(target, value.clone(), assign.value.range())?;
                }
            }
            Stmt::AnnAssign(assign) => {
                if let Some(v) = &assign.value {
                    let value = self.eval(v)?;
                    self.assign(&assign.target, value, v.range())?;
                }
            }
            Stmt::AugAssign(assign) => {
                let current = self.eval(&assign.target)?;
                let rhs = self.eval(&assign.value)?;
                let value = self.binop(
                    assign.op,
                    current,
                    rhs,
                    assign.target.range(),
                    assign.value.range(),
                    assign.range(),
                )?;
                self.assign(&assign.target, value, assign.range())?;
            }
            Stmt::Expr(e) => {
                self.eval(&e.value)?;
            }
            Stmt::If(stmt_if) => {
                if self.condition(&stmt_if.test)? {
                    return self.exec_block(&stmt_if.body);
                }
                for clause in &stmt_if.elif_else_clauses {
                    let taken = match &clause.test {
                        Some(test) => self.condition(test)?,
                        None => true,
                    };
                    if taken {
                        return self.exec_block(&clause.body);
                    }
                }
            }
            Stmt::Return(ret) => {
                if self.frames.len() == 1 {
                    return self.err(ret.range(), "'return' outside a function");
                }
                let value = match &ret.value {
                    Some(v) => self.eval(v)?,
                    None => Value::None,
                };
                return Ok(Flow::Return(value));
            }
            Stmt::Pass(_) => {}
            other => {
                let what = match other {
                    Stmt::For(_) => "'for' loops",
                    Stmt::While(_) => "'while' loops",
                    Stmt::ClassDef(_) => "classes",
                    Stmt::With(_) => "'with' blocks",
                    Stmt::Try(_) => "'try' blocks",
                    Stmt::Raise(_) => "'raise'",
                    Stmt::Assert(_) => "'assert'",
                    Stmt::Delete(_) => "'del'",
                    Stmt::Global(_) | Stmt::Nonlocal(_) => "'global' and 'nonlocal'",
                    Stmt::Match(_) => "'match'",
                    Stmt::Break(_) | Stmt::Continue(_) => "'break' and 'continue'",
                    _ => "this statement",
                };
                return self.err(other.range(), format!("{what} are not supported in PxL"));
            }
        }
        Ok(Flow::Next)
    }

    /// An `if` test: a constant known while compiling.
    fn condition(&mut self, test: &'a Expr) -> Result<bool> {
        let value = self.eval(test)?;
        match value.truthy() {
            Some(b) => Ok(b),
            None => self.err(
                test.range(),
                format!(
                    "an 'if' condition must be known while compiling (a constant or script \
                     argument), got a {}; filter rows with df[condition] instead",
                    value.type_name()
                ),
            ),
        }
    }

    fn assign(&mut self, target: &'a Expr, value: Value<'a>, value_at: TextRange) -> Result<()> {
        match target {
            Expr::Name(name) => {
                self.bind(name.id.to_string(), value);
                Ok(())
            }
            Expr::Attribute(attr) => {
                let object = self.eval(&attr.value)?;
                let Value::DataFrame(id) = object else {
                    return self.err(
                        attr.value.range(),
                        format!("cannot set attributes on a {}", object.type_name()),
                    );
                };
                self.assign_column(
                    id,
                    attr.attr.id.as_str(),
                    value,
                    attr.attr.range(),
                    value_at,
                )
            }
            Expr::Subscript(sub) => {
                let object = self.eval(&sub.value)?;
                let Value::DataFrame(id) = object else {
                    return self.err(
                        sub.value.range(),
                        format!("cannot assign items of a {}", object.type_name()),
                    );
                };
                match self.eval(&sub.slice)? {
                    Value::Str(name) => {
                        self.assign_column(id, &name, value, sub.slice.range(), value_at)
                    }
                    other => self.err(
                        sub.slice.range(),
                        format!("a column name must be a string, got {}", other.type_name()),
                    ),
                }
            }
            Expr::Tuple(t) => self.unpack(&t.elts, value, t.range(), value_at),
            Expr::List(l) => self.unpack(&l.elts, value, l.range(), value_at),
            other => self.err(other.range(), "cannot assign to this expression"),
        }
    }

    fn unpack(
        &mut self,
        targets: &'a [Expr],
        value: Value<'a>,
        at: TextRange,
        value_at: TextRange,
    ) -> Result<()> {
        let items = match value {
            Value::Tuple(items) | Value::List(items) => items,
            other => {
                return self.err(
                    value_at,
                    format!(
                        "cannot unpack a {} into {} names",
                        other.type_name(),
                        targets.len()
                    ),
                );
            }
        };
        if items.len() != targets.len() {
            return self.err(
                at,
                format!(
                    "cannot unpack {} values into {} names",
                    items.len(),
                    targets.len()
                ),
            );
        }
        for (target, item) in targets.iter().zip(items) {
            self.assign(target, item, value_at)?;
        }
        Ok(())
    }

    fn bind(&mut self, name: String, value: Value<'a>) {
        self.frames
            .last_mut()
            .expect("the global frame is never popped")
            .insert(name, value);
    }

    /// Locals first, then globals (Python's rule without closures).
    fn lookup(&self, name: &str) -> Option<&Value<'a>> {
        let locals = self
            .frames
            .last()
            .expect("the global frame is never popped");
        locals.get(name).or_else(|| self.frames[0].get(name))
    }

    fn visible_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.frames[0].keys().map(String::as_str).collect();
        if self.frames.len() > 1 {
            names.extend(self.frames.last().unwrap().keys().map(String::as_str));
        }
        names.sort_unstable();
        names
    }

    /// Calls a user function: binds its parameters and runs its body in a new frame.
    fn call_function(
        &mut self,
        def: &'a StmtFunctionDef,
        call: args::CallArgs<'a>,
    ) -> Result<Value<'a>> {
        if self.frames.len() > MAX_CALL_DEPTH {
            return self.err(
                call.range,
                format!(
                    "calls nested more than {MAX_CALL_DEPTH} deep (is {}() recursive?)",
                    def.name.id
                ),
            );
        }
        let params: Vec<&str> = def
            .parameters
            .args
            .iter()
            .map(|p| p.parameter.name.id.as_str())
            .collect();
        let fname = format!("{}()", def.name.id);
        let call_at = call.range;
        let bound = self.bind_args(&fname, &params, 0, call)?;
        let mut frame = HashMap::new();
        for (p, arg) in def.parameters.args.iter().zip(bound) {
            let value = match arg {
                Some(arg) => arg.value,
                None => match &p.default {
                    Some(d) => self.eval(d)?,
                    None => {
                        return self.err(
                            call_at,
                            format!("{fname} is missing argument '{}'", p.parameter.name.id),
                        );
                    }
                },
            };
            frame.insert(p.parameter.name.id.to_string(), value);
        }
        self.frames.push(frame);
        let flow = self.exec_block(&def.body);
        self.frames.pop();
        Ok(match flow? {
            Flow::Return(v) => v,
            Flow::Next => Value::None,
        })
    }

    /// Adds an output; names are unique so the client can tell tables apart.
    fn display(&mut self, df: usize, name: String, at: TextSize) -> Result<()> {
        if self
            .outputs
            .iter()
            .any(|o| o.export.is_none() && o.name == name)
        {
            return Err(self.error(
                at,
                format!("output '{name}' is displayed twice; give each px.display a distinct name"),
            ));
        }
        self.outputs.push(Output {
            name,
            plan: self.plans[df].clone(),
            at,
            export: None,
        });
        Ok(())
    }

    /// Adds an exported DataFrame as an output, so it runs and streams like a displayed one.
    fn export(&mut self, df: usize, plan: ExportPlan, at: TextSize) {
        self.outputs.push(Output {
            name: String::new(),
            plan: self.plans[df].clone(),
            at,
            export: Some(plan),
        });
    }

    fn new_frame(&mut self, plan: LogicalPlan) -> usize {
        self.plans.push(plan);
        self.plans.len() - 1
    }

    fn schema(&self, df: usize) -> &DFSchemaRef {
        self.plans[df].schema()
    }

    /// The source text of a range.
    fn text(&self, range: TextRange) -> &'a str {
        &self.source[range.start().to_usize()..range.end().to_usize()]
    }

    fn error(&self, at: TextSize, message: impl Into<String>) -> CompileError {
        self.index.error(at.to_usize(), message)
    }

    fn err<T>(&self, at: TextRange, message: impl Into<String>) -> Result<T> {
        Err(self.error(at.start(), message))
    }

    /// DataFusion refused a plan the checks above let through: report it where it was written.
    fn plan_error(&self, at: TextSize, e: DataFusionError) -> CompileError {
        self.error(at, format!("cannot plan this: {}", e.strip_backtrace()))
    }
}
