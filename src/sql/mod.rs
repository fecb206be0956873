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

use sqlparser::ast::{BinaryOperator, Expr, InTarget, UnaryOperator, Value as SqlValue};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};

use crate::filter::Filter;
use crate::index::hopfield::HopfieldParams;
use crate::types::{CollectionSpec, ColumnType, DocId, Document, Dtype, IdType, Value, VectorSpec};
use crate::{
    Database, Error, Fusion, HnswParams, HopfieldLookup, MuveraOptions, PlaidOptions, Query, Result,
    SearchRequest,
};

/// What a statement returns: a table (possibly empty) and/or a message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatementResult {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<Value>>,
    /// A one-line summary (`inserted 3 documents`), if any.
    pub message: Option<String>,
}

impl StatementResult {
    fn message(m: impl Into<String>) -> Self {
        Self { message: Some(m.into()), ..Self::default() }
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
    rest.split(';').next().unwrap_or("").trim().to_string()
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

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
enum Statement {
    CreateCollection(CollectionSpec),
    DropCollection(String),
    CreateIndex {
        coll: String,
        kind: String,
        field: Option<String>,
        opts: Vec<(String, Value)>,
    },
    DropIndex {
        coll: String,
        kind: String,
    },
    ShowCollections,
    ShowIndexes(String),
    Describe(String),
    Insert {
        coll: String,
        docs: Vec<Document>,
    },
    Import {
        coll: String,
        path: String,
    },
    Export {
        coll: String,
        path: String,
    },
    Update {
        coll: String,
        sets: Vec<(String, Value)>,
        filter: Filter,
    },
    Delete {
        coll: String,
        filter: Option<Filter>,
    },
    Select {
        coll: String,
        items: Vec<String>,
        req: SearchRequest,
        explain: bool,
    },
    /// `known` is `Some` when the cue has unknown (null) components: completion.
    Hopfield {
        coll: String,
        field: String,
        vector: Vec<f32>,
        known: Option<Vec<bool>>,
        opts: Vec<(String, Value)>,
    },
    Flush(String),
    Vacuum(String),
    Backup(String),
    Restore {
        from: String,
        into: String,
    },
    Check,
    Stats(String),
}

enum Fail {
    Parse(ParserError),
    Db(Error),
}

impl From<ParserError> for Fail {
    fn from(e: ParserError) -> Self {
        Fail::Parse(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Db(e)
    }
}

type PResult<T> = std::result::Result<T, Fail>;

struct Grammar<'p, 'a> {
    p: &'p mut Parser<'a>,
    params: &'p [Value],
    next_param: &'p mut usize,
}

impl Grammar<'_, '_> {
    fn err<T>(&self, what: &str) -> PResult<T> {
        Err(Fail::Parse(
            self.p
                .expected::<T>(what, self.p.peek_token())
                .err()
                .unwrap_or_else(|| ParserError::ParserError(format!("expected {what}"))),
        ))
    }

    /// Consume the word `w` (case-insensitive) if it is next.
    fn word(&mut self, w: &str) -> bool {
        if let Token::Word(x) = &self.p.peek_token().token {
            if x.value.eq_ignore_ascii_case(w) && x.quote_style.is_none() {
                self.p.next_token();
                return true;
            }
        }
        false
    }

    fn expect_word(&mut self, w: &str) -> PResult<()> {
        if self.word(w) {
            Ok(())
        } else {
            self.err(&w.to_uppercase())
        }
    }

    fn name(&mut self) -> PResult<String> {
        Ok(self.p.parse_identifier()?.value)
    }

    fn string(&mut self) -> PResult<String> {
        match self.literal()? {
            Value::Text(s) => Ok(s),
            _ => {
                self.p.prev_token();
                self.err("a string literal")
            }
        }
    }

    /// A literal (string, number, TRUE/FALSE, NULL, `-number`) or a bound parameter.
    fn literal(&mut self) -> PResult<Value> {
        let e = self.p.parse_expr()?;
        self.value_of(&e)
    }

    fn value_of(&mut self, e: &Expr) -> PResult<Value> {
        Ok(match e {
            Expr::Value(v) => match &v.value {
                SqlValue::SingleQuotedString(s) | SqlValue::DoubleQuotedString(s) => Value::Text(s.clone()),
                SqlValue::Number(n, _) => number(n)?,
                SqlValue::Boolean(b) => Value::Integer(i64::from(*b)),
                SqlValue::Null => Value::Null,
                SqlValue::Placeholder(ph) => self.param(ph)?,
                other => return Err(Error::invalid(format!("unsupported literal {other}")).into()),
            },
            Expr::UnaryOp { op: UnaryOperator::Minus, expr } => match self.value_of(expr)? {
                Value::Integer(i) => Value::Integer(-i),
                Value::Real(r) => Value::Real(-r),
                _ => return Err(Error::invalid("'-' applies to numbers only").into()),
            },
            Expr::Nested(inner) => self.value_of(inner)?,
            other => return Err(Error::invalid(format!("expected a literal value, found `{other}`")).into()),
        })
    }

    fn param(&mut self, ph: &str) -> PResult<Value> {
        let i = if ph == "?" {
            *self.next_param += 1;
            *self.next_param
        } else {
            ph.trim_start_matches(['?', '$', ':'])
                .parse::<usize>()
                .map_err(|_| Error::invalid(format!("bad parameter '{ph}': use ? or ?N")))?
        };
        self.params.get(i.wrapping_sub(1)).cloned().ok_or_else(|| {
            Error::invalid(format!("parameter {i} is not bound ({} given)", self.params.len())).into()
        })
    }

    /// `( key = literal, ... )` after WITH, or nothing.
    fn with_options(&mut self) -> PResult<Vec<(String, Value)>> {
        let mut out = Vec::new();
        if !self.word("with") {
            return Ok(out);
        }
        self.p.expect_token(&Token::LParen)?;
        loop {
            let k = self.name()?.to_lowercase();
            self.p.expect_token(&Token::Eq)?;
            let v = self.literal()?;
            out.push((k, v));
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        self.p.expect_token(&Token::RParen)?;
        Ok(out)
    }

    fn statement(&mut self) -> PResult<Statement> {
        if self.word("create") {
            if self.word("collection") {
                return self.create_collection();
            }
            if self.word("index") {
                self.expect_word("on")?;
                let coll = self.name()?;
                self.expect_word("using")?;
                let kind = self.name()?.to_lowercase();
                let field = if self.p.consume_token(&Token::LParen) {
                    let f = self.name()?;
                    self.p.expect_token(&Token::RParen)?;
                    Some(f)
                } else {
                    None
                };
                let opts = self.with_options()?;
                return Ok(Statement::CreateIndex { coll, kind, field, opts });
            }
            return self.err("COLLECTION or INDEX after CREATE");
        }
        if self.word("drop") {
            if self.word("collection") {
                return Ok(Statement::DropCollection(self.name()?));
            }
            if self.word("index") {
                let mut kind = self.name()?.to_lowercase();
                if self.p.consume_token(&Token::Colon) {
                    kind = format!("{kind}:{}", self.name()?);
                }
                self.expect_word("on")?;
                return Ok(Statement::DropIndex { coll: self.name()?, kind });
            }
            return self.err("COLLECTION or INDEX after DROP");
        }
        if self.word("show") {
            if self.word("collections") || self.word("tables") {
                return Ok(Statement::ShowCollections);
            }
            if self.word("indexes") {
                self.expect_word("on")?;
                return Ok(Statement::ShowIndexes(self.name()?));
            }
            return self.err("COLLECTIONS or INDEXES after SHOW");
        }
        if self.word("describe") || self.word("desc") {
            return Ok(Statement::Describe(self.name()?));
        }
        if self.word("insert") {
            self.expect_word("into")?;
            return self.insert();
        }
        if self.word("backup") {
            self.expect_word("to")?;
            return Ok(Statement::Backup(self.string()?));
        }
        if self.word("restore") {
            self.expect_word("from")?;
            let from = self.string()?;
            self.expect_word("into")?;
            return Ok(Statement::Restore { from, into: self.string()? });
        }
        if self.word("import") {
            self.expect_word("into")?;
            let coll = self.name()?;
            self.expect_word("from")?;
            return Ok(Statement::Import { coll, path: self.string()? });
        }
        if self.word("export") {
            let coll = self.name()?;
            self.expect_word("to")?;
            return Ok(Statement::Export { coll, path: self.string()? });
        }
        if self.word("update") {
            return self.update();
        }
        if self.word("delete") {
            self.expect_word("from")?;
            let coll = self.name()?;
            let filter = if self.word("where") { Some(self.filter()?) } else { None };
            return Ok(Statement::Delete { coll, filter });
        }
        if self.word("explain") {
            self.expect_word("select")?;
            return self.select(true);
        }
        if self.word("select") {
            return self.select(false);
        }
        if self.word("hopfield") {
            let coll = self.name()?;
            self.expect_word("using")?;
            let field = self.name()?;
            let cue: Vec<Option<f32>> = serde_json::from_str(&self.string()?).map_err(|e| {
                Error::invalid(format!(
                    "expected a JSON array of numbers (null = unknown) like '[0.1, null]': {e}"
                ))
            })?;
            let known = cue.iter().any(Option::is_none).then(|| cue.iter().map(Option::is_some).collect());
            let vector = cue.iter().map(|v| v.unwrap_or(0.0)).collect();
            let opts = self.with_options()?;
            return Ok(Statement::Hopfield { coll, field, vector, known, opts });
        }
        if self.word("flush") {
            return Ok(Statement::Flush(self.name()?));
        }
        if self.word("vacuum") {
            return Ok(Statement::Vacuum(self.name()?));
        }
        if self.word("check") {
            return Ok(Statement::Check);
        }
        if self.word("stats") {
            return Ok(Statement::Stats(self.name()?));
        }
        self.err(
            "a statement (CREATE, DROP, SHOW, DESCRIBE, INSERT, IMPORT, UPDATE, DELETE, SELECT, \
             EXPLAIN, HOPFIELD, FLUSH, VACUUM, CHECK, STATS)",
        )
    }

    fn create_collection(&mut self) -> PResult<Statement> {
        let name = self.name()?;
        let mut columns = Vec::new();
        if self.p.consume_token(&Token::LParen) && !self.p.consume_token(&Token::RParen) {
            loop {
                let col = self.name()?;
                let ty = self.name()?.to_lowercase();
                let ty = match ty.as_str() {
                    "text" | "string" | "varchar" => ColumnType::Text,
                    "integer" | "int" | "bigint" => ColumnType::Integer,
                    "real" | "float" | "double" => ColumnType::Real,
                    "json" => ColumnType::Json,
                    other => {
                        return Err(Error::invalid(format!(
                            "unknown column type '{other}': use TEXT, INTEGER, REAL or JSON"
                        ))
                        .into())
                    }
                };
                columns.push((col, ty));
                if !self.p.consume_token(&Token::Comma) {
                    break;
                }
            }
            self.p.expect_token(&Token::RParen)?;
        }
        let opts = self.with_options()?;
        Ok(Statement::CreateCollection(collection_spec(&name, &columns, &opts)?))
    }

    fn insert(&mut self) -> PResult<Statement> {
        let coll = self.name()?;
        self.p.expect_token(&Token::LParen)?;
        let cols = self.p.parse_comma_separated(|p| Ok(p.parse_identifier()?.value))?;
        self.p.expect_token(&Token::RParen)?;
        self.expect_word("values")?;
        let mut docs = Vec::new();
        loop {
            self.p.expect_token(&Token::LParen)?;
            let exprs = self.p.parse_comma_separated(Parser::parse_expr)?;
            self.p.expect_token(&Token::RParen)?;
            if exprs.len() != cols.len() {
                return Err(
                    Error::invalid(format!("{} columns but {} values", cols.len(), exprs.len())).into()
                );
            }
            let mut vals = Vec::with_capacity(exprs.len());
            for e in &exprs {
                vals.push(self.value_of(e)?);
            }
            docs.push(document(&cols, vals)?);
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        Ok(Statement::Insert { coll, docs })
    }

    fn update(&mut self) -> PResult<Statement> {
        let coll = self.name()?;
        self.expect_word("set")?;
        let mut sets = Vec::new();
        loop {
            let c = self.name()?;
            self.p.expect_token(&Token::Eq)?;
            sets.push((c, self.literal()?));
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        self.expect_word("where")?;
        Ok(Statement::Update { coll, sets, filter: self.filter()? })
    }

    fn select(&mut self, explain: bool) -> PResult<Statement> {
        let mut items = Vec::new();
        loop {
            if self.p.consume_token(&Token::Mul) {
                items.push("*".to_string());
            } else {
                items.push(self.name()?);
            }
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        self.expect_word("from")?;
        let coll = self.name()?;
        let filter = if self.word("where") { Some(self.filter()?) } else { None };
        let query = if self.word("order") {
            self.expect_word("by")?;
            self.score_fn()?
        } else {
            return Err(Error::invalid(
                "SELECT needs ORDER BY a score function: maxsim('…'), dense(field, '…'), bm25('…') or hybrid('…')",
            )
            .into());
        };
        let mut req = SearchRequest::new(query);
        if self.word("limit") {
            match self.literal()? {
                Value::Integer(n) if n >= 0 => req.limit = n as usize,
                _ => return Err(Error::invalid("LIMIT needs a non-negative integer").into()),
            }
        }
        req.filter = filter;
        let opts = self.with_options()?;
        search_options(&mut req, &opts)?;
        Ok(Statement::Select { coll, items, req, explain })
    }

    /// `maxsim(x)`, `dense(field, x)`, `bm25(text)`, `hybrid(text [, 'parts'])` where `x` is
    /// text to embed or a JSON vector / matrix.
    fn score_fn(&mut self) -> PResult<Query> {
        let f = self.name()?.to_lowercase();
        self.p.expect_token(&Token::LParen)?;
        let q = match f.as_str() {
            "maxsim" => {
                let arg = self.string()?;
                match matrix(&arg)? {
                    Some(tokens) => Query::MaxSim { tokens, mask: None },
                    None => Query::MaxSimText { text: arg },
                }
            }
            "dense" => {
                let field = self.name()?;
                self.p.expect_token(&Token::Comma)?;
                let arg = self.string()?;
                if arg.trim_start().starts_with('[') {
                    Query::Dense { field, vector: vector(&arg)? }
                } else {
                    Query::DenseText { field, text: arg }
                }
            }
            "bm25" => Query::Bm25 { text: self.string()? },
            "hybrid" => {
                let text = self.string()?;
                let parts =
                    if self.p.consume_token(&Token::Comma) { self.string()? } else { "bm25,maxsim".into() };
                let parts = parts
                    .split(',')
                    .map(|p| match p.trim().to_lowercase().as_str() {
                        "bm25" => Ok(Query::Bm25 { text: text.clone() }),
                        "maxsim" => Ok(Query::MaxSimText { text: text.clone() }),
                        other if other.starts_with("dense:") => {
                            Ok(Query::DenseText { field: other[6..].to_string(), text: text.clone() })
                        }
                        other => Err(Error::invalid(format!(
                            "unknown hybrid part '{other}': use bm25, maxsim or dense:<field>"
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Query::Hybrid { parts, fusion: Fusion::default() }
            }
            other => {
                return Err(Error::invalid(format!(
                    "unknown score function '{other}': use maxsim, dense, bm25 or hybrid"
                ))
                .into())
            }
        };
        self.p.expect_token(&Token::RParen)?;
        Ok(q)
    }

    fn filter(&mut self) -> PResult<Filter> {
        let e = self.p.parse_expr()?;
        self.filter_of(&e)
    }

    fn column(e: &Expr) -> Option<String> {
        match e {
            Expr::Identifier(i) => Some(i.value.clone()),
            Expr::Nested(inner) => Self::column(inner),
            _ => None,
        }
    }

    fn filter_of(&mut self, e: &Expr) -> PResult<Filter> {
        let not_allowed = |e: &Expr| -> Fail {
            Error::invalid(format!(
                "not allowed in WHERE: `{e}` (use columns, literals, = != < <= > >=, AND, OR, NOT, IN, LIKE, \
                 BETWEEN, IS [NOT] NULL)"
            ))
            .into()
        };
        Ok(match e {
            Expr::Nested(inner) => self.filter_of(inner)?,
            Expr::UnaryOp { op: UnaryOperator::Not, expr } => self.filter_of(expr)?.not(),
            Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
                self.filter_of(left)?.and(self.filter_of(right)?)
            }
            Expr::BinaryOp { left, op: BinaryOperator::Or, right } => {
                self.filter_of(left)?.or(self.filter_of(right)?)
            }
            Expr::BinaryOp { left, op, right } => {
                let (col, val, flipped) = match (Self::column(left), Self::column(right)) {
                    (Some(c), None) => (c, self.value_of(right)?, false),
                    (None, Some(c)) => (c, self.value_of(left)?, true),
                    _ => return Err(not_allowed(e)),
                };
                use BinaryOperator as B;
                match (op, flipped) {
                    (B::Eq, _) => Filter::eq(col, val),
                    (B::NotEq, _) => Filter::ne(col, val),
                    (B::Lt, false) | (B::Gt, true) => Filter::lt(col, val),
                    (B::LtEq, false) | (B::GtEq, true) => Filter::lte(col, val),
                    (B::Gt, false) | (B::Lt, true) => Filter::gt(col, val),
                    (B::GtEq, false) | (B::LtEq, true) => Filter::gte(col, val),
                    _ => return Err(not_allowed(e)),
                }
            }
            Expr::In { expr, target: InTarget::List(list), negated, global: false } => {
                let col = Self::column(expr).ok_or_else(|| not_allowed(e))?;
                let mut vals = Vec::with_capacity(list.len());
                for v in list {
                    vals.push(self.value_of(v)?);
                }
                let f = Filter::is_in(col, vals);
                if *negated {
                    f.not()
                } else {
                    f
                }
            }
            Expr::Like { negated, any: false, expr, pattern, escape_char: None } => {
                let col = Self::column(expr).ok_or_else(|| not_allowed(e))?;
                let Value::Text(pat) = self.value_of(pattern)? else { return Err(not_allowed(e)) };
                let f = Filter::like(col, pat);
                if *negated {
                    f.not()
                } else {
                    f
                }
            }
            Expr::Between { expr, negated, low, high } => {
                let col = Self::column(expr).ok_or_else(|| not_allowed(e))?;
                let f = Filter::between(col, self.value_of(low)?, self.value_of(high)?);
                if *negated {
                    f.not()
                } else {
                    f
                }
            }
            Expr::IsNull(inner) => Filter::is_null(Self::column(inner).ok_or_else(|| not_allowed(e))?),
            Expr::IsNotNull(inner) => {
                Filter::is_null(Self::column(inner).ok_or_else(|| not_allowed(e))?).not()
            }
            other => return Err(not_allowed(other)),
        })
    }
}

fn number(n: &str) -> Result<Value> {
    if let Ok(i) = n.parse::<i64>() {
        return Ok(Value::Integer(i));
    }
    n.parse::<f64>().map(Value::Real).map_err(|_| Error::invalid(format!("bad number '{n}'")))
}

/// A JSON array of numbers.
fn vector(s: &str) -> Result<Vec<f32>> {
    serde_json::from_str::<Vec<f32>>(s)
        .map_err(|e| Error::invalid(format!("expected a JSON array of numbers like '[0.1, 0.2]': {e}")))
}

/// A JSON matrix (array of arrays) flattened row-major, or `None` when `s` is not JSON
/// (then it is text to embed).
fn matrix(s: &str) -> Result<Option<Vec<f32>>> {
    if !s.trim_start().starts_with('[') {
        return Ok(None);
    }
    let rows: Vec<Vec<f32>> = serde_json::from_str(s).map_err(|e| {
        Error::invalid(format!("expected a JSON matrix like '[[0.1, 0.2], [0.3, 0.4]]': {e}"))
    })?;
    Ok(Some(rows.into_iter().flatten().collect()))
}

/// The value of a JSON field for column `column` of `spec`: numbers, strings, booleans
/// (as 0/1) and null map to scalars; arrays and objects stay JSON for a JSON column and
/// become their JSON text otherwise.
pub(crate) fn json_value(spec: &CollectionSpec, column: &str, v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Integer(i64::from(b)),
        serde_json::Value::Number(n) => {
            n.as_i64().map_or_else(|| Value::Real(n.as_f64().unwrap_or(0.0)), Value::Integer)
        }
        serde_json::Value::String(s) => Value::Text(s),
        other @ (serde_json::Value::Array(_) | serde_json::Value::Object(_)) => {
            if spec.columns.iter().any(|c| c.name == column && c.ty == ColumnType::Json) {
                Value::Json(other)
            } else {
                Value::Text(other.to_string())
            }
        }
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(r) => Some(r.to_string()),
        _ => None,
    }
}

fn collection_spec(
    name: &str,
    columns: &[(String, ColumnType)],
    opts: &[(String, Value)],
) -> Result<CollectionSpec> {
    let get = |k: &str| opts.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    for (k, _) in opts {
        if ![
            "dim",
            "pooled",
            "dtype",
            "model",
            "embed",
            "id",
            "query_maxlen",
            "doc_maxlen",
            "token_pool_factor",
        ]
        .contains(&k.as_str())
        {
            return Err(Error::invalid(format!(
                "unknown collection option '{k}': use dim, pooled, dtype, model, embed, id, query_maxlen, \
                 doc_maxlen, token_pool_factor"
            )));
        }
    }
    let int = |k: &str| -> Result<Option<usize>> {
        match get(k) {
            None => Ok(None),
            Some(Value::Integer(i)) if i >= 0 => Ok(Some(i as usize)),
            Some(_) => Err(Error::invalid(format!("option {k} needs a non-negative integer"))),
        }
    };
    let model = get("model").and_then(|v| text_of(&v));
    let mut vectors = VectorSpec::new(int("dim")?.unwrap_or(0));
    if let Some(p) = get("pooled").and_then(|v| text_of(&v)) {
        for part in p.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (n, d) = part.split_once(':').unwrap_or((part, "0"));
            let d: usize = d
                .trim()
                .parse()
                .map_err(|_| Error::invalid(format!("bad pooled vector '{part}': use name:dim")))?;
            vectors = vectors.pooled(n.trim(), d);
        }
    }
    if let Some(d) = get("dtype").and_then(|v| text_of(&v)) {
        vectors = vectors.dtype(Dtype::parse(&d)?);
    }
    let mut spec = CollectionSpec::new(name, vectors);
    for (c, ty) in columns {
        spec = spec.column(c.clone(), *ty);
    }
    match get("id").and_then(|v| text_of(&v)).map(|s| s.to_lowercase()).as_deref() {
        None | Some("text") => {}
        Some("integer") | Some("int") => spec = spec.id_type(IdType::Integer),
        Some(other) => return Err(Error::invalid(format!("id type '{other}': use text or integer"))),
    }
    if let Some(m) = model {
        let embed = get("embed").and_then(|v| text_of(&v)).unwrap_or_default();
        let cols: Vec<&str> = embed.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let mut e = crate::EmbeddingSpec::new(m, &cols);
        e.query_maxlen = int("query_maxlen")?;
        e.doc_maxlen = int("doc_maxlen")?;
        if let Some(f) = int("token_pool_factor")? {
            e.token_pool_factor = f;
        }
        spec = spec.embedding(e);
    }
    Ok(spec)
}

/// A document from INSERT columns: `id`, `tokens` (JSON matrix), pooled vectors (JSON
/// arrays; recognised later against the spec), scalar columns.
fn document(cols: &[String], vals: Vec<Value>) -> Result<Document> {
    let mut id: Option<DocId> = None;
    let mut d = Document::new(DocId::Int(0));
    for (c, v) in cols.iter().zip(vals) {
        if c.eq_ignore_ascii_case("id") {
            id = Some(match v {
                Value::Integer(i) => DocId::Int(i),
                Value::Text(s) => DocId::from(s.as_str()),
                _ => return Err(Error::invalid("id must be text or an integer")),
            });
        } else if c.eq_ignore_ascii_case("tokens") {
            let Value::Text(s) = v else { return Err(Error::invalid("tokens must be a JSON matrix string")) };
            d.tokens = matrix(&s)?
                .ok_or_else(|| Error::invalid("tokens must be a JSON matrix like '[[0.1, 0.2]]'"))?;
        } else {
            d.values.push((c.clone(), v));
        }
    }
    d.id = id.ok_or_else(|| Error::invalid("INSERT needs an id column"))?;
    Ok(d)
}

fn opt_f32(opts: &[(String, Value)], k: &str, default: f32) -> Result<f32> {
    match opts.iter().find(|(n, _)| n == k).map(|(_, v)| v) {
        None => Ok(default),
        Some(Value::Integer(i)) => Ok(*i as f32),
        Some(Value::Real(r)) => Ok(*r as f32),
        Some(_) => Err(Error::invalid(format!("option {k} needs a number"))),
    }
}

fn opt_usize(opts: &[(String, Value)], k: &str) -> Result<Option<usize>> {
    match opts.iter().find(|(n, _)| n == k).map(|(_, v)| v) {
        None => Ok(None),
        Some(Value::Integer(i)) if *i >= 0 => Ok(Some(*i as usize)),
        Some(_) => Err(Error::invalid(format!("option {k} needs a non-negative integer"))),
    }
}

/// `SELECT … WITH (plan = 'exact'|'plaid'|'muvera'|'hnsw'|'auto', candidates = n, ef = n,
/// refine = 1, beta = x, alpha = x, top_k = n, refine_masks = 1)`.
fn search_options(req: &mut SearchRequest, opts: &[(String, Value)]) -> Result<()> {
    check_options(
        opts,
        &["plan", "candidates", "ef", "refine", "beta", "alpha", "top_k", "refine_masks", "fusion_k"],
        "SELECT",
    )?;
    let get = |k: &str| opts.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(p) = get("plan").and_then(|v| text_of(&v)) {
        req.plan = match p.to_lowercase().as_str() {
            "auto" => crate::Plan::Auto,
            "exact" => crate::Plan::Exact,
            "plaid" => crate::Plan::Plaid,
            "muvera" => crate::Plan::Muvera,
            "hnsw" => crate::Plan::Hnsw,
            other => {
                return Err(Error::invalid(format!(
                    "unknown plan '{other}': use auto, exact, plaid, muvera or hnsw"
                )))
            }
        };
    }
    req.candidates = opt_usize(opts, "candidates")?;
    req.ef = opt_usize(opts, "ef")?;
    if let Some(k) = get("fusion_k") {
        let Query::Hybrid { fusion, .. } = &mut req.query else {
            return Err(Error::invalid("fusion_k applies to hybrid(…) only"));
        };
        *fusion = Fusion::Rrf { k: opt_f32(&[("k".into(), k)], "k", 60.0)? };
    }
    let refine_knobs = ["beta", "alpha", "top_k", "refine_masks"].iter().any(|k| get(k).is_some());
    if matches!(get("refine"), Some(Value::Integer(i)) if i != 0) || refine_knobs {
        let d = crate::Refine::default();
        req.refine = Some(crate::Refine {
            beta: opt_f32(opts, "beta", d.beta)?,
            alpha: opt_f32(opts, "alpha", d.alpha)?,
            top_k: opt_usize(opts, "top_k")?.unwrap_or(d.top_k),
            refine_mask_tokens: matches!(get("refine_masks"), Some(Value::Integer(i)) if i != 0),
        });
    }
    Ok(())
}

fn check_options(opts: &[(String, Value)], allowed: &[&str], what: &str) -> Result<()> {
    match opts.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => {
            Err(Error::invalid(format!("unknown option '{k}' for {what}: use {}", allowed.join(", "))))
        }
        None => Ok(()),
    }
}

fn table(columns: &[&str], rows: Vec<Vec<Value>>) -> StatementResult {
    StatementResult { columns: columns.iter().map(|s| (*s).to_string()).collect(), rows, message: None }
}

fn int(v: u64) -> Value {
    Value::Integer(v as i64)
}

impl Session {
    fn run(&self, s: Statement, progress: Progress<'_>) -> Result<StatementResult> {
        let db = &self.db;
        Ok(match s {
            Statement::CreateCollection(spec) => {
                db.create_collection(&spec)?;
                StatementResult::message(format!("created collection {}", spec.name))
            }
            Statement::DropCollection(n) => {
                db.drop_collection(&n)?;
                StatementResult::message(format!("dropped collection {n}"))
            }
            Statement::CreateIndex { coll, kind, field, opts } => {
                self.create_index(&coll, &kind, field, &opts)?
            }
            Statement::DropIndex { coll, kind } => {
                if !db.drop_index(&coll, &kind)? {
                    return Err(Error::NotFound { kind: "index", name: format!("{kind} on '{coll}'") });
                }
                StatementResult::message(format!("dropped index {kind} on {coll}"))
            }
            Statement::ShowCollections => {
                let mut rows = Vec::new();
                for c in db.collections()? {
                    let st = db.stats(&c.name)?;
                    rows.push(vec![
                        Value::Text(c.name.clone()),
                        int(st.docs),
                        int(st.segments),
                        int(st.segment_bytes),
                    ]);
                }
                table(&["collection", "docs", "segments", "bytes"], rows)
            }
            Statement::ShowIndexes(coll) => {
                let rows = db
                    .indexes(&coll)?
                    .into_iter()
                    .map(|i| {
                        vec![
                            Value::Text(i.kind),
                            Value::Text(i.params),
                            int(i.segments_indexed),
                            int(i.segments),
                            int(i.bytes),
                        ]
                    })
                    .collect();
                table(&["kind", "params", "segments_indexed", "segments", "bytes"], rows)
            }
            Statement::Describe(n) => {
                let c = db.describe(&n)?;
                let mut rows = vec![
                    vec![Value::Text("id".into()), Value::Text(format!("{:?}", c.id_type).to_uppercase())],
                    vec![
                        Value::Text("tokens".into()),
                        Value::Text(format!("{:?}[{}]", c.vectors.dtype, c.vectors.token_dim)),
                    ],
                ];
                for p in &c.vectors.pooled {
                    rows.push(vec![
                        Value::Text(p.name.clone()),
                        Value::Text(format!("{:?}[{}] (pooled)", c.vectors.dtype, p.dim)),
                    ]);
                }
                for col in &c.columns {
                    rows.push(vec![
                        Value::Text(col.name.clone()),
                        Value::Text(format!("{:?}", col.ty).to_uppercase()),
                    ]);
                }
                if let Some(e) = &c.embedding {
                    rows.push(vec![
                        Value::Text("embedding".into()),
                        Value::Text(format!("model {} over ({})", e.model, e.text_columns.join(", "))),
                    ]);
                }
                table(&["name", "type"], rows)
            }
            Statement::Insert { coll, docs } => {
                let n = docs.len();
                let docs = self.complete_docs(&coll, docs)?;
                if docs.iter().all(|d| d.tokens.is_empty()) && db.describe(&coll)?.embedding.is_some() {
                    #[cfg(feature = "embed")]
                    db.insert_text(&coll, &docs)?;
                    #[cfg(not(feature = "embed"))]
                    return Err(Error::NotAvailable(
                        "inserting text to embed needs the `embed` cargo feature".into(),
                    ));
                } else {
                    db.insert(&coll, &docs)?;
                }
                StatementResult::message(format!("inserted {n} document{}", if n == 1 { "" } else { "s" }))
            }
            Statement::Import { coll, path } => {
                if is_parquet(&path)? {
                    return self.import_parquet(&coll, &path, progress);
                }
                let n = self.import(&coll, &path, progress)?;
                StatementResult::message(format!("imported {n} documents into {coll}"))
            }
            Statement::Export { coll, path } => self.export(&coll, &path, progress)?,
            Statement::Update { coll, sets, filter } => {
                let n = db.update_where(&coll, &filter, &sets)?;
                StatementResult::message(format!("updated {n} document{}", if n == 1 { "" } else { "s" }))
            }
            Statement::Delete { coll, filter } => {
                let n = match filter {
                    Some(f) => db.delete_where(&coll, &f)?,
                    None => {
                        db.delete_where(&coll, &Filter::Not(Box::new(Filter::is_null(crate::ID_COLUMN))))?
                    }
                };
                StatementResult::message(format!("deleted {n} document{}", if n == 1 { "" } else { "s" }))
            }
            Statement::Select { coll, items, req, explain } => self.select(&coll, &items, &req, explain)?,
            Statement::Hopfield { coll, field, vector, known, opts } => {
                check_options(&opts, &["beta", "steps", "top_k"], "HOPFIELD")?;
                let o = HopfieldLookup {
                    params: HopfieldParams {
                        beta: opt_f32(&opts, "beta", HopfieldParams::default().beta)?,
                        steps: opt_usize(&opts, "steps")?.unwrap_or(1),
                        eps: HopfieldParams::default().eps,
                    },
                    top_k: opt_usize(&opts, "top_k")?.unwrap_or(100),
                    filter: None,
                };
                let r = match &known {
                    None => db.hopfield_recall(&coll, &field, &vector, &o)?,
                    Some(k) => db.hopfield_complete(&coll, &field, &vector, k, &o)?,
                };
                let state = serde_json::to_string(&r.state).unwrap_or_default();
                let rows = r
                    .weights
                    .into_iter()
                    .take(20)
                    .map(|(id, w)| vec![Value::Text(id.to_string()), Value::Real(f64::from(w))])
                    .collect();
                StatementResult {
                    columns: vec!["id".into(), "weight".into()],
                    rows,
                    message: Some(format!(
                        "energy {:.6}, steps {}, {}; state {state}",
                        r.energy,
                        r.steps,
                        if r.metastable {
                            "metastable (no memory holds half the weight)"
                        } else {
                            "retrieved"
                        }
                    )),
                }
            }
            Statement::Flush(c) => {
                let did = db.flush(&c)?;
                StatementResult::message(if did {
                    format!("flushed {c}")
                } else {
                    format!("{c}: nothing pending")
                })
            }
            Statement::Vacuum(c) => {
                let did = db.compact(&c)?;
                StatementResult::message(if did {
                    format!("compacted {c}")
                } else {
                    format!("{c}: nothing to compact")
                })
            }
            Statement::Backup(path) => {
                let r = db.backup(&path, |done, _| progress((done >> 20) as usize, "MiB"))?;
                StatementResult::message(format!(
                    "backed up {} files ({:.1} MiB) to {path}: {:.1} MiB compressed, {:.1} s",
                    r.files,
                    r.bytes as f64 / 1048576.0,
                    r.archive_bytes as f64 / 1048576.0,
                    r.seconds
                ))
            }
            Statement::Restore { from, into } => {
                let r = Database::restore(&from, &into, |done, _| progress((done >> 20) as usize, "MiB"))?;
                StatementResult::message(format!(
                    "restored {} files ({:.1} MiB) from {from} into {into}, every checksum verified, {:.1} s",
                    r.files,
                    r.bytes as f64 / 1048576.0,
                    r.seconds
                ))
            }
            Statement::Check => {
                let r = db.check()?;
                let rows = r.problems.iter().map(|p| vec![Value::Text(p.clone())]).collect();
                StatementResult {
                    columns: vec!["problem".into()],
                    rows,
                    message: Some(format!(
                        "checked {} segments ({} bytes): {}",
                        r.segments_checked,
                        r.bytes_checked,
                        if r.problems.is_empty() {
                            "ok".to_string()
                        } else {
                            format!("{} problems", r.problems.len())
                        }
                    )),
                }
            }
            Statement::Stats(c) => {
                let s = db.stats(&c)?;
                let rows = [
                    ("docs", s.docs),
                    ("pending_docs", s.pending_docs),
                    ("pending_tokens", s.pending_tokens),
                    ("segments", s.segments),
                    ("segment_tokens", s.segment_tokens),
                    ("tombstones", s.tombstones),
                    ("segment_bytes", s.segment_bytes),
                ]
                .into_iter()
                .map(|(k, v)| vec![Value::Text(k.into()), int(v)])
                .collect();
                table(&["stat", "value"], rows)
            }
        })
    }

    /// Split INSERT values into scalar columns and pooled vectors (by the spec's names).
    fn complete_docs(&self, coll: &str, docs: Vec<Document>) -> Result<Vec<Document>> {
        let spec = self.db.describe(coll)?;
        docs.into_iter()
            .map(|mut d| {
                let mut values = Vec::new();
                for (k, v) in std::mem::take(&mut d.values) {
                    match spec.vectors.pooled.iter().find(|p| p.name.eq_ignore_ascii_case(&k)) {
                        Some(p) => {
                            let Value::Text(s) = v else {
                                return Err(Error::invalid(format!("{k} must be a JSON array string")));
                            };
                            d.pooled.push((p.name.clone(), vector(&s)?));
                        }
                        None => values.push((k, v)),
                    }
                }
                d.values = values;
                Ok(d)
            })
            .collect()
    }

    fn create_index(
        &self,
        coll: &str,
        kind: &str,
        field: Option<String>,
        opts: &[(String, Value)],
    ) -> Result<StatementResult> {
        let db = &self.db;
        let info = match kind {
            "plaid" => {
                check_options(opts, &["centroids", "nbits", "sample", "seed"], "a PLAID index")?;
                let d = PlaidOptions::default();
                db.create_plaid_index(
                    coll,
                    PlaidOptions {
                        centroids: opt_usize(opts, "centroids")?.or(d.centroids),
                        nbits: opt_usize(opts, "nbits")?.map_or(d.nbits, |b| b as u8),
                        sample: opt_usize(opts, "sample")?.unwrap_or(d.sample),
                        seed: opt_usize(opts, "seed")?.map_or(d.seed, |s| s as u64),
                        ..d
                    },
                )?
            }
            "hnsw" => {
                check_options(opts, &["m", "ef_construction", "ef_search"], "an HNSW index")?;
                let field =
                    field.ok_or_else(|| Error::invalid("HNSW needs a pooled vector: USING hnsw(field)"))?;
                let d = HnswParams::default();
                db.create_hnsw_index(
                    coll,
                    &field,
                    HnswParams {
                        m: opt_usize(opts, "m")?.unwrap_or(d.m),
                        ef_construction: opt_usize(opts, "ef_construction")?.unwrap_or(d.ef_construction),
                        ef_search: opt_usize(opts, "ef_search")?.unwrap_or(d.ef_search),
                    },
                )?
            }
            "muvera" => {
                check_options(opts, &["repetitions", "simhash_bits", "seed"], "a MUVERA index")?;
                let d = MuveraOptions::default();
                db.create_muvera_index(
                    coll,
                    MuveraOptions {
                        repetitions: opt_usize(opts, "repetitions")?.unwrap_or(d.repetitions),
                        simhash_bits: opt_usize(opts, "simhash_bits")?.unwrap_or(d.simhash_bits),
                        seed: opt_usize(opts, "seed")?.map_or(d.seed, |s| s as u64),
                        ..d
                    },
                )?
            }
            #[cfg(feature = "fulltext")]
            "fulltext" => {
                check_options(opts, &["columns", "language", "stopwords", "lowercase"], "a full-text index")?;
                let d = crate::FullTextOptions::default();
                let get = |k: &str| opts.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let flag = |k: &str, def: bool| match get(k) {
                    Some(Value::Integer(i)) => i != 0,
                    _ => def,
                };
                let mut columns: Vec<String> = field.into_iter().collect();
                if let Some(Value::Text(c)) = get("columns") {
                    columns.extend(c.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
                }
                db.create_fulltext_index(
                    coll,
                    crate::FullTextOptions {
                        columns,
                        language: get("language").and_then(|v| text_of(&v)).unwrap_or(d.language),
                        stopwords: flag("stopwords", d.stopwords),
                        lowercase: flag("lowercase", d.lowercase),
                    },
                )?
            }
            other => {
                return Err(Error::invalid(format!(
                    "unknown index type '{other}': use plaid, hnsw(field), muvera or fulltext"
                )))
            }
        };
        Ok(StatementResult::message(format!(
            "created index {} on {coll} ({} segments, {} bytes)",
            info.kind, info.segments_indexed, info.bytes
        )))
    }

    fn select(
        &self,
        coll: &str,
        items: &[String],
        req: &SearchRequest,
        explain: bool,
    ) -> Result<StatementResult> {
        let out = self.db.search_explained(coll, req)?;
        if explain {
            let mut rows = vec![vec![
                Value::Text("plan".into()),
                Value::Text(format!("{:?}", out.plan)),
                int(out.docs),
                Value::Real(0.0),
            ]];
            for s in &out.stages {
                rows.push(vec![
                    Value::Text("stage".into()),
                    Value::Text(s.name.into()),
                    int(s.docs),
                    Value::Real(s.micros as f64 / 1e3),
                ]);
            }
            return Ok(table(&["step", "name", "docs", "ms"], rows));
        }
        let spec = self.db.describe(coll)?;
        let mut columns = Vec::new();
        for it in items {
            if it == "*" {
                columns.push("id".to_string());
                columns.push("score".to_string());
                columns.extend(spec.columns.iter().map(|c| c.name.clone()));
            } else if it.eq_ignore_ascii_case("id") || it.eq_ignore_ascii_case("score") {
                columns.push(it.to_lowercase());
            } else {
                let c =
                    spec.columns.iter().find(|c| c.name.eq_ignore_ascii_case(it)).ok_or_else(|| {
                        Error::NotFound { kind: "column", name: format!("{it} in '{coll}'") }
                    })?;
                columns.push(c.name.clone());
            }
        }
        let rows = out
            .hits
            .into_iter()
            .map(|h| {
                columns
                    .iter()
                    .map(|c| match c.as_str() {
                        "id" => match &h.id {
                            DocId::Int(i) => Value::Integer(*i),
                            other => Value::Text(other.to_string()),
                        },
                        "score" => Value::Real(f64::from(h.score)),
                        name => {
                            h.values.iter().find(|(k, _)| k == name).map_or(Value::Null, |(_, v)| v.clone())
                        }
                    })
                    .collect()
            })
            .collect();
        Ok(StatementResult { columns, rows, message: None })
    }

    /// `EXPORT coll TO 'file.parquet'`: every live document as Apache Parquet.
    fn export(&self, coll: &str, path: &str, progress: Progress<'_>) -> Result<StatementResult> {
        let ext = std::path::Path::new(path).extension().and_then(|e| e.to_str()).unwrap_or("");
        if !ext.eq_ignore_ascii_case("parquet") {
            return Err(Error::invalid(format!(
                "EXPORT writes Apache Parquet: name the file *.parquet (got '{path}')"
            )));
        }
        #[cfg(feature = "parquet")]
        {
            let r = self.db.export_parquet(coll, path, |done, _| progress(done as usize, "documents"))?;
            Ok(StatementResult::message(format!(
                "exported {} documents ({} token vectors) from {coll} to {path}: {:.1} MiB, {} row group{}, {:.1} s",
                r.docs,
                r.tokens,
                r.file_bytes as f64 / 1048576.0,
                r.row_groups,
                if r.row_groups == 1 { "" } else { "s" },
                r.seconds
            )))
        }
        #[cfg(not(feature = "parquet"))]
        {
            let _ = (coll, progress);
            Err(Error::NotAvailable("EXPORT needs the `parquet` cargo feature".into()))
        }
    }

    /// `IMPORT INTO coll FROM 'file.parquet'` (recognised by its magic bytes).
    fn import_parquet(&self, coll: &str, path: &str, progress: Progress<'_>) -> Result<StatementResult> {
        #[cfg(feature = "parquet")]
        {
            let r = self.db.import_parquet(coll, path, |phase, done, _| {
                progress(
                    done as usize,
                    if phase == "checked" { "documents checked" } else { "documents imported" },
                )
            })?;
            let mut msg = format!(
                "imported {} documents ({}) into {coll}{}, {:.1} s",
                r.docs,
                if r.embedded {
                    "embedded from text".to_string()
                } else {
                    format!("{} token vectors", r.tokens)
                },
                if r.created { " (created from the spec in the file)" } else { "" },
                r.seconds
            );
            if !r.ignored.is_empty() {
                msg.push_str(&format!("; ignored columns the collection lacks: {}", r.ignored.join(", ")));
            }
            Ok(StatementResult::message(msg))
        }
        #[cfg(not(feature = "parquet"))]
        {
            let _ = (coll, progress);
            Err(Error::NotAvailable(format!(
                "{path} is a Parquet file: importing it needs the `parquet` cargo feature"
            )))
        }
    }

    /// `IMPORT INTO coll FROM 'file.jsonl' | 'file.csv'`: one document per line / row, with
    /// `id`, scalar columns, and either `tokens` (+ pooled vectors) as JSON or — for a
    /// collection with a model — the text columns to embed.
    fn import(&self, coll: &str, path: &str, progress: Progress<'_>) -> Result<usize> {
        let p = std::path::Path::new(path);
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count();
            Error::invalid(format!(
                "{path}: line {line} is not valid UTF-8 (byte {at}); convert the file to UTF-8"
            ))
        })?;
        let spec = self.db.describe(coll)?;
        let csv = p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let mut docs = Vec::new();
        if csv {
            let mut lines = text.lines();
            let header = split_csv(lines.next().unwrap_or(""));
            for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let fields = split_csv(line);
                if fields.len() != header.len() {
                    return Err(Error::invalid(format!(
                        "{path}: line {} has {} fields, the header {}",
                        n + 2,
                        fields.len(),
                        header.len()
                    )));
                }
                let vals: Vec<Value> = header
                    .iter()
                    .zip(&fields)
                    .map(|(h, f)| {
                        match spec.columns.iter().find(|c| c.name.eq_ignore_ascii_case(h)).map(|c| c.ty) {
                            Some(ColumnType::Integer) => {
                                f.parse().map(Value::Integer).unwrap_or(Value::Text(f.clone()))
                            }
                            Some(ColumnType::Real) => {
                                f.parse().map(Value::Real).unwrap_or(Value::Text(f.clone()))
                            }
                            _ if h.eq_ignore_ascii_case("id") && spec.id_type == IdType::Integer => {
                                f.parse().map(Value::Integer).unwrap_or(Value::Text(f.clone()))
                            }
                            _ => Value::Text(f.clone()),
                        }
                    })
                    .collect();
                docs.push(document(&header, vals)?);
            }
        } else {
            for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
                    .map_err(|e| Error::invalid(format!("{path}: line {}: {e}", n + 1)))?;
                let (mut cols, mut vals) = (Vec::new(), Vec::new());
                for (k, v) in obj {
                    let k = if k == "_id" { "id".to_string() } else { k };
                    let val = json_value(&spec, &k, v);
                    if spec.columns.iter().any(|c| c.name.eq_ignore_ascii_case(&k))
                        || ["id", "tokens"].contains(&k.as_str())
                        || spec.vectors.pooled.iter().any(|p| p.name == k)
                    {
                        cols.push(k);
                        vals.push(val);
                    }
                }
                docs.push(document(&cols, vals)?);
            }
        }
        let docs = self.complete_docs(coll, docs)?;
        let total = docs.len();
        if spec.embedding.is_some() && docs.iter().all(|d| d.tokens.is_empty()) {
            #[cfg(feature = "embed")]
            return self.db.import_text(coll, docs, |n| progress(n, "documents"));
            #[cfg(not(feature = "embed"))]
            return Err(Error::NotAvailable(
                "importing text to embed needs the `embed` cargo feature".into(),
            ));
        }
        for (i, chunk) in docs.chunks(1000).enumerate() {
            self.db.insert(coll, chunk)?;
            progress((i * 1000 + chunk.len()).min(total), "documents");
        }
        Ok(total)
    }
}

/// True when `path` starts with the Parquet magic `PAR1`.
fn is_parquet(path: &str) -> Result<bool> {
    use std::io::Read;
    let p = std::path::Path::new(path);
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
    Ok(f.read_exact(&mut magic).is_ok() && &magic == b"PAR1")
}

/// One CSV record (RFC 4180 quoting: `"a, b"`, `""` for a quote).
fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_follow_rfc_4180_quoting() {
        assert_eq!(split_csv(r#"a,"b, c","say ""hi""",,x"#), ["a", "b, c", "say \"hi\"", "", "x"]);
    }

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
