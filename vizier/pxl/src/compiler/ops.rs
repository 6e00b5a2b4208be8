//! Operators: Python semantics on constants, typed DataFusion expressions on columns.

use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::functions::expr_fn::{floor, power};
use datafusion::logical_expr::{Expr, Operator as DfOp, binary_expr, cast, lit, when};
use ruff_python_ast::{CmpOp, Operator, UnaryOp};
use ruff_text_size::TextRange;

use super::expr::constant_eq;
use super::value::{Col, Kind, time_type, type_name};
use super::{Compiler, Result, Value};

/// One side of a column operation: a column or a constant turned into a literal.
#[derive(Debug, Clone)]
pub struct Operand {
    pub expr: Expr,
    pub ty: DataType,
    /// `column 'x'`, `'df.a + 1'` or a constant's repr.
    pub desc: String,
    pub df: Option<usize>,
    /// A numeric constant's value in nanoseconds, for comparing and shifting times.
    pub const_ns: Option<i64>,
}

impl Operand {
    fn kind(&self) -> Kind {
        Kind::of(&self.ty)
    }

    pub fn describe(&self) -> String {
        format!("{} ({})", self.desc, type_name(&self.ty))
    }

    fn as_int(&self) -> Expr {
        cast_if(self.expr.clone(), &self.ty, DataType::Int64)
    }

    fn as_float(&self) -> Expr {
        cast_if(self.expr.clone(), &self.ty, DataType::Float64)
    }

    /// This operand as a time: a timestamp literal for constants (so filters on `time_` stay
    /// `time_ >= <literal>` and can be pushed into scans), a cast for integer columns.
    fn as_time(&self) -> Expr {
        match self.const_ns {
            Some(ns) => lit(ScalarValue::TimestampNanosecond(Some(ns), None)),
            None => cast_if(self.expr.clone(), &self.ty, time_type()),
        }
    }
}

fn cast_if(expr: Expr, from: &DataType, to: DataType) -> Expr {
    if *from == to { expr } else { cast(expr, to) }
}

impl<'a> Compiler<'a> {
    /// Turns a value into one side of a column operation.
    pub(super) fn operand(&self, value: Value<'a>, at: TextRange) -> Result<Operand> {
        let constant = |expr: Expr, ty: DataType, v: &Value, ns: Option<i64>| Operand {
            expr,
            ty,
            desc: v.repr(),
            df: None,
            const_ns: ns,
        };
        Ok(match &value {
            Value::Column(c) => Operand {
                expr: c.expr.clone(),
                ty: c.ty.clone(),
                desc: c.desc.clone(),
                df: c.df,
                const_ns: None,
            },
            Value::Int(i) => constant(lit(*i), DataType::Int64, &value, Some(*i)),
            Value::Float(f) => constant(lit(*f), DataType::Float64, &value, Some(f.round() as i64)),
            Value::Str(s) => constant(lit(s.clone()), DataType::Utf8, &value, None),
            Value::Bool(b) => constant(lit(*b), DataType::Boolean, &value, None),
            other => {
                return self.err(
                    at,
                    format!(
                        "a {} cannot be used in a column expression",
                        other.type_name()
                    ),
                );
            }
        })
    }

    /// A column built from operands: described by its source text.
    fn derived(&self, expr: Expr, ty: DataType, at: TextRange, operands: &[&Operand]) -> Col {
        Col {
            expr,
            ty,
            desc: format!("'{}'", self.short_text(at)),
            df: operands.iter().find_map(|o| o.df),
        }
    }

    /// The source text of an expression on one line, shortened for messages.
    pub(super) fn short_text(&self, at: TextRange) -> String {
        let one_line = self
            .text(at)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if one_line.chars().count() > 40 {
            format!("{}...", one_line.chars().take(37).collect::<String>())
        } else {
            one_line
        }
    }

