//! The SQL-like language: statements parsed with sqlparser's tokenizer and expression
//! parser, driven by our own grammar (README, "SQL-like language"), and executed against a
//! [`Database`].
//!
//! Safety: nothing a user types reaches SQLite as text. `WHERE` clauses are parsed into a
//! syntax tree and converted into a [`Filter`] — the collection's columns, literals,
//! comparisons, `AND`/`OR`/`NOT`, `IN`, `LIKE`, `BETWEEN`, `IS [NOT] NULL` — which the
//! catalog re-renders with bound parameters. Any other expression (functions, subqueries,
//! arithmetic) and any statement outside the language (`ATTACH`, `PRAGMA`,
//! `load_extension`, …) is an error.
//!
//! Files: [`ast`] (the statement tree), [`parser`] (the grammar), [`options`] (decoding
//! `WITH (…)` options and values), [`exec`] (one function per statement kind).

use sqlparser::ast::{BinaryOperator, Expr, InTarget, UnaryOperator, Value as SqlValue};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};

pub(crate) use crate::db::import::json_value;
use crate::filter::Filter;
use crate::index::hopfield::HopfieldParams;
use crate::types::{CollectionSpec, ColumnType, DocId, Dtype, IdType, Value, VectorSpec};
use crate::{
    Database, Error, Fusion, HnswParams, HopfieldLookup, ListRequest, MuveraOptions, PlaidOptions, Query,
    Result, SearchRequest,
};
pub(crate) use exec::every_document;

mod ast;
mod exec;
mod options;
mod parser;

use ast::Statement;
use options::*;
use parser::*;

/// What a statement returns: a table (possibly empty) and/or a message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatementResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
    /// A one-line summary (`inserted 3 documents`), if any.
    pub message: Option<String>,
    /// Set when the statement ran but found a condition its caller must not take for
    /// success: `CHECK` that found damage says [`crate::ErrorCode::Corruption`] (the shell
    /// exits with it after printing the problems).
    pub status: Option<crate::ErrorCode>,
    /// Documents the statement inserted, replaced, updated, deleted or imported (`None`
    /// for a statement that changes no documents) — a number for programs, beside the
    /// message for people (C: `msdb_changes`).
    pub changes: Option<u64>,
}

impl StatementResult {
    fn message(m: impl Into<String>) -> Self {
        Self { message: Some(m.into()), ..Self::default() }
    }

    /// A message for a statement that changed `n` documents.
    fn changed(n: impl TryInto<u64>, m: impl Into<String>) -> Self {
        Self { message: Some(m.into()), changes: n.try_into().ok(), ..Self::default() }
    }
}

/// Progress of a long statement: how much is done so far, and its unit (`IMPORT`:
/// "documents"; `BACKUP`, `RESTORE`: "MiB").
pub type Progress<'a> = &'a mut dyn FnMut(usize, &str);

/// Runs statements against a database.
#[derive(Debug, Clone)]
pub struct Session {
    db: Database,
}

/// Text of the statement starting at `start` (for error messages).
fn statement_text(sql: &str, start: Location) -> String {
    let line = sql.lines().nth(start.line.saturating_sub(1) as usize).unwrap_or("");
    let col = (start.column.saturating_sub(1) as usize).min(line.len());
    let rest: String = std::iter::once(&line[line.char_indices().nth(col).map_or(line.len(), |(i, _)| i)..])
        .chain(sql.lines().skip(start.line as usize))
        .collect::<Vec<_>>()
        .join("\n");
    shorten(rest.split(';').next().unwrap_or("").trim())
}

/// Statements quoted in error messages are cut to their first 100 and last 40 characters
/// (a rejected 1 MB INSERT is not echoed whole); the error's line and column locate the
/// problem.
fn shorten(stmt: &str) -> String {
    const HEAD: usize = 100;
    const TAIL: usize = 40;
    let n = stmt.chars().count();
    if n <= HEAD + TAIL + 20 {
        return stmt.to_string();
    }
    let head: String = stmt.chars().take(HEAD).collect();
    let tail: String = stmt.chars().skip(n - TAIL).collect();
    format!("{head} … {tail} ({n} characters)")
}

