//! DataFrame operations: sources, column assignment, filters, projections, grouping, joins and
//! unions, each a step of a DataFusion `LogicalPlanBuilder`.

use std::collections::HashSet;

use arrow::datatypes::DataType;
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::functions_aggregate::expr_fn::{avg, count, max, min, sum};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit};
use datafusion::prelude::ident;
use ruff_text_size::TextRange;

use super::args::{Arg, CallArgs};
use super::value::{Col, Kind, type_name};
use super::{Compiler, Result, Value};
use crate::MetadataField;
use crate::suggest::did_you_mean;
use crate::time::parse_time;
use pixie_store::TIME_COLUMN;

/// DataFrame methods, for "did you mean" and for telling methods from columns.
pub const METHODS: [&str; 6] = ["agg", "append", "drop", "groupby", "head", "merge"];

/// The aggregate functions `agg()` takes, as `px.<name>`.
pub const AGGREGATES: [&str; 7] = ["any", "count", "max", "mean", "min", "quantiles", "sum"];

/// `df.ctx[...]` keys and the metadata each reads (`None` is the pid, read from the upid itself).
const CTX_KEYS: [(&str, Option<MetadataField>); 14] = [
    ("pod", Some(MetadataField::Pod)),
    ("pod_name", Some(MetadataField::Pod)),
    ("service", Some(MetadataField::Service)),
    ("service_name", Some(MetadataField::Service)),
    ("namespace", Some(MetadataField::Namespace)),
    ("node", Some(MetadataField::Node)),
    ("node_name", Some(MetadataField::Node)),
    ("container", Some(MetadataField::Container)),
    ("container_name", Some(MetadataField::Container)),
    ("cmdline", Some(MetadataField::Cmdline)),
    ("cmd", Some(MetadataField::Cmdline)),
    ("hostname", Some(MetadataField::Hostname)),
    ("host", Some(MetadataField::Hostname)),
    ("pid", None),
];

