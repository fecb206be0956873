//! The grammar: sqlparser's tokenizer and expression parser driven statement by statement.

use super::*;

pub(super) enum Fail {
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

pub(super) type PResult<T> = std::result::Result<T, Fail>;

pub(super) struct Grammar<'p, 'a> {
    pub(super) p: &'p mut Parser<'a>,
    pub(super) params: &'p [Value],
    /// The parameter index of each placeholder in text order ([`super::param_indices`]);
    /// empty where no parameters are bound (filters).
    pub(super) indices: &'p [usize],
    /// Placeholders consumed so far.
    pub(super) next_param: &'p mut usize,
}

impl Grammar<'_, '_> {
    pub(super) fn err<T>(&self, what: &str) -> PResult<T> {
        Err(Fail::Parse(
            self.p
                .expected::<T>(what, self.p.peek_token())
                .err()
                .unwrap_or_else(|| ParserError::ParserError(format!("expected {what}"))),
        ))
    }

    /// Consume the word `w` (case-insensitive) if it is next.
    pub(super) fn word(&mut self, w: &str) -> bool {
        if let Token::Word(x) = &self.p.peek_token().token {
            if x.value.eq_ignore_ascii_case(w) && x.quote_style.is_none() {
                self.p.next_token();
                return true;
            }
        }
        false
    }

    pub(super) fn expect_word(&mut self, w: &str) -> PResult<()> {
        if self.word(w) {
            Ok(())
        } else {
            self.err(&w.to_uppercase())
        }
    }

    pub(super) fn name(&mut self) -> PResult<String> {
        Ok(self.p.parse_identifier()?.value)
    }

    pub(super) fn string(&mut self) -> PResult<String> {
        match self.literal()? {
            Value::Text(s) => Ok(s),
            _ => {
                self.p.prev_token();
                self.err("a string literal")
            }
        }
    }

    /// A literal (string, number, TRUE/FALSE, NULL, `-number`) or a bound parameter.
    pub(super) fn literal(&mut self) -> PResult<Value> {
        let e = self.p.parse_expr()?;
        self.value_of(&e)
    }