fn syntax(e: ParserError, sql: &str, start: Location) -> Error {
    let msg = e.to_string();
    // sqlparser reports "... at Line: L, Column: C".
    let pos = msg.rfind(" at Line: ").map(|i| {
        let tail = &msg[i + 10..];
        let mut it = tail.split(", Column: ");
        let l = it.next().and_then(|v| v.trim().parse().ok()).unwrap_or(start.line);
        let c = it.next().and_then(|v| v.trim().parse().ok()).unwrap_or(start.column);
        (l, c, msg[..i].to_string())
    });
    let (line, column, message) = pos.unwrap_or((start.line, start.column, msg));
    let message = message.trim_start_matches("sql parser error: ").to_string();
    Error::Syntax { message, statement: statement_text(sql, start), line, column }
}

impl Session {
    /// A session on `db`.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The database.
    #[must_use]
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Run every statement of `sql` (separated by `;`), stopping at the first error.
    ///
    /// # Errors
    /// [`Error::Syntax`] with the statement and position, or the error of the statement
    /// that failed (earlier statements stay done).
    pub fn execute(&self, sql: &str) -> Result<Vec<StatementResult>> {
        let mut out = Vec::new();
        self.execute_with(sql, &[], &mut |_, _| {}, &mut |r| out.push(r))?;
        Ok(out)
    }

    /// [`Session::execute`] with bound parameters (`?` takes them in order, `?N` is the
    /// N-th, from 1), a progress callback for `IMPORT`, and each statement's result handed
    /// to `sink` as soon as it is done (so a script's output appears up to a failure).
    ///
    /// # Errors
    /// As [`Session::execute`].
    pub fn execute_with(
        &self,
        sql: &str,
        params: &[Value],
        progress: Progress<'_>,
        sink: &mut dyn FnMut(StatementResult),
    ) -> Result<()> {
        let dialect = GenericDialect {};
        let mut p = Parser::new(&dialect)
            .try_with_sql(sql)
            .map_err(|e| syntax(e, sql, Location { line: 1, column: 1 }))?;
        let mut next_param = 0usize;
        loop {
            while p.consume_token(&Token::SemiColon) {}
            let start = p.peek_token().span.start;
            if p.peek_token().token == Token::EOF {
                break;
            }
            let stmt = parse_statement(&mut p, sql, params, &mut next_param)?;
            sink(self.run(stmt, progress).map_err(|e| match e {
                Error::InvalidArgument(m) => {
                    Error::InvalidArgument(format!("{m} (in: {})", statement_text(sql, start)))
                }
                other => other,
            })?);
        }
        Ok(())
    }
}

/// Parse the statement at the parser's position, up to its `;` or the end of the input.
fn parse_statement(
    p: &mut Parser<'_>,
    sql: &str,
    params: &[Value],
    next_param: &mut usize,
) -> Result<Statement> {
    let start = p.peek_token().span.start;
    let stmt = {
        let mut g = Grammar { p, params, next_param };
        g.statement().map_err(|e| match e {
            Fail::Parse(e) => syntax(e, sql, start),
            Fail::Db(e) => e,
        })?
    };
    if !p.consume_token(&Token::SemiColon) && p.peek_token().token != Token::EOF {
        let e = p.expected::<()>("';' or the end of the input", p.peek_token()).unwrap_err();
        return Err(syntax(e, sql, start));
    }
    Ok(stmt)
}

/// The most parameters a prepared statement takes (`?N` with N above it is an error), as
/// in SQLite.
pub const MAX_PARAMS: usize = 32_766;