impl<'a> Compiler<'a> {
    pub(super) fn call_method(
        &mut self,
        df: usize,
        method: &str,
        method_at: TextRange,
        args: CallArgs<'a>,
    ) -> Result<Value<'a>> {
        match method {
            "groupby" => {
                let [by] = self.bind_fixed("df.groupby()", &["by"], 1, args)?;
                let by = by.expect("required");
                let keys = self.column_list(df, by, "df.groupby()")?;
                Ok(Value::GroupBy { df, keys })
            }
            "agg" => self.agg(df, &[], args).map(Value::DataFrame),
            "drop" => {
                let [columns] = self.bind_fixed("df.drop()", &["columns"], 1, args)?;
                let columns = columns.expect("required");
                let names = self.column_list(df, columns, "df.drop()")?;
                let keep: Vec<String> = self
                    .column_names(df)
                    .into_iter()
                    .filter(|c| !names.contains(c))
                    .collect();
                self.project(df, &keep, method_at).map(Value::DataFrame)
            }
            "head" => {
                let [n] = self.bind_fixed("df.head()", &["n"], 0, args)?;
                let n = match n {
                    None => 5,
                    Some(Arg {
                        value: Value::Int(n),
                        ..
                    }) if n >= 0 => n as usize,
                    Some(other) => {
                        return self.err(
                            other.range,
                            format!(
                                "df.head() takes a non-negative int, got {}",
                                other.value.repr()
                            ),
                        );
                    }
                };
                let plan = self.plans[df].clone();
                let plan =
                    self.build(method_at, LogicalPlanBuilder::from(plan).limit(0, Some(n)))?;
                Ok(Value::DataFrame(self.new_frame(plan)))
            }
            "merge" => self.merge(df, method_at, args).map(Value::DataFrame),
            "append" => self.append(df, method_at, args).map(Value::DataFrame),
            _ => {
                let names = self.column_names(df);
                if names.iter().any(|n| n == method) {
                    return self.err(
                        method_at,
                        format!("column '{method}' is not a method and cannot be called"),
                    );
                }
                self.err(
                    method_at,
                    format!(
                        "DataFrame has no method '{method}'{} (methods: {})",
                        did_you_mean(method, METHODS),
                        METHODS.join(", ")
                    ),
                )
            }
        }
    }

    /// [`Compiler::bind_args`] into a fixed-size array.
    pub(super) fn bind_fixed<const N: usize>(
        &self,
        fname: &str,
        params: &[&str; N],
        required: usize,
        args: CallArgs<'a>,
    ) -> Result<[Option<Arg<'a>>; N]> {
        let bound = self.bind_args(fname, params, required, args)?;
        Ok(bound
            .try_into()
            .unwrap_or_else(|_| unreachable!("bind_args returns one slot per parameter")))
    }

    /// `px.DataFrame(table, start_time=, end_time=, select=)`.
    pub(super) fn source(&mut self, call_at: TextRange, args: CallArgs<'a>) -> Result<Value<'a>> {
        let [table, start, end, select] = self.bind_fixed(
            "px.DataFrame()",
            &["table", "start_time", "end_time", "select"],
            1,
            args,
        )?;
        let table = table.expect("required");
        let Value::Str(name) = &table.value else {
            return self.err(
                table.range,
                format!(
                    "the table name must be a string, got {}",
                    table.value.type_name()
                ),
            );
        };
        let Some(source) = self.catalog.table_source(name) else {
            let names = self.catalog.table_names();
            return self.err(
                table.range,
                format!(
                    "unknown table '{name}'{} (tables: {})",
                    did_you_mean(name, names.iter().map(String::as_str)),
                    names.join(", ")
                ),
            );
        };
        let has_time = source.schema().column_with_name(TIME_COLUMN).is_some();
        let mut builder = LogicalPlanBuilder::scan(name.as_str(), source.clone(), None)
            .map_err(|e| self.plan_error(call_at.start(), e))?;
        let start = self.time_bound(start.as_ref(), "start_time")?;
        let end = self.time_bound(end.as_ref(), "end_time")?;
        if let (Some((s, s_at)), Some((e, _))) = (start, end)
            && s >= e
        {
            return self.err(s_at, "start_time must be before end_time");
        }
        for (bound, op_is_start) in [(start, true), (end, false)] {
            let Some((ns, at)) = bound else { continue };
            if !has_time {
                return self.err(at, format!("table '{name}' has no {TIME_COLUMN} column"));
            }
            // Plain `time_ >= literal` / `time_ < literal`, which table providers push down.
            let bound = lit(ScalarValue::TimestampNanosecond(Some(ns), None));
            let cond = if op_is_start {
                col(TIME_COLUMN).gt_eq(bound)
            } else {
                col(TIME_COLUMN).lt(bound)
            };
            builder = builder
                .filter(cond)
                .map_err(|e| self.plan_error(at.start(), e))?;
        }
        let plan = self.build(call_at, Ok(builder))?;
        let df = self.new_frame(plan);
        match select {
            None => Ok(Value::DataFrame(df)),
            Some(select) => {
                let at = select.range;
                let names = self.column_list(df, select, "px.DataFrame()")?;
                self.project(df, &names, at).map(Value::DataFrame)
            }
        }
    }

    /// A start or end time in nanoseconds: a time string, or integer nanoseconds.
    fn time_bound(&self, arg: Option<&Arg<'a>>, what: &str) -> Result<Option<(i64, TextRange)>> {
        let Some(arg) = arg else { return Ok(None) };
        let ns = match &arg.value {
            Value::None => return Ok(None),
            Value::Str(text) => parse_time(text, self.options.now_ns)
                .or_else(|message| self.err(arg.range, message))?,
            Value::Int(ns) => *ns,
            Value::Float(ns) => ns.round() as i64,
            other => {
                return self.err(
                    arg.range,
                    format!(
                        "{what} must be a time string like '-5m' or nanoseconds, got {}",
                        other.type_name()
                    ),
                );
            }
        };
        Ok(Some((ns, arg.range)))
    }

    /// A column name or a list of them, each checked against the DataFrame.
    fn column_list(&self, df: usize, arg: Arg<'a>, fname: &str) -> Result<Vec<String>> {
        let items = match arg.value {
            Value::Str(s) => vec![Value::Str(s)],
            Value::List(items) | Value::Tuple(items) => items,
            other => {
                return self.err(
                    arg.range,
                    format!(
                        "{fname} takes a column name or a list of column names, got {}",
                        other.type_name()
                    ),
                );
            }
        };
        let mut names = Vec::with_capacity(items.len());
        for item in items {
            let Value::Str(name) = item else {
                return self.err(
                    arg.range,
                    format!("column names must be strings, got {}", item.repr()),
                );
            };
            if !self.has_column(df, &name) {
                return self.err(arg.range, self.unknown_column(df, &name));
            }
            if names.contains(&name) {
                return self.err(arg.range, format!("column '{name}' is listed twice"));
            }
            names.push(name);
        }
        Ok(names)
    }

    fn has_column(&self, df: usize, name: &str) -> bool {
        self.schema(df).fields().iter().any(|f| f.name() == name)
    }

    /// `df[['a', 'b']]`.
    pub(super) fn select(
        &mut self,
        df: usize,
        names: Vec<Value<'a>>,
        at: TextRange,
    ) -> Result<Value<'a>> {
        let names = self.column_list(
            df,
            Arg {
                value: Value::List(names),
                range: at,
            },
            "df[[...]]",
        )?;
        self.project(df, &names, at).map(Value::DataFrame)
    }

    /// A new DataFrame with only `names`, in that order.
    fn project(&mut self, df: usize, names: &[String], at: TextRange) -> Result<usize> {
        if names.is_empty() {
            return self.err(at, "a DataFrame needs at least one column");
        }
        let exprs: Vec<Expr> = names.iter().map(|n| ident(n.as_str())).collect();
        let plan = self.plans[df].clone();
        let plan = self.build(at, LogicalPlanBuilder::from(plan).project(exprs))?;
        Ok(self.new_frame(plan))
    }

    /// `df[cond]`.
    pub(super) fn filter(&mut self, df: usize, cond: Col, at: TextRange) -> Result<Value<'a>> {
        if Kind::of(&cond.ty) != Kind::Bool {
            return self.err(
                at,
                format!(
                    "df[...] filters with a boolean condition, got {}",
                    cond.describe()
                ),
            );
        }
        self.check_columns(df, &cond, at)?;
        let plan = self.plans[df].clone();
        let plan = self.build(at, LogicalPlanBuilder::from(plan).filter(cond.expr))?;
        Ok(Value::DataFrame(self.new_frame(plan)))
    }

    /// `df.x = value` and `df['x'] = value`: replaces the column in place or appends it.
    pub(super) fn assign_column(
        &mut self,
        df: usize,
        name: &str,
        value: Value<'a>,
        name_at: TextRange,
        value_at: TextRange,
    ) -> Result<()> {
        if name == "ctx" || METHODS.contains(&name) {
            return self.err(
                name_at,
                format!("'{name}' is a DataFrame attribute; use df['{name}'] = ... elsewhere or another name"),
            );
        }
        let new = match value {
            Value::Column(c) => {
                self.check_columns(df, &c, value_at)?;
                c.expr
            }
            v @ (Value::Int(_) | Value::Float(_) | Value::Str(_) | Value::Bool(_)) => {
                self.operand(v, value_at)?.expr
            }
            other => {
                return self.err(
                    value_at,
                    format!(
                        "a column can be set to a column expression or a constant, not a {}",
                        other.type_name()
                    ),
                );
            }
        };
        let schema = self.schema(df).clone();
        let mut replaced = false;
        let mut exprs: Vec<Expr> = Vec::with_capacity(schema.fields().len() + 1);
        for (qualifier, field) in schema.iter() {
            if field.name() == name {
                exprs.push(new.clone().alias(name));
                replaced = true;
            } else {
                exprs.push(Expr::Column(Column::new(qualifier.cloned(), field.name())));
            }
        }
        if !replaced {
            exprs.push(new.alias(name));
        }
        let plan = self.plans[df].clone();
        self.plans[df] = self.build(value_at, LogicalPlanBuilder::from(plan).project(exprs))?;
        Ok(())
    }

    /// Every column an expression reads must exist in the DataFrame it is applied to.
    fn check_columns(&self, df: usize, c: &Col, at: TextRange) -> Result<()> {
        for column in c.expr.column_refs() {
            if self.has_column(df, &column.name) {
                continue;
            }
            let columns = self.column_names(df).join(", ");
            let message = if c.desc == format!("column '{}'", column.name) {
                format!(
                    "column '{}' belongs to another DataFrame; this one has columns: {columns}",
                    column.name
                )
            } else {
                format!(
                    "{} reads column '{}', which this DataFrame does not have (columns: {columns})",
                    c.desc, column.name
                )
            };
            return self.err(at, message);
        }
        Ok(())
    }

    /// `df.ctx['service']`: a metadata look-up on the `upid` column.
    pub(super) fn ctx(&self, df: usize, key: &str, at: TextRange) -> Result<Col> {
        let Some((_, field)) = CTX_KEYS.iter().find(|(k, _)| *k == key) else {
            return self.err(
                at,
                format!(
                    "unknown df.ctx key '{key}'{} (keys: pod, service, namespace, node, container, \
                     pid, cmdline, hostname)",
                    did_you_mean(key, CTX_KEYS.iter().map(|(k, _)| *k))
                ),
            );
        };
        if !self.has_column(df, "upid") {
            return self.err(
                at,
                format!(
                    "df.ctx['{key}'] reads the 'upid' column, which this DataFrame does not have \
                     (columns: {})",
                    self.column_names(df).join(", ")
                ),
            );
        }
        let upid = ident("upid");
        let (expr, ty) = match field {
            Some(field) => (
                self.functions.metadata[field].call(vec![upid]),
                DataType::Utf8,
            ),
            None => (self.functions.pid.call(vec![upid]), DataType::Int64),
        };
        Ok(Col {
            expr,
            ty,
            desc: format!("df.ctx['{key}']"),
            df: Some(df),
        })
    }

    /// `df.groupby(keys).agg(out=('col', px.fn), ...)` and `df.agg(...)` (one group).
    pub(super) fn agg(&mut self, df: usize, keys: &[String], args: CallArgs<'a>) -> Result<usize> {
        if let Some(first) = args.positional.first() {
            return self.err(
                first.range,
                "agg() takes keyword arguments only: agg(name=('column', px.fn), ...)",
            );
        }
        let mut outputs: Vec<Expr> = Vec::new();
        let mut seen: HashSet<String> = keys.iter().cloned().collect();
        for (name, name_at, arg) in args.keywords {
            if !seen.insert(name.clone()) {
                return self.err(
                    name_at,
                    format!("agg() output '{name}' repeats a group or output column"),
                );
            }
            let (input, func) = match &arg.value {
                Value::Tuple(items) | Value::List(items) if items.len() == 2 => {
                    (items[0].clone(), items[1].clone())
                }
                other => {
                    return self.err(
                        arg.range,
                        format!(
                            "agg() takes name=('column', px.fn) pairs, got {}",
                            other.type_name()
                        ),
                    );
                }
            };
            let Value::Str(input) = input else {
                return self.err(
                    arg.range,
                    format!("the input of agg() output '{name}' must be a column name string"),
                );
            };
            let Value::PxFn(func) = func else {
                return self.err(
                    arg.range,
                    format!(
                        "the function of agg() output '{name}' must be one of px.{}, got {}",
                        AGGREGATES.join(", px."),
                        func.type_name()
                    ),
                );
            };
            let column = self.column(df, &input, arg.range)?;
            outputs.push(self.aggregate(func, &column, arg.range)?.alias(name));
        }
        if outputs.is_empty() && keys.is_empty() {
            return self.err(args.range, "agg() needs at least one output or a groupby");
        }
        let plan = self.plans[df].clone();
        let group: Vec<Expr> = keys.iter().map(|k| ident(k.as_str())).collect();
        let plan = self.build(
            args.range,
            LogicalPlanBuilder::from(plan).aggregate(group, outputs),
        )?;
        Ok(self.new_frame(plan))
    }

    fn aggregate(&self, func: &str, column: &Col, at: TextRange) -> Result<Expr> {
        let kind = Kind::of(&column.ty);
        let need = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                self.err(
                    at,
                    format!("px.{func} needs {what}, got {}", column.describe()),
                )
            }
        };
        let expr = column.expr.clone();
        Ok(match func {
            "count" => count(expr),
            // Booleans count as 0/1, so px.mean of a condition is a rate.
            "sum" | "mean" => {
                need(
                    kind.is_numeric() || kind == Kind::Bool,
                    "a numeric or boolean column",
                )?;
                let expr = if kind == Kind::Bool {
                    cast(expr, DataType::Int64)
                } else {
                    expr
                };
                if func == "sum" { sum(expr) } else { avg(expr) }
            }
            "min" | "max" | "any" => {
                need(
                    matches!(
                        kind,
                        Kind::Int | Kind::Float | Kind::Str | Kind::Time | Kind::Bool
                    ),
                    "a number, string, time or boolean column",
                )?;
                if func == "max" { max(expr) } else { min(expr) }
            }
            "quantiles" => {
                need(kind.is_numeric(), "a numeric column")?;
                self.functions.quantiles.call(vec![expr])
            }
            other => {
                return self.err(
                    at,
                    format!(
                        "px.{other} is not an aggregate; use one of px.{}",
                        AGGREGATES.join(", px.")
                    ),
                );
            }
        })
    }

    /// `df.merge(right, how=, left_on=, right_on=, suffixes=)`: every column of both sides, with
    /// names present on both sides suffixed (as Pixie does, keys included).
    fn merge(&mut self, df: usize, at: TextRange, args: CallArgs<'a>) -> Result<usize> {
        let [right, how, left_on, right_on, suffixes, on] = self.bind_fixed(
            "df.merge()",
            &["right", "how", "left_on", "right_on", "suffixes", "on"],
            1,
            args,
        )?;
        let right = right.expect("required");
        let Value::DataFrame(rdf) = right.value else {
            return self.err(
                right.range,
                format!(
                    "df.merge() joins with a DataFrame, got {}",
                    right.value.type_name()
                ),
            );
        };
        let join_type = match how.as_ref().map(|a| (&a.value, a.range)) {
            None => JoinType::Inner,
            Some((Value::Str(h), at)) => match h.as_str() {
                "inner" => JoinType::Inner,
                "left" => JoinType::Left,
                "right" => JoinType::Right,
                "outer" => JoinType::Full,
                other => {
                    return self.err(
                        at,
                        format!("how='{other}' is not a join type: use 'inner', 'left', 'right' or 'outer'"),
                    );
                }
            },
            Some((other, at)) => {
                return self.err(
                    at,
                    format!("how must be a string, got {}", other.type_name()),
                );
            }
        };
        let (left_keys, right_keys) = match (on, left_on, right_on) {
            (Some(on), None, None) => {
                let l = self.column_list(df, on.clone(), "df.merge()")?;
                let r = self.column_list(rdf, on, "df.merge()")?;
                (l, r)
            }
            (None, Some(l), Some(r)) => {
                let r_at = r.range;
                let l = self.column_list(df, l, "df.merge()")?;
                let r = self.column_list(rdf, r, "df.merge()")?;
                if l.len() != r.len() {
                    return self.err(
                        r_at,
                        format!(
                            "left_on has {} columns but right_on has {}",
                            l.len(),
                            r.len()
                        ),
                    );
                }
                (l, r)
            }
            _ => {
                return self.err(
                    at,
                    "df.merge() needs the join columns: left_on= and right_on= (or on=)",
                );
            }
        };
        let (left_suffix, right_suffix) = match suffixes {
            None => ("_x".to_string(), "_y".to_string()),
            Some(Arg {
                value: Value::Tuple(s) | Value::List(s),
                range,
            }) => match s.as_slice() {
                [Value::Str(l), Value::Str(r)] => (l.clone(), r.clone()),
                _ => return self.err(range, "suffixes must be two strings, e.g. ('_x', '_y')"),
            },
            Some(other) => {
                return self.err(
                    other.range,
                    "suffixes must be two strings, e.g. ('_x', '_y')",
                );
            }
        };
        let left_schema = self.schema(df).clone();
        let right_schema = self.schema(rdf).clone();
        for (l, r) in left_keys.iter().zip(&right_keys) {
            let lt = left_schema
                .field_with_unqualified_name(l)
                .expect("checked")
                .data_type();
            let rt = right_schema
                .field_with_unqualified_name(r)
                .expect("checked")
                .data_type();
            let compatible = Kind::of(lt) == Kind::of(rt)
                || (Kind::of(lt).is_numeric() && Kind::of(rt).is_numeric());
            if !compatible {
                return self.err(
                    at,
                    format!(
                        "cannot join column '{l}' ({}) with column '{r}' ({})",
                        type_name(lt),
                        type_name(rt)
                    ),
                );
            }
        }
        // Each side behind its own alias, so columns both sides share stay distinct until renamed.
        const LEFT: &str = "__pxl_left";
        const RIGHT: &str = "__pxl_right";
        let left_plan = LogicalPlanBuilder::from(self.plans[df].clone()).alias(LEFT);
        let right_plan = LogicalPlanBuilder::from(self.plans[rdf].clone())
            .alias(RIGHT)
            .and_then(LogicalPlanBuilder::build);
        let keys = |side: &str, names: &[String]| -> Vec<Column> {
            names.iter().map(|n| Column::new(Some(side), n)).collect()
        };
        let joined = left_plan.and_then(|l| {
            l.join(
                right_plan?,
                join_type,
                (keys(LEFT, &left_keys), keys(RIGHT, &right_keys)),
                None,
            )
        });
        let right_names: HashSet<String> = self.column_names(rdf).into_iter().collect();
        let left_names: HashSet<String> = self.column_names(df).into_iter().collect();
        let mut out_names: HashSet<String> = HashSet::new();
        let mut exprs = Vec::new();
        let sides = [
            (LEFT, left_schema, &right_names, &left_suffix),
            (RIGHT, right_schema, &left_names, &right_suffix),
        ];
        for (side, schema, other_names, suffix) in sides {
            for field in schema.fields() {
                let name = field.name();
                let out = if other_names.contains(name) {
                    format!("{name}{suffix}")
                } else {
                    name.clone()
                };
                if !out_names.insert(out.clone()) {
                    return self.err(
                        at,
                        format!(
                            "df.merge() would make two columns named '{out}'; pass suffixes that \
                             tell the sides apart"
                        ),
                    );
                }
                exprs.push(Expr::Column(Column::new(Some(side), name)).alias(out));
            }
        }
        let plan = self.build(at, joined.and_then(|j| j.project(exprs)))?;
        Ok(self.new_frame(plan))
    }

    /// `df.append(other)` or `df.append([a, b])`: a union of DataFrames with the same columns (in
    /// any order) and types; the result has this DataFrame's column order.
    fn append(&mut self, df: usize, at: TextRange, args: CallArgs<'a>) -> Result<usize> {
        let [objs] = self.bind_fixed("df.append()", &["objs"], 1, args)?;
        let objs = objs.expect("required");
        let others = match objs.value {
            Value::DataFrame(o) => vec![o],
            Value::List(items) | Value::Tuple(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::DataFrame(o) => Ok(o),
                    other => self.err(
                        objs.range,
                        format!("df.append() takes DataFrames, got {}", other.type_name()),
                    ),
                })
                .collect::<Result<_>>()?,
            other => {
                return self.err(
                    objs.range,
                    format!("df.append() takes a DataFrame, got {}", other.type_name()),
                );
            }
        };
        let names = self.column_names(df);
        let mut builder = LogicalPlanBuilder::from(self.plans[df].clone());
        for other in others {
            let mut theirs = self.column_names(other);
            theirs.sort();
            let mut ours = names.clone();
            ours.sort();
            if theirs != ours {
                return self.err(
                    objs.range,
                    format!(
                        "df.append() needs the same columns on both sides: [{}] vs [{}]",
                        names.join(", "),
                        self.column_names(other).join(", ")
                    ),
                );
            }
            for name in &names {
                let ours = self
                    .schema(df)
                    .field_with_unqualified_name(name)
                    .expect("listed");
                let theirs = self
                    .schema(other)
                    .field_with_unqualified_name(name)
                    .expect("listed");
                if ours.data_type() != theirs.data_type() {
                    return self.err(
                        objs.range,
                        format!(
                            "df.append(): column '{name}' is {} on one side and {} on the other",
                            type_name(ours.data_type()),
                            type_name(theirs.data_type())
                        ),
                    );
                }
            }
            let exprs: Vec<Expr> = names.iter().map(|n| ident(n.as_str())).collect();
            let reordered = self.build(
                objs.range,
                LogicalPlanBuilder::from(self.plans[other].clone()).project(exprs),
            )?;
            builder = builder
                .union(reordered)
                .map_err(|e| self.plan_error(at.start(), e))?;
        }
        let plan = self.build(at, Ok(builder))?;
        Ok(self.new_frame(plan))
    }

    /// Finishes a builder step, reporting planner errors at `at`.
    pub(super) fn build(
        &self,
        at: TextRange,
        builder: datafusion::error::Result<LogicalPlanBuilder>,
    ) -> Result<LogicalPlan> {
        builder
            .and_then(LogicalPlanBuilder::build)
            .map_err(|e| self.plan_error(at.start(), e))
    }
}
