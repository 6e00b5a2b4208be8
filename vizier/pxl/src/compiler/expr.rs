//! Expression evaluation: constants, names, operators, attributes, subscripts and calls.

use ruff_python_ast::{self as ast, BoolOp, CmpOp, Expr, Number, UnaryOp};
use ruff_text_size::{Ranged, TextRange};

use super::value::{Col, DictEntry};
use super::{Compiler, Result, Value};
use crate::suggest::did_you_mean;

impl<'a> Compiler<'a> {
    pub(super) fn eval(&mut self, e: &'a Expr) -> Result<Value<'a>> {
        match e {
            Expr::NumberLiteral(n) => match &n.value {
                Number::Int(i) => match i.as_i64() {
                    Some(i) => Ok(Value::Int(i)),
                    None => self.err(n.range(), "integer literal does not fit in 64 bits"),
                },
                Number::Float(f) => Ok(Value::Float(*f)),
                Number::Complex { .. } => self.err(n.range(), "complex numbers are not supported"),
            },
            Expr::StringLiteral(s) => Ok(Value::Str(s.value.to_str().to_string())),
            Expr::BooleanLiteral(b) => Ok(Value::Bool(b.value)),
            Expr::NoneLiteral(_) => Ok(Value::None),
            Expr::Name(name) => self.name(name),
            Expr::List(l) => Ok(Value::List(self.eval_all(&l.elts)?)),
            Expr::Dict(d) => self.dict(d),
            Expr::Tuple(t) => Ok(Value::Tuple(self.eval_all(&t.elts)?)),
            Expr::BinOp(b) => {
                let left = self.eval(&b.left)?;
                let right = self.eval(&b.right)?;
                self.binop(
                    b.op,
                    left,
                    right,
                    b.left.range(),
                    b.right.range(),
                    b.range(),
                )
            }
            Expr::UnaryOp(u) => {
                let operand = self.eval(&u.operand)?;
                self.unary(u.op, operand, u.operand.range(), u.range())
            }
            Expr::BoolOp(b) => self.boolop(b),
            Expr::Compare(c) => self.compare_chain(c),
            Expr::Call(call) => self.call(call),
            Expr::Attribute(a) => {
                let object = self.eval(&a.value)?;
                self.attribute(object, &a.attr, a.range())
            }
            Expr::Subscript(s) => {
                let object = self.eval(&s.value)?;
                let key = self.eval(&s.slice)?;
                self.subscript(object, key, s.slice.range(), s.range())
            }
            Expr::If(i) => {
                if self.condition(&i.test)? {
                    self.eval(&i.body)
                } else {
                    self.eval(&i.orelse)
                }
            }
            other => {
                let what = match other {
                    Expr::Lambda(_) => "lambdas",
                    Expr::DictComp(_) => "dict comprehensions",
                    Expr::Set(_) | Expr::SetComp(_) => "sets",
                    Expr::ListComp(_) | Expr::Generator(_) => "comprehensions",
                    Expr::FString(_) | Expr::TString(_) => "f-strings",
                    Expr::Slice(_) => "slices",
                    Expr::Starred(_) => "starred expressions",
                    Expr::Named(_) => "':=' assignments",
                    _ => "this kind of expression",
                };
                self.err(other.range(), format!("{what} are not supported in PxL"))
            }
        }
    }

    fn eval_all(&mut self, items: &'a [Expr]) -> Result<Vec<Value<'a>>> {
        items.iter().map(|e| self.eval(e)).collect()
    }

    /// `{key: value, ...}` with constant keys, each given once.
    fn dict(&mut self, d: &'a ast::ExprDict) -> Result<Value<'a>> {
        let mut entries: Vec<DictEntry<'a>> = Vec::with_capacity(d.items.len());
        for item in &d.items {
            let Some(key_expr) = &item.key else {
                return self.err(item.value.range(), "'**' in dicts is not supported in PxL");
            };
            let key = self.eval(key_expr)?;
            if !key.is_constant() {
                return self.err(
                    key_expr.range(),
                    format!("dict keys must be constants, got {}", key.type_name()),
                );
            }
            if entries.iter().any(|e| constant_eq(&e.key, &key)) {
                return self.err(
                    key_expr.range(),
                    format!("dict key {} is given twice", key.repr()),
                );
            }
            let value = self.eval(&item.value)?;
            entries.push(DictEntry {
                key,
                key_at: key_expr.range(),
                value,
                value_at: item.value.range(),
            });
        }
        Ok(Value::Dict(entries))
    }

    fn name(&self, name: &ast::ExprName) -> Result<Value<'a>> {
        let id = name.id.as_str();
        if let Some(v) = self.lookup(id) {
            return Ok(v.clone());
        }
        let hint = if id == "px" {
            " (add 'import px' at the top of the script)".to_string()
        } else {
            did_you_mean(id, self.visible_names())
        };
        self.err(name.range(), format!("name '{id}' is not defined{hint}"))
    }

    fn unary(
        &mut self,
        op: UnaryOp,
        operand: Value<'a>,
        operand_at: TextRange,
        at: TextRange,
    ) -> Result<Value<'a>> {
        match (op, operand) {
            (UnaryOp::Not, v) if v.truthy().is_some() => Ok(Value::Bool(!v.truthy().unwrap())),
            (UnaryOp::USub, Value::Int(i)) => match i.checked_neg() {
                Some(n) => Ok(Value::Int(n)),
                None => self.err(at, "integer overflow"),
            },
            (UnaryOp::USub, Value::Float(f)) => Ok(Value::Float(-f)),
            (UnaryOp::UAdd, v @ (Value::Int(_) | Value::Float(_))) => Ok(v),
            (UnaryOp::Invert, Value::Int(i)) => Ok(Value::Int(!i)),
            (op, Value::Column(c)) => self.unary_column(op, c, at).map(Value::Column),
            (op, v) => self.err(
                operand_at,
                format!("bad operand for unary '{}': {}", op.as_str(), v.type_name()),
            ),
        }
    }

    /// `a and b`, `a or b`: Python's value semantics on constants, logical and/or on columns.
    fn boolop(&mut self, b: &'a ast::ExprBoolOp) -> Result<Value<'a>> {
        let mut values = Vec::with_capacity(b.values.len());
        for e in &b.values {
            values.push((self.eval(e)?, e.range()));
        }
        if values.iter().all(|(v, _)| v.truthy().is_some()) {
            // Constants: the first deciding operand, as Python returns it.
            let decides = |v: &Value| v.truthy() == Some(b.op == BoolOp::Or);
            let last = values.len() - 1;
            let i = values.iter().position(|(v, _)| decides(v)).unwrap_or(last);
            return Ok(values.swap_remove(i).0);
        }
        let op = match b.op {
            BoolOp::And => ast::Operator::BitAnd,
            BoolOp::Or => ast::Operator::BitOr,
        };
        let mut iter = values.into_iter();
        let (mut acc, mut acc_at) = iter.next().expect("a bool op has operands");
        for (v, at) in iter {
            acc = self.binop(op, acc, v, acc_at, at, b.range())?;
            acc_at = TextRange::new(acc_at.start(), at.end());
        }
        Ok(acc)
    }

    /// `a < b < c` is `(a < b) and (b < c)`.
    fn compare_chain(&mut self, c: &'a ast::ExprCompare) -> Result<Value<'a>> {
        let mut left = self.eval(&c.left)?;
        let mut left_at = c.left.range();
        let mut result: Option<(Value<'a>, TextRange)> = None;
        for (op, right_expr) in c.ops.iter().zip(c.comparators.iter()) {
            let right = self.eval(right_expr)?;
            let at = TextRange::new(left_at.start(), right_expr.end());
            let this = self.compare(*op, left, right.clone(), left_at, right_expr.range(), at)?;
            result = Some(match result {
                None => (this, at),
                Some((prev, prev_at)) => {
                    let both =
                        self.binop(ast::Operator::BitAnd, prev, this, prev_at, at, c.range())?;
                    (both, c.range())
                }
            });
            left = right;
            left_at = right_expr.range();
        }
        Ok(result.expect("a comparison has operators").0)
    }

    fn compare(
        &mut self,
        op: CmpOp,
        left: Value<'a>,
        right: Value<'a>,
        left_at: TextRange,
        right_at: TextRange,
        at: TextRange,
    ) -> Result<Value<'a>> {
        match op {
            CmpOp::Is | CmpOp::IsNot => {
                return self.err(
                    at,
                    format!("'{}' is not supported in PxL; use == or !=", op.as_str()),
                );
            }
            CmpOp::In | CmpOp::NotIn => return self.membership(op, left, right, right_at, at),
            _ => {}
        }
        if left.is_constant() && right.is_constant() {
            return self.fold_compare(op, &left, &right, at);
        }
        let l = self.operand(left, left_at)?;
        let r = self.operand(right, right_at)?;
        self.compare_columns(op, l, r, at).map(Value::Column)
    }

    /// `x in [...]`: a constant list on the right.
    fn membership(
        &mut self,
        op: CmpOp,
        left: Value<'a>,
        right: Value<'a>,
        right_at: TextRange,
        at: TextRange,
    ) -> Result<Value<'a>> {
        let negated = op == CmpOp::NotIn;
        match (left, right) {
            (needle, Value::List(items) | Value::Tuple(items)) if needle.is_constant() => {
                let found = items.iter().any(|i| constant_eq(&needle, i));
                Ok(Value::Bool(found != negated))
            }
            (Value::Str(needle), Value::Str(hay)) => {
                Ok(Value::Bool(hay.contains(&needle) != negated))
            }
            (Value::Column(c), Value::List(items) | Value::Tuple(items)) => self
                .in_list(c, items, negated, right_at, at)
                .map(Value::Column),
            (_, right) => self.err(
                right_at,
                format!(
                    "'{}' needs a constant list on the right, got {}",
                    op.as_str(),
                    right.type_name()
                ),
            ),
        }
    }

    fn attribute(
        &mut self,
        object: Value<'a>,
        attr: &ast::Identifier,
        at: TextRange,
    ) -> Result<Value<'a>> {
        let name = attr.id.as_str();
        match object {
            Value::Px => self.px_attribute(name, attr.range()),
            Value::PxModule(module) => self.module_attribute(module, name, attr.range(), at),
            Value::DataFrame(id) => {
                if name == "ctx" {
                    return Ok(Value::Ctx(id));
                }
                if let Ok(col) = self.column(id, name, attr.range()) {
                    return Ok(Value::Column(col));
                }
                if super::frame::METHODS.contains(&name) {
                    return self.err(
                        attr.range(),
                        format!("df.{name} is a method: call it, as in df.{name}(...)"),
                    );
                }
                self.column(id, name, attr.range()).map(Value::Column)
            }
            other => self.err(
                at,
                format!("a {} has no attribute '{name}'", other.type_name()),
            ),
        }
    }

    fn subscript(
        &mut self,
        object: Value<'a>,
        key: Value<'a>,
        key_at: TextRange,
        at: TextRange,
    ) -> Result<Value<'a>> {
        match (object, key) {
            (Value::DataFrame(id), Value::Str(name)) => {
                self.column(id, &name, key_at).map(Value::Column)
            }
            (Value::DataFrame(id), Value::List(names)) => self.select(id, names, key_at),
            (Value::DataFrame(id), Value::Column(cond)) => self.filter(id, cond, key_at),
            (Value::DataFrame(_), other) => self.err(
                key_at,
                format!(
                    "df[...] takes a column name, a list of column names or a boolean column \
                     expression, got {}",
                    other.type_name()
                ),
            ),
            (Value::Ctx(id), Value::Str(key)) => self.ctx(id, &key, key_at).map(Value::Column),
            (Value::Ctx(_), other) => self.err(
                key_at,
                format!("df.ctx[...] takes a string key, got {}", other.type_name()),
            ),
            (Value::Dict(entries), key) => {
                match entries.iter().position(|e| constant_eq(&e.key, &key)) {
                    Some(i) => Ok(entries.into_iter().nth(i).expect("found").value),
                    None => self.err(
                        key_at,
                        format!(
                            "key {} is not in the dict (keys: {})",
                            key.repr(),
                            entries
                                .iter()
                                .map(|e| e.key.repr())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
            }
            (Value::List(items) | Value::Tuple(items), Value::Int(i)) => {
                let len = items.len() as i64;
                let index = if i < 0 { i + len } else { i };
                if !(0..len).contains(&index) {
                    return self.err(key_at, format!("index {i} is out of range for {len} items"));
                }
                Ok(items
                    .into_iter()
                    .nth(index as usize)
                    .expect("bounds checked"))
            }
            (object, _) => self.err(
                at,
                format!("a {} cannot be subscripted", object.type_name()),
            ),
        }
    }

    fn call(&mut self, call: &'a ast::ExprCall) -> Result<Value<'a>> {
        let range = call.range();
        match &*call.func {
            Expr::Attribute(attr) => {
                let object = self.eval(&attr.value)?;
                let method = attr.attr.id.as_str();
                match object {
                    Value::Px | Value::PxModule(_) => {
                        // An unknown function is reported before its arguments are looked at.
                        let callee = match object {
                            Value::PxModule(module) => self.module_attribute(
                                module,
                                method,
                                attr.attr.range(),
                                attr.range(),
                            )?,
                            _ => self.px_attribute(method, attr.attr.range())?,
                        };
                        let Value::PxFn(f) = callee else {
                            return self.err(
                                attr.range(),
                                format!(
                                    "'{}' is a {}, which cannot be called",
                                    self.text(attr.range()),
                                    callee.type_name()
                                ),
                            );
                        };
                        let args = self.eval_args(&call.arguments, range)?;
                        self.call_px(f, attr.attr.range(), args)
                    }
                    Value::DataFrame(id) => {
                        let args = self.eval_args(&call.arguments, range)?;
                        self.call_method(id, method, attr.attr.range(), args)
                    }
                    Value::GroupBy { df, keys } => {
                        if method != "agg" {
                            return self.err(
                                attr.attr.range(),
                                format!(
                                    "a grouped DataFrame has no method '{method}'; call \
                                     .agg(name=('column', px.fn), ...)"
                                ),
                            );
                        }
                        let args = self.eval_args(&call.arguments, range)?;
                        self.agg(df, &keys, args).map(Value::DataFrame)
                    }
                    Value::Column(c) => self.err(
                        attr.attr.range(),
                        format!(
                            "{} has no method '{method}'; use px functions on columns, e.g. \
                             px.{method}(...)",
                            c.desc
                        ),
                    ),
                    other => self.err(
                        attr.attr.range(),
                        format!("a {} has no method '{method}'", other.type_name()),
                    ),
                }
            }
            Expr::Name(name) => {
                let callee = self.name(name)?;
                let args = self.eval_args(&call.arguments, range)?;
                match callee {
                    Value::Function(def) => self.call_function(def, args),
                    Value::PxFn(f) => self.call_px(f, name.range(), args),
                    other => self.err(
                        name.range(),
                        format!(
                            "'{}' is a {}, which cannot be called",
                            name.id,
                            other.type_name()
                        ),
                    ),
                }
            }
            other => self.err(other.range(), "this cannot be called"),
        }
    }

    /// A column of a DataFrame by name, or an error naming the closest column and all of them.
    pub(super) fn column(&self, df: usize, name: &str, at: TextRange) -> Result<Col> {
        let schema = self.schema(df);
        match schema.fields().iter().find(|f| f.name() == name) {
            Some(field) => Ok(Col {
                expr: datafusion::prelude::ident(name),
                ty: field.data_type().clone(),
                desc: format!("column '{name}'"),
                df: Some(df),
            }),
            None => self.err(at, self.unknown_column(df, name)),
        }
    }

    pub(super) fn unknown_column(&self, df: usize, name: &str) -> String {
        let names = self.column_names(df);
        let hint = did_you_mean(name, names.iter().map(String::as_str));
        format!(
            "unknown column '{name}'{}{} The DataFrame's columns are: {}",
            hint,
            if hint.is_empty() { "." } else { "" },
            names.join(", ")
        )
    }

    pub(super) fn column_names(&self, df: usize) -> Vec<String> {
        self.schema(df)
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
}

/// `==` between constants of any types, as Python compares them (1 == 1.0).
pub(super) fn constant_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::None, Value::None) => true,
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| constant_eq(a, b))
        }
        _ => false,
    }
}
