//! Plain SQL over the same tables: DataFusion's SQL planner with our catalog, the PxL UDFs and a
//! fixed `now()`.

use std::cell::RefCell;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::{
    DataFusionError, Result as DfResult, ScalarValue, TableReference, plan_err,
};
use datafusion::config::ConfigOptions;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner};
use datafusion::logical_expr::{
    AggregateUDF, ColumnarValue, HigherOrderUDF, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TableSource, Volatility, WindowUDF,
};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::planner::SqlToRel;
use datafusion::sql::sqlparser::ast::Statement;

use crate::error::{CompileError, LineIndex};
use crate::suggest::did_you_mean;
use crate::{CompileOptions, CompiledScript, MetadataResolver, OutputPlan, TableCatalog};

pub fn compile_sql(
    sql: &str,
    catalog: &dyn TableCatalog,
    metadata: Arc<dyn MetadataResolver>,
    options: &CompileOptions,
) -> Result<CompiledScript, CompileError> {
    let index = LineIndex::new(sql);
    if let Some(name) = options.args.keys().next() {
        return Err(index.error(
            0,
            format!("argument '{name}' given, but SQL takes no arguments"),
        ));
    }
    let mut statements = DFParser::parse_sql(sql).map_err(|e| located(&index, sql, &e, None))?;
    let statement = match (statements.pop_front(), statements.is_empty()) {
        (Some(s), true) => s,
        (None, _) => return Err(index.error(0, "empty SQL: want one SELECT query")),
        (Some(_), false) => return Err(index.error(0, "want exactly one SQL statement")),
    };
    if !matches!(&statement, DfStatement::Statement(s) if matches!(**s, Statement::Query(_))) {
        return Err(index.error(0, "only SELECT queries are supported"));
    }
    let context = SqlContext::new(catalog, metadata, options.now_ns)
        .map_err(|e| index.error(0, e.strip_backtrace()))?;
    let plan = SqlToRel::new(&context)
        .statement_to_plan(statement)
        .map_err(|e| located(&index, sql, &e, context.missing_table.borrow().as_deref()))?;
    let plan = match options.max_output_rows {
        Some(n) => LogicalPlanBuilder::from(plan)
            .limit(0, Some(n))
            .and_then(LogicalPlanBuilder::build)
            .map_err(|e| index.error(0, e.strip_backtrace()))?,
        None => plan,
    };
    Ok(CompiledScript {
        outputs: vec![OutputPlan {
            name: "output".to_string(),
            plan,
        }],
        params: Vec::new(),
        exports: Vec::new(),
    })
}

/// Puts a DataFusion error at its position: the diagnostic span if there is one, the
/// `Line: x, Column: y` the SQL parser writes, the unknown table's name in the text, or 1:1.
fn located(
    index: &LineIndex,
    sql: &str,
    e: &DataFusionError,
    missing_table: Option<&str>,
) -> CompileError {
    let message = clean_message(&e.strip_backtrace());
    if let Some(span) = e.diagnostic().and_then(|d| d.span)
        && span.start.line > 0
    {
        return CompileError::new(
            span.start.line as usize,
            span.start.column as usize,
            message,
        );
    }
    if let Some((line, col)) = parser_position(&message) {
        return CompileError::new(line, col, message);
    }
    if message.ends_with("found: EOF") {
        // The parser ran out of input: point just past the last token.
        return index.error(sql.trim_end().len(), message);
    }
    if let Some(table) = missing_table
        && let Some(offset) = find_word(sql, table)
    {
        return index.error(offset, message);
    }
    index.error(0, message)
}

