//! What a PxL expression evaluates to at compile time.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::logical_expr::Expr;
use ruff_python_ast::StmtFunctionDef;
use ruff_text_size::TextRange;

use super::otel::OtelValue;

/// A value of the abstract interpreter. Constants are Python values; DataFrames and group-bys are
/// indices into the compiler's plan arena (so `df.x = ...` through any alias changes the same frame,
/// as in Python); columns are typed DataFusion expressions.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value<'a>>),
    Tuple(Vec<Value<'a>>),
    /// `{key: value, ...}`, in the order written (only `px.otel` arguments take dicts).
    Dict(Vec<DictEntry<'a>>),
    /// The `px` module.
    Px,
    /// A `px` submodule: `otel`, `otel.metric`, `otel.trace` or `plugin`.
    PxModule(&'static str),
    /// What a `px.otel.*` constructor returned, waiting to be passed to `px.otel.Data`/`px.export`.
    Otel(Box<OtelValue>),
    /// A `px.*` function or type used as a value, e.g. `px.count` inside `agg(...)`.
    PxFn(&'static str),
    DataFrame(usize),
    Column(Col),
    GroupBy {
        df: usize,
        keys: Vec<String>,
    },
    /// `df.ctx`, waiting for its `['key']`.
    Ctx(usize),
    Function(&'a StmtFunctionDef),
}

impl Value<'_> {
    /// The type as a user reads it in an error message.
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "string".into(),
            Value::List(_) => "list".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::Dict(_) => "dict".into(),
            Value::Px => "module 'px'".into(),
            Value::PxModule(name) => format!("module 'px.{name}'"),
            Value::Otel(o) => o.type_name().into(),
            Value::PxFn(name) => format!("px.{name}"),
            Value::DataFrame(_) => "DataFrame".into(),
            Value::Column(c) => format!("column expression ({})", type_name(&c.ty)),
            Value::GroupBy { .. } => "grouped DataFrame".into(),
            Value::Ctx(_) => "df.ctx".into(),
            Value::Function(f) => format!("function {}()", f.name.id),
        }
    }

    /// Python's `repr` for constants; the type name for everything else.
    pub fn repr(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => float_repr(*f),
            Value::Str(s) => format!("'{s}'"),
            Value::List(items) => format!(
                "[{}]",
                items.iter().map(Value::repr).collect::<Vec<_>>().join(", ")
            ),
            Value::Tuple(items) => format!(
                "({})",
                items.iter().map(Value::repr).collect::<Vec<_>>().join(", ")
            ),
            Value::Dict(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|e| format!("{}: {}", e.key.repr(), e.value.repr()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            other => other.type_name(),
        }
    }

    /// The value as a script parameter default is shown: strings without quotes.
    pub fn plain_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            other => other.repr(),
        }
    }

    pub fn is_constant(&self) -> bool {
        match self {
            Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_) => true,
            Value::List(items) | Value::Tuple(items) => items.iter().all(Value::is_constant),
            _ => false,
        }
    }

    /// Python truthiness of a constant; `None` for values that have none at compile time.
    pub fn truthy(&self) -> Option<bool> {
        Some(match self {
            Value::None => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(items) | Value::Tuple(items) => !items.is_empty(),
            Value::Dict(entries) => !entries.is_empty(),
            _ => return None,
        })
    }
}

/// One `key: value` of a dict literal, with where each side was written.
#[derive(Debug, Clone)]
pub struct DictEntry<'a> {
    pub key: Value<'a>,
    pub key_at: TextRange,
    pub value: Value<'a>,
    pub value_at: TextRange,
}

fn float_repr(f: f64) -> String {
    if f.is_finite() && f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// A column expression and what the compiler knows about it.
#[derive(Debug, Clone)]
pub struct Col {
    pub expr: Expr,
    pub ty: DataType,
    /// How errors name it: `column 'latency'` or the source text, e.g. `'df.a + 1'`.
    pub desc: String,
    /// The DataFrame whose columns it was written against (none for a column made of constants).
    pub df: Option<usize>,
}

impl Col {
    /// `column 'x' (int)`: the description and type together.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.desc, type_name(&self.ty))
    }
}

/// Type classes that decide which operators apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Str,
    Bool,
    Time,
    Struct,
    Other,
}

impl Kind {
    pub fn of(ty: &DataType) -> Kind {
        match ty {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => Kind::Int,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => Kind::Float,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Str,
            DataType::Boolean => Kind::Bool,
            DataType::Timestamp(_, _) => Kind::Time,
            DataType::Struct(_) => Kind::Struct,
            _ => Kind::Other,
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Kind::Int | Kind::Float)
    }
}

/// The name of a column type in messages: Pixie's vocabulary, lower case.
pub fn type_name(ty: &DataType) -> String {
    match Kind::of(ty) {
        Kind::Int => "int".into(),
        Kind::Float => "float".into(),
        Kind::Str => "string".into(),
        Kind::Bool => "bool".into(),
        Kind::Time => "time".into(),
        Kind::Struct if *ty == crate::quantiles::quantiles_type() => "quantiles".into(),
        _ => ty.to_string().to_lowercase(),
    }
}

/// The Arrow type of `time_`.
pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, None)
}
