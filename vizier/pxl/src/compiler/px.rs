//! The `px` module: sources and outputs, time helpers, semantic wrappers and column functions.

use arrow::datatypes::DataType;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::functions::expr_fn::{
    abs, btrim, ceil, character_length, contains, floor, lower, regexp_like, regexp_replace,
    substring, upper,
};
use datafusion::logical_expr::{Expr, Operator as DfOp, binary_expr, cast, lit, when};
use ruff_text_size::TextRange;

use super::args::{Arg, CallArgs};
use super::frame::AGGREGATES;
use super::ops::Operand;
use super::otel::TOP_MODULES;
use super::value::{Col, Kind, time_type};
use super::{Compiler, Result, Value};
use crate::MetadataField;
use crate::quantiles::QUANTILES;
use crate::suggest::did_you_mean;
use crate::time::parse_duration;
use crate::udf::PluckKind;

/// Semantic types and wrappers: values pass through unchanged.
const WRAPPERS: [&str; 9] = [
    "DurationNanos",
    "Bytes",
    "Percent",
    "Service",
    "Pod",
    "Namespace",
    "Node",
    "Container",
    "UPID",
];

const METADATA_FUNCTIONS: [(&str, MetadataField); 7] = [
    ("upid_to_pod_name", MetadataField::Pod),
    ("upid_to_service_name", MetadataField::Service),
    ("upid_to_namespace", MetadataField::Namespace),
    ("upid_to_node_name", MetadataField::Node),
    ("upid_to_container_name", MetadataField::Container),
    ("upid_to_cmdline", MetadataField::Cmdline),
    ("upid_to_hostname", MetadataField::Hostname),
];

/// Every other `px.*` function this compiler implements.
const FUNCTIONS: [&str; 23] = [
    "DataFrame",
    "display",
    "debug",
    "export",
    "now",
    "parse_duration",
    "bin",
    "contains",
    "regex_match",
    "length",
    "substring",
    "toupper",
    "tolower",
    "trim",
    "replace",
    "pluck",
    "pluck_float64",
    "pluck_int64",
    "upid_to_pid",
    "select",
    "floor",
    "ceil",
    "abs",
];

/// Pixie functions we know of but do not implement: a clear error instead of "unknown".
const NOT_SUPPORTED: [&str; 11] = [
    "vis",
    "ip_to_pod_id",
    "pod_id_to_pod_name",
    "pod_id_to_service_name",
    "pod_id_to_namespace",
    "pod_id_to_node_name",
    "pod_id_to_deployment_name",
    "vizier_name",
    "vizier_id",
    "script_reference",
    "upid_to_deployment_name",
];

/// Every `px` name this compiler implements.
fn all_names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS
        .iter()
        .chain(WRAPPERS.iter())
        .chain(AGGREGATES.iter())
        .chain(METADATA_FUNCTIONS.iter().map(|(n, _)| n))
        .copied()
}

/// The `&'static` spelling of a known `px` name.
fn known(name: &str) -> Option<&'static str> {
    all_names().find(|n| *n == name)
}