    pub(super) fn value_of(&mut self, e: &Expr) -> PResult<Value> {
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

    pub(super) fn param(&mut self, ph: &str) -> PResult<Value> {
        let k = *self.next_param;
        *self.next_param += 1;
        let i = match self.indices.get(k) {
            Some(&i) => i,
            None if ph == "?" => k + 1,
            None => ph
                .trim_start_matches(['?', '$', ':'])
                .parse::<usize>()
                .map_err(|_| Error::invalid(format!("bad parameter '{ph}': use ?, ?N or :name")))?,
        };
        self.params.get(i.wrapping_sub(1)).cloned().ok_or_else(|| {
            Error::invalid(format!("parameter {i} is not bound ({} given)", self.params.len())).into()
        })
    }

    /// `( key = literal, ... )` after WITH, or nothing.
    pub(super) fn with_options(&mut self) -> PResult<Vec<(String, Value)>> {
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

    pub(super) fn statement(&mut self) -> PResult<Statement> {
        if self.word("create") {
            if self.word("collection") {
                return self.create_collection();
            }
            if self.word("index") {
                let if_not_exists = self.if_not_exists()?;
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
                return Ok(Statement::CreateIndex { coll, kind, field, opts, if_not_exists });
            }
            return self.err("COLLECTION or INDEX after CREATE");
        }
        if self.word("drop") {
            if self.word("collection") {
                let if_exists = self.if_exists()?;
                return Ok(Statement::DropCollection { name: self.name()?, if_exists });
            }
            if self.word("index") {
                let if_exists = self.if_exists()?;
                let mut kind = self.name()?.to_lowercase();
                if self.p.consume_token(&Token::Colon) {
                    kind = format!("{kind}:{}", self.name()?);
                }
                self.expect_word("on")?;
                return Ok(Statement::DropIndex { coll: self.name()?, kind, if_exists });
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
            let replace = self.word("or");
            if replace {
                self.expect_word("replace")?;
            }
            self.expect_word("into")?;
            return self.insert(replace);
        }
        if self.word("evaluate") {
            let coll = self.name()?;
            let opts = self.with_options()?;
            return Ok(Statement::Evaluate { coll, opts });
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
            let path = self.string()?;
            let on_conflict = if self.word("on") {
                self.expect_word("conflict")?;
                if self.word("skip") {
                    crate::OnConflict::Skip
                } else if self.word("replace") {
                    crate::OnConflict::Replace
                } else {
                    return self.err("SKIP or REPLACE after ON CONFLICT");
                }
            } else {
                crate::OnConflict::Error
            };
            return Ok(Statement::Import { coll, path, on_conflict });
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

    /// `IF NOT EXISTS` (true) or nothing (false).
    pub(super) fn if_not_exists(&mut self) -> PResult<bool> {
        if !self.word("if") {
            return Ok(false);
        }
        self.expect_word("not")?;
        self.expect_word("exists")?;
        Ok(true)
    }

    /// `IF EXISTS` (true) or nothing (false).
    pub(super) fn if_exists(&mut self) -> PResult<bool> {
        if !self.word("if") {
            return Ok(false);
        }
        self.expect_word("exists")?;
        Ok(true)
    }

    pub(super) fn create_collection(&mut self) -> PResult<Statement> {
        let if_not_exists = self.if_not_exists()?;
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
        Ok(Statement::CreateCollection { spec: collection_spec(&name, &columns, &opts)?, if_not_exists })
    }

    pub(super) fn insert(&mut self, replace: bool) -> PResult<Statement> {
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
            docs.push(cols.iter().cloned().zip(vals).collect());
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        Ok(Statement::Insert { coll, rows: docs, replace })
    }

    pub(super) fn update(&mut self) -> PResult<Statement> {
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
        let filter = if self.word("where") { Some(self.filter()?) } else { None };
        Ok(Statement::Update { coll, sets, filter })
    }

    pub(super) fn select(&mut self, explain: bool) -> PResult<Statement> {
        let mut items = Vec::new();
        let mut count = false;
        loop {
            if self.p.consume_token(&Token::Mul) {
                items.push("*".to_string());
            } else {
                let name = self.name()?;
                if name.eq_ignore_ascii_case("count") && self.p.consume_token(&Token::LParen) {
                    self.p.expect_token(&Token::Mul)?;
                    self.p.expect_token(&Token::RParen)?;
                    count = true;
                } else {
                    items.push(name);
                }
            }
            if !self.p.consume_token(&Token::Comma) {
                break;
            }
        }
        self.expect_word("from")?;
        let coll = self.name()?;
        let filter = if self.word("where") { Some(self.filter()?) } else { None };
        if count {
            if !items.is_empty() || explain {
                return Err(
                    Error::invalid("COUNT(*) is selected alone: SELECT COUNT(*) FROM c [WHERE …]").into()
                );
            }
            return Ok(Statement::Count { coll, filter });
        }
        // ORDER BY a score function (a search) or a column (a listing), or no order.
        let mut order: Option<(String, bool)> = None;
        let mut query = None;
        if self.word("order") {
            self.expect_word("by")?;
            let name = self.name()?;
            if self.p.peek_token().token == Token::LParen {
                query = Some(self.score_fn_named(&name)?);
            } else {
                let desc = if self.word("desc") {
                    true
                } else {
                    self.word("asc");
                    false
                };
                order = Some((name, desc));
            }
        }
        let count_of = |p: &mut Self, what: &str| -> PResult<usize> {
            match p.literal()? {
                Value::Integer(n) if n >= 0 => Ok(n as usize),
                _ => Err(Error::invalid(format!("{what} needs a non-negative integer")).into()),
            }
        };
        let (mut limit, mut offset) = (None, 0);
        if self.word("limit") {
            limit = Some(count_of(self, "LIMIT")?);
            if self.word("offset") {
                offset = count_of(self, "OFFSET")?;
            }
        }
        let Some(query) = query else {
            if explain {
                return Err(Error::invalid(
                    "EXPLAIN explains searches: SELECT … ORDER BY maxsim('…'), dense(field, '…'), bm25('…') or hybrid('…')",
                )
                .into());
            }
            if self.word("with") {
                return Err(Error::invalid(
                    "search options (WITH …) need ORDER BY a score function: maxsim('…'), dense(field, '…'), bm25('…') or hybrid('…')",
                )
                .into());
            }
            let mut req = ListRequest::new().offset(offset);
            req.filter = filter;
            req.limit = limit;
            if let Some((col, desc)) = order {
                req = req.order_by(col, desc);
            }
            return Ok(Statement::List { coll, items, req });
        };
        let mut req = SearchRequest::new(query);
        if let Some(n) = limit {
            req.limit = n;
        }
        req.filter = filter;
        let opts = self.with_options()?;
        search_options(&mut req, &opts)?;
        Ok(Statement::Select { coll, items, req, offset, explain })
    }

    /// `maxsim(x)`, `dense(field, x)`, `bm25(text)`, `hybrid(text [, 'parts'])` where `x` is
    /// text to embed or a JSON vector / matrix.
    pub(super) fn score_fn_named(&mut self, f: &str) -> PResult<Query> {
        let f = f.to_lowercase();
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

    pub(super) fn filter(&mut self) -> PResult<Filter> {
        let e = self.p.parse_expr()?;
        self.filter_of(&e)
    }

    pub(super) fn column(e: &Expr) -> Option<String> {
        match e {
            Expr::Identifier(i) => Some(i.value.clone()),
            Expr::Nested(inner) => Self::column(inner),
            _ => None,
        }
    }

    pub(super) fn filter_of(&mut self, e: &Expr) -> PResult<Filter> {
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
