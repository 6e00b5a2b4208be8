//! Call arguments: evaluation and binding to a function's parameter names.

use ruff_python_ast::Arguments;
use ruff_text_size::{Ranged, TextRange};

use super::{Compiler, Result, Value};
use crate::suggest::did_you_mean;

/// An evaluated argument and where it was written.
#[derive(Debug, Clone)]
pub struct Arg<'a> {
    pub value: Value<'a>,
    pub range: TextRange,
}

/// The evaluated arguments of one call.
#[derive(Debug)]
pub struct CallArgs<'a> {
    pub positional: Vec<Arg<'a>>,
    /// `(name, where the name was written, value)`.
    pub keywords: Vec<(String, TextRange, Arg<'a>)>,
    /// The whole call, for "missing argument" errors.
    pub range: TextRange,
}

impl<'a> Compiler<'a> {
    pub(super) fn eval_args(
        &mut self,
        arguments: &'a Arguments,
        range: TextRange,
    ) -> Result<CallArgs<'a>> {
        let mut positional = Vec::new();
        for a in arguments.args.iter() {
            if let ruff_python_ast::Expr::Starred(s) = a {
                return self.err(s.range(), "*args in calls are not supported in PxL");
            }
            positional.push(Arg {
                value: self.eval(a)?,
                range: a.range(),
            });
        }
        let mut keywords = Vec::new();
        for k in arguments.keywords.iter() {
            let Some(name) = &k.arg else {
                return self.err(k.range(), "**kwargs in calls are not supported in PxL");
            };
            keywords.push((
                name.id.to_string(),
                name.range(),
                Arg {
                    value: self.eval(&k.value)?,
                    range: k.value.range(),
                },
            ));
        }
        Ok(CallArgs {
            positional,
            keywords,
            range,
        })
    }

    /// Matches arguments to `params` (positional first, then by keyword). The first `required`
    /// parameters must be given; the rest come back as `None` when absent.
    pub(super) fn bind_args(
        &self,
        fname: &str,
        params: &[&str],
        required: usize,
        call: CallArgs<'a>,
    ) -> Result<Vec<Option<Arg<'a>>>> {
        if call.positional.len() > params.len() {
            let extra = &call.positional[params.len()];
            return self.err(
                extra.range,
                format!(
                    "{fname} takes {} ({}), got {}",
                    count(params.len(), "argument"),
                    params.join(", "),
                    call.positional.len() + call.keywords.len()
                ),
            );
        }
        let mut bound: Vec<Option<Arg<'a>>> = vec![None; params.len()];
        for (slot, arg) in bound.iter_mut().zip(call.positional) {
            *slot = Some(arg);
        }
        for (name, name_at, arg) in call.keywords {
            let Some(i) = params.iter().position(|p| *p == name) else {
                return self.err(
                    name_at,
                    format!(
                        "{fname} has no argument '{name}'{}",
                        did_you_mean(&name, params.iter().copied())
                    ),
                );
            };
            if bound[i].is_some() {
                return self.err(name_at, format!("{fname} got argument '{name}' twice"));
            }
            bound[i] = Some(arg);
        }
        if let Some(missing) = (0..required).find(|&i| bound[i].is_none()) {
            return self.err(
                call.range,
                format!(
                    "{fname} is missing argument '{}' (it takes {})",
                    params[missing],
                    params.join(", ")
                ),
            );
        }
        Ok(bound)
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
