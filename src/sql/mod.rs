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
        let tokens = tokenize(sql)?;
        let (indices, _) = param_indices(&tokens)?;
        let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens);
        let mut next_param = 0usize;
        loop {
            while p.consume_token(&Token::SemiColon) {}
            let start = p.peek_token().span.start;
            if p.peek_token().token == Token::EOF {
                break;
            }
            let stmt = parse_statement(&mut p, sql, params, &indices, &mut next_param)?;
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

impl Session {
    /// The result columns of the first statement of `sql` with `params` bound, without
    /// running it (what a prepared statement reports before its first step).
    ///
    /// # Errors
    /// Syntax errors; an unknown collection or column; a parameter value the statement
    /// cannot take.
    pub fn result_columns(&self, sql: &str, params: &[Value]) -> Result<Vec<String>> {
        let dialect = GenericDialect {};
        let tokens = tokenize(sql)?;
        if let Some(cols) = self.select_columns(&tokens) {
            return cols;
        }
        let (indices, _) = param_indices(&tokens)?;
        let mut p = Parser::new(&dialect).with_tokens_with_locations(tokens);
        while p.consume_token(&Token::SemiColon) {}
        let mut n = 0;
        let stmt = parse_statement(&mut p, sql, params, &indices, &mut n)?;
        self.columns_of(&stmt)
    }
}

impl Session {
    /// The columns of a `[EXPLAIN] SELECT items FROM coll …` from its tokens alone (no
    /// parameter values needed): `None` for any other statement.
    fn select_columns(&self, tokens: &[sqlparser::tokenizer::TokenWithSpan]) -> Option<Result<Vec<String>>> {
        let toks: Vec<&Token> = tokens
            .iter()
            .map(|t| &t.token)
            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
            .collect();
        let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
        let mut i = 0;
        let explain = toks.first().is_some_and(|t| word(t, "explain"));
        i += usize::from(explain);
        if !toks.get(i).is_some_and(|t| word(t, "select")) {
            return None;
        }
        i += 1;
        let (mut items, mut count) = (Vec::new(), false);
        while let Some(t) = toks.get(i) {
            match t {
                Token::Word(w) if w.value.eq_ignore_ascii_case("from") => break,
                Token::Word(w)
                    if w.value.eq_ignore_ascii_case("count") && toks.get(i + 1) == Some(&&Token::LParen) =>
                {
                    count = true;
                    i += 3;
                }
                Token::Word(w) => items.push(w.value.clone()),
                Token::Mul => items.push("*".to_string()),
                _ => {}
            }
            i += 1;
        }
        let Some(Token::Word(coll)) = toks.get(i + 1) else { return None };
        let scored =
            toks.windows(4).any(|w| word(w[0], "order") && word(w[1], "by") && *w[3] == Token::LParen);
        Some(if explain {
            Ok(exec::strings(exec::EXPLAIN_COLUMNS))
        } else if count {
            Ok(vec!["count".to_string()])
        } else {
            self.database().describe(&coll.value).and_then(|spec| exec::result_columns(&spec, &items, scored))
        })
    }
}

/// Parse the statement at the parser's position, up to its `;` or the end of the input.
fn parse_statement(
    p: &mut Parser<'_>,
    sql: &str,
    params: &[Value],
    indices: &[usize],
    next_param: &mut usize,
) -> Result<Statement> {
    let start = p.peek_token().span.start;
    let stmt = {
        let mut g = Grammar { p, params, indices, next_param };
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

fn tokenize(sql: &str) -> Result<Vec<sqlparser::tokenizer::TokenWithSpan>> {
    let dialect = GenericDialect {};
    sqlparser::tokenizer::Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| syntax(ParserError::TokenizerError(e.to_string()), sql, Location { line: 1, column: 1 }))
}

/// Named parameters and their indices (from 1), in order of first appearance.
pub type NamedParams = Vec<(String, usize)>;

/// The parameter index (from 1) of every placeholder of `tokens`, in text order, and the
/// named ones, by SQLite's rules: `?N` (or `$N`) is N; `:name` (or `$name`) is the index its
/// name got at its first appearance, else one more than the largest index so far; `?` is
/// one more than the largest so far.
///
/// # Errors
/// [`Error::InvalidArgument`] for `?0`, an index above [`MAX_PARAMS`] or a malformed
/// placeholder.
pub(crate) fn param_indices(
    tokens: &[sqlparser::tokenizer::TokenWithSpan],
) -> Result<(Vec<usize>, NamedParams)> {
    let (mut indices, mut names, mut highest) = (Vec::new(), NamedParams::new(), 0usize);
    for (k, t) in tokens.iter().enumerate() {
        // `:name` arrives as a colon and a word (the parser joins them into a placeholder).
        let joined;
        let ph = match (&t.token, tokens.get(k + 1).map(|n| &n.token)) {
            (Token::Placeholder(ph), _) => ph,
            (Token::Colon, Some(Token::Word(w))) => {
                joined = format!(":{}", w.value);
                &joined
            }
            _ => continue,
        };
        let i = if ph == "?" {
            highest + 1
        } else if let Some(n) = ph.strip_prefix(['?', '$']).and_then(|n| n.parse::<usize>().ok()) {
            if n == 0 {
                return Err(Error::invalid(format!("parameter '{ph}': indices start at 1")));
            }
            n
        } else if let Some(name) = ph.strip_prefix([':', '$']).filter(|n| !n.is_empty()) {
            match names.iter().find(|(n, _)| n == name) {
                Some((_, i)) => *i,
                None => {
                    names.push((name.to_string(), highest + 1));
                    highest + 1
                }
            }
        } else {
            return Err(Error::invalid(format!("bad parameter '{ph}': use ?, ?N or :name")));
        };
        if i > MAX_PARAMS {
            return Err(Error::invalid(format!(
                "a statement takes at most {MAX_PARAMS} parameters, this one asks for {i}"
            )));
        }
        highest = highest.max(i);
        indices.push(i);
    }
    Ok((indices, names))
}

/// What a prepared statement learns before any value is bound ([`prepare_first`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Byte offset in the input just past the first statement (and its `;`): where the
    /// next statement starts (the C API's `tail`).
    pub end: usize,
    /// How many parameters it takes (the largest index).
    pub params: usize,
    /// Named parameters (`:name`) and their indices (from 1).
    pub names: NamedParams,
}

/// Check the first statement of `sql` (syntax errors before its first parameter are
/// reported here; errors that depend on bound values appear when it runs) and say where
/// it ends, how many parameters it takes and which are named. `Ok(None)`: `sql` holds no
/// statement (only whitespace, comments or `;`).
///
/// # Errors
/// [`Error::Syntax`] with the position; [`Error::InvalidArgument`] for bad placeholders.
pub fn prepare_first(sql: &str) -> Result<Option<Prepared>> {
    let dialect = GenericDialect {};
    let tokens = tokenize(sql)?;
    // The first statement's tokens: up to and including its first top-level `;`.
    let mut started = false;
    let mut cut = tokens.len();
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::SemiColon if started => {
                cut = i + 1;
                break;
            }
            Token::SemiColon | Token::Whitespace(_) | Token::EOF => {}
            _ => started = true,
        }
    }
    if !started {
        return Ok(None);
    }
    let end = match tokens.get(cut) {
        Some(t) => byte_offset(sql, t.span.start),
        None => sql.len(),
    };
    let mut first: Vec<_> = tokens[..cut].to_vec();
    if first.last().is_some_and(|t| t.token == Token::SemiColon) {
        first.pop();
    }
    let (indices, names) = param_indices(&first)?;
    let first_param = first
        .iter()
        .zip(first.iter().skip(1).map(|t| &t.token).chain(std::iter::once(&Token::EOF)))
        .find(|(t, next)| {
            matches!((&t.token, next), (Token::Placeholder(_), _) | (Token::Colon, Token::Word(_)))
        })
        .map(|(t, _)| t.span.start);
    let params = indices.iter().copied().max().unwrap_or(0);
    let mut p = Parser::new(&dialect).with_tokens_with_locations(first);
    let mut n = 0;
    match (parse_statement(&mut p, sql, &[], &indices, &mut n), first_param) {
        (Ok(_), _) => {}
        (Err(e), None) => return Err(e),
        // Errors at or after the first parameter may depend on its value: checked when run.
        (Err(Error::Syntax { line, column, .. }), Some(at)) if (line, column) >= (at.line, at.column) => {}
        (Err(e @ Error::Syntax { .. }), Some(_)) => return Err(e),
        (Err(_), Some(_)) => {}
    }
    Ok(Some(Prepared { end, params, names }))
}