    pub(super) fn binop(
        &mut self,
        op: Operator,
        left: Value<'a>,
        right: Value<'a>,
        left_at: TextRange,
        right_at: TextRange,
        at: TextRange,
    ) -> Result<Value<'a>> {
        let columns = matches!(left, Value::Column(_)) || matches!(right, Value::Column(_));
        if !columns {
            return self.fold_binop(op, left, right, at);
        }
        let l = self.operand(left, left_at)?;
        let r = self.operand(right, right_at)?;
        self.binop_columns(op, l, r, at).map(Value::Column)
    }

    fn binop_columns(&self, op: Operator, l: Operand, r: Operand, at: TextRange) -> Result<Col> {
        let (lk, rk) = (l.kind(), r.kind());
        let symbol = op.as_str();
        match op {
            Operator::BitAnd | Operator::BitOr => {
                if lk != Kind::Bool || rk != Kind::Bool {
                    return self.err(
                        at,
                        format!(
                            "'{symbol}' combines boolean conditions, got {} and {}",
                            l.describe(),
                            r.describe()
                        ),
                    );
                }
                let df_op = if op == Operator::BitAnd {
                    DfOp::And
                } else {
                    DfOp::Or
                };
                let expr = binary_expr(l.expr.clone(), df_op, r.expr.clone());
                return Ok(self.derived(expr, DataType::Boolean, at, &[&l, &r]));
            }
            Operator::BitXor | Operator::LShift | Operator::RShift | Operator::MatMult => {
                return self.err(
                    at,
                    format!("operator '{symbol}' is not supported on columns"),
                );
            }
            _ => {}
        }
        let cannot = || {
            self.err(
                at,
                format!(
                    "cannot apply '{symbol}' to {} and {}",
                    l.describe(),
                    r.describe()
                ),
            )
        };
        if lk == Kind::Str && rk == Kind::Str {
            if op != Operator::Add {
                return cannot();
            }
            let expr = binary_expr(l.expr.clone(), DfOp::StringConcat, r.expr.clone());
            return Ok(self.derived(expr, DataType::Utf8, at, &[&l, &r]));
        }
        // Times are int64 nanoseconds in arithmetic; shifting a time by an int keeps it a time.
        let shift = match (lk, rk, op) {
            (Kind::Time, Kind::Time, Operator::Sub) => {
                let expr = binary_expr(l.as_int(), DfOp::Minus, r.as_int());
                return Ok(self.derived(expr, DataType::Int64, at, &[&l, &r]));
            }
            (Kind::Time, Kind::Int, Operator::Add | Operator::Sub) => true,
            (Kind::Int, Kind::Time, Operator::Add) => true,
            _ => false,
        };
        let numeric = |k: Kind| k.is_numeric() || k == Kind::Time;
        if !numeric(lk) || !numeric(rk) {
            return cannot();
        }
        let ints = |k: Kind| k == Kind::Int || k == Kind::Time;
        let both_int = ints(lk) && ints(rk);
        let (expr, ty) = match op {
            Operator::Add | Operator::Sub | Operator::Mult | Operator::Mod => {
                let df_op = match op {
                    Operator::Add => DfOp::Plus,
                    Operator::Sub => DfOp::Minus,
                    Operator::Mult => DfOp::Multiply,
                    _ => DfOp::Modulo,
                };
                if both_int {
                    let e = binary_expr(l.as_int(), df_op, r.as_int());
                    if shift {
                        (cast(e, time_type()), time_type())
                    } else {
                        (e, DataType::Int64)
                    }
                } else {
                    (
                        binary_expr(l.as_float(), df_op, r.as_float()),
                        DataType::Float64,
                    )
                }
            }
            Operator::Div => (
                binary_expr(l.as_float(), DfOp::Divide, r.as_float()),
                DataType::Float64,
            ),
            Operator::FloorDiv if both_int => (floor_div(l.as_int(), r.as_int()), DataType::Int64),
            Operator::FloorDiv => (
                floor(binary_expr(l.as_float(), DfOp::Divide, r.as_float())),
                DataType::Float64,
            ),
            Operator::Pow => (power(l.as_float(), r.as_float()), DataType::Float64),
            _ => return cannot(),
        };
        Ok(self.derived(expr, ty, at, &[&l, &r]))
    }

    pub(super) fn unary_column(&self, op: UnaryOp, c: Col, at: TextRange) -> Result<Col> {
        let kind = Kind::of(&c.ty);
        let (expr, ty) = match (op, kind) {
            (UnaryOp::Not | UnaryOp::Invert, Kind::Bool) => (Expr::Not(Box::new(c.expr)), c.ty),
            (UnaryOp::USub, Kind::Int | Kind::Float) => (Expr::Negative(Box::new(c.expr)), c.ty),
            (UnaryOp::UAdd, Kind::Int | Kind::Float) => (c.expr, c.ty),
            _ => {
                return self.err(
                    at,
                    format!("cannot apply unary '{}' to {}", op.as_str(), c.describe()),
                );
            }
        };
        Ok(Col {
            expr,
            ty,
            desc: format!("'{}'", self.short_text(at)),
            df: c.df,
        })
    }

    pub(super) fn compare_columns(
        &self,
        op: CmpOp,
        l: Operand,
        r: Operand,
        at: TextRange,
    ) -> Result<Col> {
        let (lk, rk) = (l.kind(), r.kind());
        let is_const_number = |o: &Operand| o.const_ns.is_some();
        let (le, re) = match (lk, rk) {
            (a, b) if a.is_numeric() && b.is_numeric() => (l.expr.clone(), r.expr.clone()),
            (Kind::Str, Kind::Str) | (Kind::Bool, Kind::Bool) | (Kind::Time, Kind::Time) => {
                (l.expr.clone(), r.expr.clone())
            }
            (Kind::Time, Kind::Int) => (l.expr.clone(), r.as_time()),
            (Kind::Time, Kind::Float) if is_const_number(&r) => (l.expr.clone(), r.as_time()),
            (Kind::Int, Kind::Time) => (l.as_time(), r.expr.clone()),
            (Kind::Float, Kind::Time) if is_const_number(&l) => (l.as_time(), r.expr.clone()),
            _ => {
                return self.err(
                    at,
                    format!("cannot compare {} with {}", l.describe(), r.describe()),
                );
            }
        };
        let df_op = match op {
            CmpOp::Eq => DfOp::Eq,
            CmpOp::NotEq => DfOp::NotEq,
            CmpOp::Lt => DfOp::Lt,
            CmpOp::LtE => DfOp::LtEq,
            CmpOp::Gt => DfOp::Gt,
            CmpOp::GtE => DfOp::GtEq,
            other => unreachable!("{other:?} is handled before typing"),
        };
        Ok(self.derived(binary_expr(le, df_op, re), DataType::Boolean, at, &[&l, &r]))
    }

    pub(super) fn in_list(
        &self,
        c: Col,
        items: Vec<Value<'a>>,
        negated: bool,
        list_at: TextRange,
        at: TextRange,
    ) -> Result<Col> {
        let kind = Kind::of(&c.ty);
        let mut literals = Vec::with_capacity(items.len());
        for item in &items {
            let fits = matches!(
                (kind, item),
                (Kind::Str, Value::Str(_))
                    | (Kind::Int | Kind::Float, Value::Int(_) | Value::Float(_))
                    | (Kind::Bool, Value::Bool(_))
            );
            if !fits {
                return self.err(
                    list_at,
                    format!("cannot look for {} in {}", item.repr(), c.describe()),
                );
            }
            literals.push(self.operand(item.clone(), list_at)?.expr);
        }
        let expr = c.expr.clone().in_list(literals, negated);
        Ok(Col {
            expr,
            ty: DataType::Boolean,
            desc: format!("'{}'", self.short_text(at)),
            df: c.df,
        })
    }

    /// Python arithmetic on constants.
    fn fold_binop(
        &self,
        op: Operator,
        left: Value<'a>,
        right: Value<'a>,
        at: TextRange,
    ) -> Result<Value<'a>> {
        let unsupported = |l: &Value, r: &Value| {
            self.err(
                at,
                format!(
                    "unsupported operand types for '{}': {} and {}",
                    op.as_str(),
                    l.type_name(),
                    r.type_name()
                ),
            )
        };
        let overflow = || self.err(at, "integer overflow");
        let zero = || self.err(at, "division by zero");
        let as_int = |v: &Value| match v {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        };
        let as_float = |v: &Value| match v {
            Value::Float(f) => Some(*f),
            other => as_int(other).map(|i| i as f64),
        };
        match (&left, &right) {
            (Value::Bool(a), Value::Bool(b))
                if matches!(op, Operator::BitAnd | Operator::BitOr | Operator::BitXor) =>
            {
                return Ok(Value::Bool(match op {
                    Operator::BitAnd => a & b,
                    Operator::BitOr => a | b,
                    _ => a ^ b,
                }));
            }
            (Value::Str(a), Value::Str(b)) if op == Operator::Add => {
                return Ok(Value::Str(format!("{a}{b}")));
            }
            (Value::List(a), Value::List(b)) if op == Operator::Add => {
                return Ok(Value::List(a.iter().chain(b).cloned().collect()));
            }
            (Value::Tuple(a), Value::Tuple(b)) if op == Operator::Add => {
                return Ok(Value::Tuple(a.iter().chain(b).cloned().collect()));
            }
            _ => {}
        }
        if let (Some(a), Some(b)) = (as_int(&left), as_int(&right)) {
            let result = match op {
                Operator::Add => a.checked_add(b),
                Operator::Sub => a.checked_sub(b),
                Operator::Mult => a.checked_mul(b),
                Operator::Div if b == 0 => return zero(),
                Operator::Div => return Ok(Value::Float(a as f64 / b as f64)),
                Operator::FloorDiv | Operator::Mod if b == 0 => return zero(),
                // Python rounds towards negative infinity and gives `%` the divisor's sign.
                Operator::FloorDiv => a.checked_div(b).map(|q| {
                    if a % b != 0 && ((a < 0) != (b < 0)) {
                        q - 1
                    } else {
                        q
                    }
                }),
                Operator::Mod => a.checked_rem(b).map(|m| {
                    if m != 0 && ((m < 0) != (b < 0)) {
                        m + b
                    } else {
                        m
                    }
                }),
                Operator::Pow if b < 0 => return Ok(Value::Float((a as f64).powf(b as f64))),
                Operator::Pow => u32::try_from(b).ok().and_then(|e| a.checked_pow(e)),
                Operator::BitAnd => Some(a & b),
                Operator::BitOr => Some(a | b),
                Operator::BitXor => Some(a ^ b),
                Operator::LShift => u32::try_from(b).ok().and_then(|s| a.checked_shl(s)),
                Operator::RShift => u32::try_from(b).ok().map(|s| a >> s.min(63)),
                Operator::MatMult => return unsupported(&left, &right),
            };
            return result.map(Value::Int).map_or_else(overflow, Ok);
        }
        if let (Some(a), Some(b)) = (as_float(&left), as_float(&right)) {
            let value = match op {
                Operator::Add => a + b,
                Operator::Sub => a - b,
                Operator::Mult => a * b,
                Operator::Div | Operator::FloorDiv | Operator::Mod if b == 0.0 => return zero(),
                Operator::Div => a / b,
                Operator::FloorDiv => (a / b).floor(),
                Operator::Mod => a - b * (a / b).floor(),
                Operator::Pow => a.powf(b),
                _ => return unsupported(&left, &right),
            };
            return Ok(Value::Float(value));
        }
        unsupported(&left, &right)
    }

    /// Python comparisons on constants.
    pub(super) fn fold_compare(
        &self,
        op: CmpOp,
        left: &Value<'a>,
        right: &Value<'a>,
        at: TextRange,
    ) -> Result<Value<'a>> {
        use std::cmp::Ordering;
        let number = |v: &Value| match v {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        };
        let ordering: Option<Ordering> = match (left, right) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
            (a, b) => match (number(a), number(b)) {
                (Some(x), Some(y)) => x.partial_cmp(&y),
                _ => None,
            },
        };
        let result = match op {
            CmpOp::Eq => constant_eq(left, right),
            CmpOp::NotEq => !constant_eq(left, right),
            _ => {
                let Some(ordering) = ordering else {
                    return self.err(
                        at,
                        format!(
                            "'{}' is not supported between {} and {}",
                            op.as_str(),
                            left.type_name(),
                            right.type_name()
                        ),
                    );
                };
                match op {
                    CmpOp::Lt => ordering.is_lt(),
                    CmpOp::LtE => ordering.is_le(),
                    CmpOp::Gt => ordering.is_gt(),
                    _ => ordering.is_ge(),
                }
            }
        };
        Ok(Value::Bool(result))
    }
}

/// Integer floor division, rounding towards negative infinity as Python does.
fn floor_div(a: Expr, b: Expr) -> Expr {
    let truncated = binary_expr(a.clone(), DfOp::Divide, b.clone());
    let inexact = binary_expr(
        binary_expr(a.clone(), DfOp::Modulo, b.clone()),
        DfOp::NotEq,
        lit(0i64),
    );
    let signs_differ = binary_expr(
        binary_expr(a, DfOp::Lt, lit(0i64)),
        DfOp::NotEq,
        binary_expr(b, DfOp::Lt, lit(0i64)),
    );
    when(
        binary_expr(inexact, DfOp::And, signs_differ),
        binary_expr(truncated.clone(), DfOp::Minus, lit(1i64)),
    )
    .otherwise(truncated)
    .expect("a CASE with one WHEN and an ELSE is well formed")
}
