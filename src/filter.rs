//! Typed filters over a collection's scalar columns.
//!
//! A [`Filter`] is a syntax tree; it reaches SQLite only re-rendered by [`Filter::to_sql`],
//! with every column checked against the collection's schema and every literal bound as a
//! parameter. User text is never concatenated into SQL.
//!
//! ```
//! use maxsimdb::Filter;
//! let f = Filter::gte("year", 2020).and(Filter::eq("lang", "en").or(Filter::is_null("lang")));
//! # let _ = f;
//! ```

use crate::types::{CollectionSpec, ColumnType, DocId, Value};
use crate::{Error, Result};

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// The pseudo-column naming the document id in filters.
pub const ID_COLUMN: &str = "id";

/// A boolean expression over scalar columns (and the pseudo-column `id`).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `column op value`
    Cmp {
        /// Column name.
        column: String,
        /// Operator.
        op: CmpOp,
        /// Literal.
        value: Value,
    },
    /// `column [NOT] IN (values)`
    In {
        /// Column name.
        column: String,
        /// Literals.
        values: Vec<Value>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `column [NOT] LIKE pattern` (SQLite LIKE: `%`, `_`, ASCII case-insensitive).
    Like {
        /// Column name.
        column: String,
        /// Pattern.
        pattern: String,
        /// `NOT LIKE`.
        negated: bool,
    },
    /// `column [NOT] BETWEEN low AND high`
    Between {
        /// Column name.
        column: String,
        /// Lower bound (inclusive).
        low: Value,
        /// Upper bound (inclusive).
        high: Value,
        /// `NOT BETWEEN`.
        negated: bool,
    },
    /// `column IS [NOT] NULL`
    IsNull {
        /// Column name.
        column: String,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// All must hold.
    And(Vec<Filter>),
    /// At least one must hold.
    Or(Vec<Filter>),
    /// Negation.
    Not(Box<Filter>),
}

macro_rules! cmp_ctor {
    ($($(#[$m:meta])* $name:ident => $op:ident),*) => {$(
        $(#[$m])*
        #[must_use]
        pub fn $name(column: impl Into<String>, value: impl Into<Value>) -> Self {
            Filter::Cmp { column: column.into(), op: CmpOp::$op, value: value.into() }
        }
    )*};
}

impl Filter {
    cmp_ctor!(
        /// `column = value`
        eq => Eq,
        /// `column != value`
        ne => Ne,
        /// `column < value`
        lt => Lt,
        /// `column <= value`
        lte => Le,
        /// `column > value`
        gt => Gt,
        /// `column >= value`
        gte => Ge
    );

    /// `column IN (values)`
    #[must_use]
    pub fn is_in(column: impl Into<String>, values: Vec<Value>) -> Self {
        Filter::In { column: column.into(), values, negated: false }
    }

    /// `column LIKE pattern`
    #[must_use]
    pub fn like(column: impl Into<String>, pattern: impl Into<String>) -> Self {
        Filter::Like { column: column.into(), pattern: pattern.into(), negated: false }
    }

    /// `column BETWEEN low AND high`
    #[must_use]
    pub fn between(column: impl Into<String>, low: impl Into<Value>, high: impl Into<Value>) -> Self {
        Filter::Between { column: column.into(), low: low.into(), high: high.into(), negated: false }
    }

    /// `column IS NULL`
    #[must_use]
    pub fn is_null(column: impl Into<String>) -> Self {
        Filter::IsNull { column: column.into(), negated: false }
    }

    /// `id IN (ids)`
    #[must_use]
    pub fn ids(ids: &[DocId]) -> Self {
        let values = ids
            .iter()
            .map(|i| match i {
                DocId::Int(v) => Value::Integer(*v),
                DocId::Text(s) => Value::Text(s.clone()),
            })
            .collect();
        Filter::is_in(ID_COLUMN, values)
    }

    /// `self AND other`
    #[must_use]
    pub fn and(self, other: Filter) -> Self {
        match self {
            Filter::And(mut v) => {
                v.push(other);
                Filter::And(v)
            }
            f => Filter::And(vec![f, other]),
        }
    }

    /// `self OR other`
    #[must_use]
    pub fn or(self, other: Filter) -> Self {
        match self {
            Filter::Or(mut v) => {
                v.push(other);
                Filter::Or(v)
            }
            f => Filter::Or(vec![f, other]),
        }
    }

    /// `NOT self`
    #[must_use]
    #[expect(clippy::should_implement_trait, reason = "builder reads as SQL")]
    pub fn not(self) -> Self {
        Filter::Not(Box::new(self))
    }

    /// Render as an SQL boolean expression over the collection's docs table, appending
    /// literals to `params` in placeholder order.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown column; [`Error::InvalidArgument`] for an empty
    /// `IN` list, an empty `AND`/`OR`, or a value that does not fit the column type.
    pub fn to_sql(&self, spec: &CollectionSpec, params: &mut Vec<Value>) -> Result<String> {
        Ok(match self {
            Filter::Cmp { column, op, value } => {
                let c = column_sql(spec, column, Some(value))?;
                params.push(value.clone());
                format!("{c} {} ?", op.sql())
            }
            Filter::In { column, values, negated } => {
                if values.is_empty() {
                    return Err(Error::invalid("IN needs at least one value"));
                }
                let c = column_sql(spec, column, values.first())?;
                for v in values {
                    column_sql(spec, column, Some(v))?;
                }
                // A long list of ids or texts is bound as one JSON array (SQLite allows
                // 32,766 parameters per statement); REAL and JSON values keep one
                // parameter each, so that they compare exactly as bound.
                let as_array = values.len() > IN_LIST_INLINE_MAX
                    && values.iter().all(|v| matches!(v, Value::Integer(_) | Value::Text(_) | Value::Null));
                if as_array {
                    let arr: Vec<serde_json::Value> = values
                        .iter()
                        .map(|v| match v {
                            Value::Integer(i) => serde_json::Value::from(*i),
                            Value::Text(t) => serde_json::Value::from(t.as_str()),
                            _ => serde_json::Value::Null,
                        })
                        .collect();
                    params.push(Value::Text(serde_json::Value::Array(arr).to_string()));
                    format!("{c} {}IN (SELECT value FROM json_each(?))", not(*negated))
                } else {
                    if values.len() > IN_LIST_PARAMS_MAX {
                        return Err(Error::invalid(format!(
                            "IN lists of REAL or JSON values hold at most {IN_LIST_PARAMS_MAX} values (got {}); \
                             integer and text lists have no limit",
                            values.len()
                        )));
                    }
                    params.extend(values.iter().cloned());
                    let marks = vec!["?"; values.len()].join(", ");
                    format!("{c} {}IN ({marks})", not(*negated))
                }
            }
            Filter::Like { column, pattern, negated } => {
                let c = column_sql(spec, column, None)?;
                params.push(Value::Text(pattern.clone()));
                format!("{c} {}LIKE ?", not(*negated))
            }
            Filter::Between { column, low, high, negated } => {
                let c = column_sql(spec, column, Some(low))?;
                column_sql(spec, column, Some(high))?;
                params.push(low.clone());
                params.push(high.clone());
                format!("{c} {}BETWEEN ? AND ?", not(*negated))
            }
            Filter::IsNull { column, negated } => {
                let c = column_sql(spec, column, None)?;
                format!("{c} IS {}NULL", not(*negated))
            }
            Filter::And(fs) => join(spec, fs, " AND ", params)?,
            Filter::Or(fs) => join(spec, fs, " OR ", params)?,
            Filter::Not(f) => format!("NOT ({})", f.to_sql(spec, params)?),
        })
    }
}

/// `IN` lists up to this long are bound value by value.
const IN_LIST_INLINE_MAX: usize = 256;

/// At most this many REAL or JSON values in one `IN` list (SQLite's parameter limit,
/// less room for the rest of the filter).
const IN_LIST_PARAMS_MAX: usize = 30_000;

fn not(negated: bool) -> &'static str {
    if negated {
        "NOT "
    } else {
        ""
    }
}

fn join(spec: &CollectionSpec, fs: &[Filter], sep: &str, params: &mut Vec<Value>) -> Result<String> {
    if fs.is_empty() {
        return Err(Error::invalid("AND/OR needs at least one operand"));
    }
    let parts: Result<Vec<String>> =
        fs.iter().map(|f| Ok(format!("({})", f.to_sql(spec, params)?))).collect();
    Ok(parts?.join(sep))
}

/// The quoted SQL name of `column` (a column of `spec`, or `id`) to order a listing by.
pub(crate) fn order_column_sql(spec: &CollectionSpec, column: &str) -> Result<String> {
    column_sql(spec, column, None)
}

/// The quoted SQL name of `column`, after checking it exists and that `value` (if any)
/// is comparable with its type.
fn column_sql(spec: &CollectionSpec, column: &str, value: Option<&Value>) -> Result<String> {
    if column.eq_ignore_ascii_case(ID_COLUMN) {
        return Ok("\"_id\"".to_string());
    }
    let def = spec.column_def(column)?;
    let ok = matches!(
        (def.ty, value),
        (_, None | Some(Value::Null))
            | (ColumnType::Integer | ColumnType::Real, Some(Value::Integer(_) | Value::Real(_)))
            | (ColumnType::Text | ColumnType::Json, Some(Value::Text(_)))
            | (ColumnType::Json, Some(Value::Json(_)))
    );
    if !ok {
        return Err(Error::invalid(format!(
            "cannot compare column '{}' ({}) with {}",
            def.name,
            format!("{:?}", def.ty).to_uppercase(),
            value.map_or("NULL".into(), Value::sql_literal)
        )));
    }
    // Column names are validated identifiers ([A-Za-z][A-Za-z0-9_]*), so quoting is safe.
    Ok(format!("\"{}\"", def.name))
}