/// The byte offset of a 1-based (line, column-in-characters) location.
fn byte_offset(sql: &str, at: Location) -> usize {
    let (mut line, mut col) = (1u64, 1u64);
    for (i, c) in sql.char_indices() {
        if (line, col) >= (at.line, at.column) {
            return i;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    sql.len()
}

/// Check that `sql` is exactly one statement and return what [`prepare_first`] learns.
///
/// # Errors
/// As [`prepare_first`], plus [`Error::InvalidArgument`] for an empty input or more than
/// one statement.
pub fn prepare_one(sql: &str) -> Result<Prepared> {
    let p = prepare_first(sql)?
        .ok_or_else(|| Error::invalid("a prepared statement holds exactly one statement, found 0"))?;
    if prepare_first(&sql[p.end..])?.is_some() {
        return Err(Error::invalid(
            "a prepared statement holds exactly one statement, found more (run scripts with execute)",
        ));
    }
    Ok(p)
}

/// How many parameters the single statement `sql` takes: [`prepare_one`]'s `params`.
///
/// # Errors
/// As [`prepare_one`].
pub fn prepare(sql: &str) -> Result<usize> {
    prepare_one(sql).map(|p| p.params)
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
    let f = Grammar { p: &mut p, params: &[], indices: &[], next_param: &mut n }.filter().map_err(
        |e| match e {
            Fail::Parse(e) => syntax(e, expr, start),
            Fail::Db(e) => e,
        },
    )?;
    if p.peek_token().token != Token::EOF {
        let e = p.expected::<()>("the end of the filter", p.peek_token()).unwrap_err();
        return Err(syntax(e, expr, start));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameter numbering follows SQLite: `?` = largest + 1, `?N` = N, a name keeps the
    /// index of its first appearance; the tail starts after the first statement's `;`.
    #[test]
    fn parameters_are_numbered_as_in_sqlite_and_the_tail_follows_the_first_statement() {
        let idx = |sql: &str| param_indices(&tokenize(sql).unwrap()).unwrap();
        assert_eq!(idx("SELECT a FROM c WHERE x = ? AND y = ?").0, [1, 2]);
        assert_eq!(idx("SELECT a FROM c WHERE x = ?5 AND y = ?").0, [5, 6]);
        let (i, names) = idx("SELECT a FROM c WHERE x = :y AND z = ? AND w = :y AND v = :q");
        assert_eq!(i, [1, 2, 1, 3]);
        assert_eq!(names, [("y".to_string(), 1), ("q".to_string(), 3)]);
        assert!(param_indices(&tokenize("SELECT a FROM c WHERE x = ?0").unwrap()).is_err());
        let sql = "FLUSH c ;  -- note\n SELECT a FROM c";
        let p = prepare_first(sql).unwrap().unwrap();
        assert_eq!(&sql[p.end..], "  -- note\n SELECT a FROM c");
        let rest = &sql[p.end..];
        let q = prepare_first(rest).unwrap().unwrap();
        assert_eq!(q.end, rest.len());
        assert_eq!(prepare_first("  ;; -- only a comment").unwrap(), None);
        assert_eq!(prepare_first("SELECT é FROM c; FLUSH c").unwrap().unwrap().end, "SELECT é FROM c;".len());
    }

    #[test]
    fn where_clauses_become_filters_and_nothing_else() {
        let dialect = GenericDialect {};
        let parse = |s: &str| -> PResult<Filter> {
            let mut p = Parser::new(&dialect).try_with_sql(s).map_err(Fail::Parse)?;
            let mut n = 0;
            let mut g = Grammar { p: &mut p, params: &[Value::Integer(7)], indices: &[], next_param: &mut n };
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