/// Check that `sql` is exactly one statement and return how many parameters it takes
/// (`?` count, or the highest `?N`). This is what a prepared statement (the C API's
/// `msdb_stmt_prepare`) learns before any value is bound: syntax errors before the first
/// parameter are reported here; errors that depend on bound values appear when it runs.
///
/// # Errors
/// [`Error::Syntax`] with the position; [`Error::InvalidArgument`] for an empty input or
/// more than one statement.
pub fn prepare(sql: &str) -> Result<usize> {
    let dialect = GenericDialect {};
    let tokens =
        sqlparser::tokenizer::Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(|e| {
            syntax(ParserError::TokenizerError(e.to_string()), sql, Location { line: 1, column: 1 })
        })?;
    let (mut statements, mut in_stmt, mut asked, mut highest) = (0usize, false, 0usize, 0usize);
    let mut first_param: Option<Location> = None;
    for t in &tokens {
        match &t.token {
            Token::SemiColon => in_stmt = false,
            Token::Whitespace(_) | Token::EOF => {}
            other => {
                statements += usize::from(!in_stmt);
                in_stmt = true;
                if let Token::Placeholder(ph) = other {
                    first_param.get_or_insert(t.span.start);
                    match ph.trim_start_matches(['?', '$', ':']).parse::<usize>() {
                        Ok(n) => highest = highest.max(n),
                        Err(_) => asked += 1,
                    }
                }
            }
        }
    }
    if statements != 1 {
        return Err(Error::invalid(format!(
            "a prepared statement holds exactly one statement, found {statements} (run scripts with execute)"
        )));
    }
    if asked.max(highest) > MAX_PARAMS {
        return Err(Error::invalid(format!(
            "a statement takes at most {MAX_PARAMS} parameters, this one asks for {}",
            asked.max(highest)
        )));
    }
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let mut n = 0;
    match (parse_statement(&mut p, sql, &[], &mut n), first_param) {
        (Ok(_), _) => {}
        (Err(e), None) => return Err(e),
        // Errors at or after the first parameter may depend on its value: checked when run.
        (Err(Error::Syntax { line, column, .. }), Some(at)) if (line, column) >= (at.line, at.column) => {}
        (Err(e @ Error::Syntax { .. }), Some(_)) => return Err(e),
        (Err(_), Some(_)) => {}
    }
    Ok(asked.max(highest))
}

/// Parse a `WHERE` expression of the language (`year >= 2020 AND lang IN ('en', 'de')`)
/// into a [`Filter`], with the same rules as `SELECT … WHERE`.
///
/// # Errors
/// [`Error::Syntax`] with the position, or [`Error::InvalidArgument`] for anything a
/// filter does not allow (functions, arithmetic, subqueries).
pub fn parse_filter(expr: &str) -> Result<Filter> {
    let dialect = GenericDialect {};
    let start = Location { line: 1, column: 1 };
    let mut p = Parser::new(&dialect).try_with_sql(expr).map_err(|e| syntax(e, expr, start))?;
    let mut n = 0;
    let f = Grammar { p: &mut p, params: &[], next_param: &mut n }.filter().map_err(|e| match e {
        Fail::Parse(e) => syntax(e, expr, start),
        Fail::Db(e) => e,
    })?;
    if p.peek_token().token != Token::EOF {
        let e = p.expected::<()>("the end of the filter", p.peek_token()).unwrap_err();
        return Err(syntax(e, expr, start));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_clauses_become_filters_and_nothing_else() {
        let dialect = GenericDialect {};
        let parse = |s: &str| -> PResult<Filter> {
            let mut p = Parser::new(&dialect).try_with_sql(s).map_err(Fail::Parse)?;
            let mut n = 0;
            let mut g = Grammar { p: &mut p, params: &[Value::Integer(7)], next_param: &mut n };
            g.filter()
        };
        let ok = |s: &str| parse(s).unwrap_or_else(|_| panic!("{s} should parse"));
        assert_eq!(ok("year >= 2000"), Filter::gte("year", 2000i64));
        assert_eq!(ok("2000 < year"), Filter::gt("year", 2000i64));
        assert_eq!(ok("year = ?"), Filter::eq("year", 7i64));
        assert_eq!(ok("NOT (a = 'x' OR b IS NULL)"), Filter::eq("a", "x").or(Filter::is_null("b")).not());
        assert_eq!(ok("a IN (1, 2)"), Filter::is_in("a", vec![Value::Integer(1), Value::Integer(2)]));
        assert_eq!(ok("t LIKE 'ab%'"), Filter::like("t", "ab%"));
        assert_eq!(ok("y BETWEEN -1 AND 2.5"), Filter::between("y", -1i64, 2.5f64));
        for bad in [
            "lower(t) = 'x'",
            "a = b",
            "a + 1 = 2",
            "a IN (SELECT 1)",
            "load_extension('x') = 1",
            "a = (SELECT 1)",
            "EXISTS (SELECT 1)",
        ] {
            assert!(parse(bad).is_err(), "{bad} must be rejected");
        }
    }
}