/// One line, without DataFusion's category prefixes and `ParserError("...")` wrapping.
fn clean_message(raw: &str) -> String {
    let mut message = raw.replace('\n', " ");
    for prefix in ["Error during planning: ", "SQL error: ", "Schema error: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            message = rest.to_string();
        }
    }
    if let Some(inner) = message
        .strip_prefix("ParserError(\"")
        .and_then(|m| m.strip_suffix("\")"))
    {
        message = inner.to_string();
    }
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `... at Line: 3, Column: 14` in sqlparser's messages.
fn parser_position(message: &str) -> Option<(usize, usize)> {
    let rest = &message[message.find("Line: ")? + "Line: ".len()..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

/// The byte offset of `word` in `text` as a whole identifier, case-insensitively.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let lower = text.to_lowercase();
    let word = word.to_lowercase();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    lower.match_indices(&word).map(|(i, _)| i).find(|&i| {
        let before = lower[..i].chars().next_back().is_none_or(|c| !is_ident(c));
        let after = lower[i + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_ident(c));
        before && after
    })
}

/// What the SQL planner sees: our tables and DataFusion's functions plus ours.
struct SqlContext<'c> {
    catalog: &'c dyn TableCatalog,
    state: SessionState,
    /// The table name the planner asked for and we did not have, to locate the error.
    missing_table: RefCell<Option<String>>,
}

impl<'c> SqlContext<'c> {
    fn new(
        catalog: &'c dyn TableCatalog,
        metadata: Arc<dyn MetadataResolver>,
        now_ns: i64,
    ) -> DfResult<Self> {
        let config = SessionConfig::new().set_bool("datafusion.sql_parser.collect_spans", true);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let (scalars, aggregates) = crate::all_functions(metadata);
        for udf in scalars {
            state.register_udf(udf)?;
        }
        for udaf in aggregates {
            state.register_udaf(udaf)?;
        }
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(FixedNow::new(now_ns))))?;
        Ok(SqlContext {
            catalog,
            state,
            missing_table: RefCell::new(None),
        })
    }
}

impl ContextProvider for SqlContext<'_> {
    fn get_table_source(&self, name: TableReference) -> DfResult<Arc<dyn TableSource>> {
        let table = name.table();
        if let Some(source) = self.catalog.table_source(table) {
            return Ok(source);
        }
        *self.missing_table.borrow_mut() = Some(table.to_string());
        let names = self.catalog.table_names();
        plan_err!(
            "unknown table '{table}'{} (tables: {})",
            did_you_mean(table, names.iter().map(String::as_str)),
            names.join(", ")
        )
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.state.expr_planners()
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.state.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, name: &str) -> Option<Arc<HigherOrderUDF>> {
        self.state.higher_order_functions().get(name).cloned()
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.state.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.state.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        self.state.scalar_functions().keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        self.state
            .higher_order_functions()
            .keys()
            .cloned()
            .collect()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.state.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.state.window_functions().keys().cloned().collect()
    }
}

/// `now()` as the compile options' now, with `time_`'s type: the same instant PxL's relative
/// times use, and a literal after simplification so time filters push down.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FixedNow {
    now_ns: i64,
    signature: Signature,
}

impl FixedNow {
    fn new(now_ns: i64) -> Self {
        FixedNow {
            now_ns,
            signature: Signature::exact(vec![], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for FixedNow {
    fn name(&self) -> &str {
        "now"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(crate::compiler::time_type())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(
            Some(self.now_ns),
            None,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sql_parser_position() {
        assert_eq!(
            parser_position("Expected: end of statement, found: x at Line: 2, Column: 15"),
            Some((2, 15))
        );
        assert_eq!(parser_position("no position here"), None);
    }

    #[test]
    fn messages_lose_wrappers_and_newlines() {
        assert_eq!(
            clean_message("SQL error: ParserError(\"Expected: an expression, found: EOF\")"),
            "Expected: an expression, found: EOF"
        );
        assert_eq!(
            clean_message("Schema error: No field\nValid fields"),
            "No field Valid fields"
        );
    }

    #[test]
    fn finds_whole_words_only() {
        assert_eq!(
            find_word("select * from http_eventz", "http_eventz"),
            Some(14)
        );
        assert_eq!(find_word("select xab, ab from t", "ab"), Some(12));
        assert_eq!(find_word("select x from t", "y"), None);
    }
}