impl<'a> Compiler<'a> {
    /// `px.name` not directly called, e.g. `px.count` in `agg(...)`.
    pub(super) fn px_attribute(&self, name: &str, at: TextRange) -> Result<Value<'a>> {
        if let Some(module) = TOP_MODULES.iter().find(|m| **m == name) {
            return Ok(Value::PxModule(module));
        }
        match known(name) {
            Some(name) => Ok(Value::PxFn(name)),
            None => self.err(at, self.unknown_px(name)),
        }
    }

    fn unknown_px(&self, name: &str) -> String {
        if NOT_SUPPORTED.contains(&name) {
            format!("px.{name} is not supported by this PxL compiler")
        } else {
            let hint = match crate::suggest::closest(name, all_names().chain(TOP_MODULES)) {
                Some(c) => format!("; did you mean px.{c}?"),
                None => String::new(),
            };
            format!("unknown function px.{name}{hint}")
        }
    }

    pub(super) fn call_px(
        &mut self,
        name: &str,
        name_at: TextRange,
        args: CallArgs<'a>,
    ) -> Result<Value<'a>> {
        let call_at = args.range;
        let fname = format!("px.{name}()");
        match name {
            "DataFrame" => self.source(call_at, args),
            "export" => self.call_otel(name, args),
            otel if otel.starts_with("otel.") => self.call_otel(otel, args),
            "display" | "debug" => {
                let [df, out] = self.bind_fixed(&fname, &["df", "name"], 1, args)?;
                let df = df.expect("required");
                let Value::DataFrame(id) = df.value else {
                    return self.err(
                        df.range,
                        format!("{fname} shows a DataFrame, got {}", df.value.type_name()),
                    );
                };
                let out = match out {
                    None => "output".to_string(),
                    Some(Arg {
                        value: Value::Str(s),
                        ..
                    }) if !s.is_empty() => s,
                    Some(other) => {
                        return self.err(
                            other.range,
                            format!(
                                "the output name must be a non-empty string, got {}",
                                other.value.repr()
                            ),
                        );
                    }
                };
                self.display(id, out, call_at.start())?;
                Ok(Value::None)
            }
            "now" => {
                self.bind_fixed(&fname, &[], 0, args)?;
                Ok(Value::Int(self.options.now_ns))
            }
            "parse_duration" => {
                let [text] = self.bind_fixed(&fname, &["duration"], 1, args)?;
                let text = text.expect("required");
                match &text.value {
                    Value::Str(s) => match parse_duration(s) {
                        Some(ns) => Ok(Value::Int(ns)),
                        None => self.err(
                            text.range,
                            format!(
                                "invalid duration '{s}': want e.g. '5m', '30s', '1h30m', '250ms'"
                            ),
                        ),
                    },
                    other => self.err(
                        text.range,
                        format!("{fname} takes a string, got {}", other.type_name()),
                    ),
                }
            }
            wrapper if WRAPPERS.contains(&wrapper) => {
                let [value] = self.bind_fixed(&fname, &["value"], 1, args)?;
                Ok(value.expect("required").value)
            }
            aggregate if AGGREGATES.contains(&aggregate) => self.err(
                name_at,
                format!(
                    "px.{aggregate} is an aggregate: use it inside agg(), e.g. \
                     df.groupby('col').agg(out=('col', px.{aggregate}))"
                ),
            ),
            "bin" => {
                let [column, size] = self.bind_fixed(&fname, &["column", "size"], 2, args)?;
                let (column, size) = (column.expect("required"), size.expect("required"));
                self.bin(&fname, column, size, call_at)
            }
            "contains" => {
                let [s, sub] = self.bind_fixed(&fname, &["string", "substring"], 2, args)?;
                let s = self.typed(&fname, s, &[Kind::Str], "a string")?;
                let sub = self.typed(&fname, sub, &[Kind::Str], "a string")?;
                let expr = contains(s.expr.clone(), sub.expr.clone());
                Ok(self.result(expr, DataType::Boolean, call_at, &[&s, &sub]))
            }
            "regex_match" => {
                let [pattern, s] = self.bind_fixed(&fname, &["pattern", "string"], 2, args)?;
                let pattern = self.regex(&fname, pattern.expect("required"))?;
                let s = self.typed(&fname, s, &[Kind::Str], "a string")?;
                // Pixie's regex_match is a full match (RE2::FullMatch).
                let anchored = lit(format!("^(?:{pattern})$"));
                let expr = regexp_like(s.expr.clone(), anchored, None);
                Ok(self.result(expr, DataType::Boolean, call_at, &[&s]))
            }
            "length" => {
                let [s] = self.bind_fixed(&fname, &["string"], 1, args)?;
                let s = self.typed(&fname, s, &[Kind::Str], "a string")?;
                let expr = cast(character_length(s.expr.clone()), DataType::Int64);
                Ok(self.result(expr, DataType::Int64, call_at, &[&s]))
            }
            "substring" => {
                let [s, pos, len] =
                    self.bind_fixed(&fname, &["string", "pos", "length"], 3, args)?;
                let s = self.typed(&fname, s, &[Kind::Str], "a string")?;
                let pos = self.typed(&fname, pos, &[Kind::Int], "an int")?;
                let len = self.typed(&fname, len, &[Kind::Int], "an int")?;
                // PxL positions are 0-based, SQL's 1-based.
                let start = binary_expr(pos.expr.clone(), DfOp::Plus, lit(1i64));
                let expr = substring(s.expr.clone(), start, len.expr.clone());
                Ok(self.result(expr, DataType::Utf8, call_at, &[&s, &pos, &len]))
            }
            "toupper" | "tolower" | "trim" => {
                let [s] = self.bind_fixed(&fname, &["string"], 1, args)?;
                let s = self.typed(&fname, s, &[Kind::Str], "a string")?;
                let expr = match name {
                    "toupper" => upper(s.expr.clone()),
                    "tolower" => lower(s.expr.clone()),
                    _ => btrim(vec![s.expr.clone()]),
                };
                Ok(self.result(expr, DataType::Utf8, call_at, &[&s]))
            }
            "replace" => {
                let [pattern, s, replacement] =
                    self.bind_fixed(&fname, &["pattern", "string", "replacement"], 3, args)?;
                let pattern = self.regex(&fname, pattern.expect("required"))?;
                let s = self.typed(&fname, s, &[Kind::Str], "a string")?;
                let r = self.typed(&fname, replacement, &[Kind::Str], "a string")?;
                let expr =
                    regexp_replace(s.expr.clone(), lit(pattern), r.expr.clone(), Some(lit("g")));
                Ok(self.result(expr, DataType::Utf8, call_at, &[&s, &r]))
            }
            "pluck" | "pluck_float64" | "pluck_int64" => {
                let [json, key] = self.bind_fixed(&fname, &["json", "key"], 2, args)?;
                self.pluck(
                    name,
                    &fname,
                    json.expect("required"),
                    key.expect("required"),
                    call_at,
                )
            }
            "upid_to_pid" => {
                let [upid] = self.bind_fixed(&fname, &["upid"], 1, args)?;
                let upid = self.typed(&fname, upid, &[Kind::Str], "a upid string")?;
                let expr = self.functions.pid.call(vec![upid.expr.clone()]);
                Ok(self.result(expr, DataType::Int64, call_at, &[&upid]))
            }
            "select" => {
                let [cond, then, otherwise] =
                    self.bind_fixed(&fname, &["condition", "then", "otherwise"], 3, args)?;
                let cond = self.typed(&fname, cond, &[Kind::Bool], "a boolean condition")?;
                let then_arg = then.expect("required");
                let then_at = then_arg.range;
                let then = self.operand(then_arg.value, then_at)?;
                let other_arg = otherwise.expect("required");
                let otherwise = self.operand(other_arg.value, other_arg.range)?;
                let (tk, ok) = (Kind::of(&then.ty), Kind::of(&otherwise.ty));
                let ty = if tk == ok {
                    then.ty.clone()
                } else if tk.is_numeric() && ok.is_numeric() {
                    DataType::Float64
                } else {
                    return self.err(
                        then_at,
                        format!(
                            "{fname} needs both branches of one type, got {} and {}",
                            then.describe(),
                            otherwise.describe()
                        ),
                    );
                };
                let expr = when(cond.expr.clone(), cast_to(&then, &ty))
                    .otherwise(cast_to(&otherwise, &ty))
                    .map_err(|e| self.plan_error(call_at.start(), e))?;
                Ok(self.result(expr, ty, call_at, &[&cond, &then, &otherwise]))
            }
            "floor" | "ceil" => {
                let [x] = self.bind_fixed(&fname, &["value"], 1, args)?;
                let x = self.typed(&fname, x, &[Kind::Int, Kind::Float], "a number")?;
                if Kind::of(&x.ty) == Kind::Int {
                    return Ok(self.result(x.expr.clone(), DataType::Int64, call_at, &[&x]));
                }
                let rounded = if name == "floor" {
                    floor(x.expr.clone())
                } else {
                    ceil(x.expr.clone())
                };
                let expr = cast(rounded, DataType::Int64);
                Ok(self.result(expr, DataType::Int64, call_at, &[&x]))
            }
            "abs" => {
                let [x] = self.bind_fixed(&fname, &["value"], 1, args)?;
                let x = self.typed(&fname, x, &[Kind::Int, Kind::Float], "a number")?;
                let ty = x.ty.clone();
                Ok(self.result(abs(x.expr.clone()), ty, call_at, &[&x]))
            }
            other => {
                if let Some((_, field)) = METADATA_FUNCTIONS.iter().find(|(n, _)| *n == other) {
                    let [upid] = self.bind_fixed(&fname, &["upid"], 1, args)?;
                    let upid = self.typed(&fname, upid, &[Kind::Str], "a upid string")?;
                    let expr = self.functions.metadata[field].call(vec![upid.expr.clone()]);
                    return Ok(self.result(expr, DataType::Utf8, call_at, &[&upid]));
                }
                self.err(name_at, self.unknown_px(other))
            }
        }
    }

    /// A required argument as an operand of one of the `kinds`.
    fn typed(
        &self,
        fname: &str,
        arg: Option<Arg<'a>>,
        kinds: &[Kind],
        want: &str,
    ) -> Result<Operand> {
        let arg = arg.expect("bind_fixed checked required arguments");
        let operand = self.operand(arg.value, arg.range)?;
        if !kinds.contains(&Kind::of(&operand.ty)) {
            return self.err(
                arg.range,
                format!("{fname} needs {want}, got {}", operand.describe()),
            );
        }
        Ok(operand)
    }

    /// A constant regular expression, checked now rather than failing at run time.
    fn regex(&self, fname: &str, arg: Arg<'a>) -> Result<String> {
        let Value::Str(pattern) = arg.value else {
            return self.err(
                arg.range,
                format!(
                    "{fname} needs a constant string pattern, got {}",
                    arg.value.type_name()
                ),
            );
        };
        // Arrow's matcher uses the same regex crate as DataFusion's and keeps the reason.
        let empty = arrow::array::StringArray::from(Vec::<&str>::new());
        if let Err(e) =
            arrow::compute::kernels::regexp::regexp_is_match_scalar(&empty, &pattern, None)
        {
            let text = e.to_string();
            let reason = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .unwrap_or("it does not compile");
            return self.err(
                arg.range,
                format!("invalid regular expression '{pattern}': {reason}"),
            );
        }
        Ok(pattern)
    }

    fn result(&self, expr: Expr, ty: DataType, at: TextRange, operands: &[&Operand]) -> Value<'a> {
        Value::Column(Col {
            expr,
            ty,
            desc: format!("'{}'", self.short_text(at)),
            df: operands.iter().find_map(|o| o.df),
        })
    }

    /// `px.bin(column, size)`: rounds down to a multiple of `size` (a time stays a time).
    fn bin(&self, fname: &str, column: Arg<'a>, size: Arg<'a>, at: TextRange) -> Result<Value<'a>> {
        let size_ns = match size.value {
            Value::Int(n) if n > 0 => n,
            Value::Float(f) if f > 0.0 && f.fract() == 0.0 && f < i64::MAX as f64 => f as i64,
            other => {
                return self.err(
                    size.range,
                    format!(
                        "{fname} needs a positive whole bin size, got {}",
                        other.repr()
                    ),
                );
            }
        };
        let x = self.typed(
            fname,
            Some(column),
            &[Kind::Int, Kind::Time, Kind::Float],
            "a number or time",
        )?;
        let kind = Kind::of(&x.ty);
        let (expr, ty) = match kind {
            Kind::Float => {
                let size = lit(size_ns as f64);
                let e = binary_expr(
                    floor(binary_expr(x.expr.clone(), DfOp::Divide, size.clone())),
                    DfOp::Multiply,
                    size,
                );
                (e, DataType::Float64)
            }
            _ => {
                let v = cast_to(&x, &DataType::Int64);
                let s = lit(size_ns);
                // v - ((v % s) + s) % s rounds towards negative infinity for negative values too.
                let rem = binary_expr(
                    binary_expr(
                        binary_expr(v.clone(), DfOp::Modulo, s.clone()),
                        DfOp::Plus,
                        s.clone(),
                    ),
                    DfOp::Modulo,
                    s,
                );
                let binned = binary_expr(v, DfOp::Minus, rem);
                if kind == Kind::Time {
                    (cast(binned, time_type()), time_type())
                } else {
                    (binned, DataType::Int64)
                }
            }
        };
        Ok(self.result(expr, ty, at, &[&x]))
    }

    /// `px.pluck*(json, key)`; `px.pluck_float64` also reads a field of `px.quantiles`.
    fn pluck(
        &self,
        name: &str,
        fname: &str,
        json: Arg<'a>,
        key: Arg<'a>,
        at: TextRange,
    ) -> Result<Value<'a>> {
        let source = self.operand(json.value, json.range)?;
        if Kind::of(&source.ty) == Kind::Struct {
            let Value::Str(field) = &key.value else {
                return self.err(
                    key.range,
                    format!("{fname} needs a constant key such as 'p99'"),
                );
            };
            let fields: Vec<&str> = QUANTILES.iter().map(|(n, _)| *n).collect();
            if !fields.contains(&field.as_str()) {
                return self.err(
                    key.range,
                    format!(
                        "quantiles have no field '{field}'{} (fields: {})",
                        did_you_mean(field, fields.iter().copied()),
                        fields.join(", ")
                    ),
                );
            }
            let expr = get_field(source.expr.clone(), field.as_str());
            let (expr, ty) = match name {
                "pluck_int64" => (cast(expr, DataType::Int64), DataType::Int64),
                "pluck" => (cast(expr, DataType::Utf8), DataType::Utf8),
                _ => (expr, DataType::Float64),
            };
            return Ok(self.result(expr, ty, at, &[&source]));
        }
        if Kind::of(&source.ty) != Kind::Str {
            return self.err(
                json.range,
                format!(
                    "{fname} needs a JSON string or px.quantiles, got {}",
                    source.describe()
                ),
            );
        }
        let key = self.operand(key.value, key.range).and_then(|k| {
            if Kind::of(&k.ty) == Kind::Str {
                Ok(k)
            } else {
                self.err(
                    key.range,
                    format!("{fname} needs a string key, got {}", k.describe()),
                )
            }
        })?;
        let kind = match name {
            "pluck" => PluckKind::Text,
            "pluck_float64" => PluckKind::Float64,
            _ => PluckKind::Int64,
        };
        let ty = match kind {
            PluckKind::Text => DataType::Utf8,
            PluckKind::Float64 => DataType::Float64,
            PluckKind::Int64 => DataType::Int64,
        };
        let expr = self.functions.pluck[&kind].call(vec![source.expr.clone(), key.expr.clone()]);
        Ok(self.result(expr, ty, at, &[&source, &key]))
    }
}

fn cast_to(o: &Operand, ty: &DataType) -> Expr {
    if o.ty == *ty {
        o.expr.clone()
    } else {
        cast(o.expr.clone(), ty.clone())
    }
}
