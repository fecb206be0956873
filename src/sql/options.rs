//! Values and options: literals, `WITH (…)` option lists, collection specs.

use super::*;
pub(super) use crate::db::import::{document_from_fields, matrix, vector};

pub(super) fn number(n: &str) -> Result<Value> {
    if let Ok(i) = n.parse::<i64>() {
        return Ok(Value::Integer(i));
    }
    n.parse::<f64>().map(Value::Real).map_err(|_| Error::invalid(format!("bad number '{n}'")))
}

pub(super) fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Real(r) => Some(r.to_string()),
        _ => None,
    }
}

pub(super) fn collection_spec(
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
            "recall",
            "tokens",
            "codec_centroids",
        ]
        .contains(&k.as_str())
        {
            return Err(Error::invalid(format!(
                "unknown collection option '{k}': use dim, pooled, dtype, model, embed, id, query_maxlen, \
                 doc_maxlen, token_pool_factor, recall, tokens, codec_centroids"
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
    if get("dim").is_none() && model.is_none() {
        return Err(Error::invalid(format!(
            "CREATE COLLECTION {name} needs its token dimension, WITH (dim = 128), or a model that sets it, \
             WITH (model = 'all-MiniLM-L6-v2', embed = 'text')"
        )));
    }
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
    if let Some(t) = get("tokens").and_then(|v| text_of(&v)) {
        vectors = vectors.with_token_storage(&t)?;
    }
    if let Some(k) = int("codec_centroids")? {
        vectors = vectors.codec_centroids(k);
    }
    let mut spec = CollectionSpec::new(name, vectors);
    if let Some(v) = get("recall") {
        spec.recall_target = Some(opt_f32(&[("recall".into(), v)], "recall", 0.0)?);
    }
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

pub(super) fn opt_f32(opts: &[(String, Value)], k: &str, default: f32) -> Result<f32> {
    match opts.iter().find(|(n, _)| n == k).map(|(_, v)| v) {
        None => Ok(default),
        Some(Value::Integer(i)) => Ok(*i as f32),
        Some(Value::Real(r)) => Ok(*r as f32),
        Some(_) => Err(Error::invalid(format!("option {k} needs a number"))),
    }
}

pub(super) fn opt_usize(opts: &[(String, Value)], k: &str) -> Result<Option<usize>> {
    match opts.iter().find(|(n, _)| n == k).map(|(_, v)| v) {
        None => Ok(None),
        Some(Value::Integer(i)) if *i >= 0 => Ok(Some(*i as usize)),
        Some(_) => Err(Error::invalid(format!("option {k} needs a non-negative integer"))),
    }
}

/// `SELECT … WITH (plan = 'exact'|'plaid'|'muvera'|'hnsw'|'auto', candidates = n, ef = n,
/// refine = 1, beta = x, alpha = x, top_k = n, refine_masks = 1)`.
pub(super) fn search_options(req: &mut SearchRequest, opts: &[(String, Value)]) -> Result<()> {
    check_options(
        opts,
        &[
            "plan",
            "candidates",
            "ef",
            "recall",
            "refine",
            "beta",
            "alpha",
            "top_k",
            "refine_masks",
            "fusion_k",
        ],
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
    if get("recall").is_some() {
        let r = opt_f32(opts, "recall", 0.0)?;
        if !(r > 0.0 && r <= 1.0) {
            return Err(Error::invalid("recall must be in (0, 1], e.g. WITH (recall = 0.99)"));
        }
        req.recall = Some(r);
    }
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

pub(super) fn check_options(opts: &[(String, Value)], allowed: &[&str], what: &str) -> Result<()> {
    match opts.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => {
            Err(Error::invalid(format!("unknown option '{k}' for {what}: use {}", allowed.join(", "))))
        }
        None => Ok(()),
    }
}

pub(super) fn table(columns: &[&str], rows: Vec<Vec<Value>>) -> StatementResult {
    StatementResult {
        columns: columns.iter().map(|s| (*s).to_string()).collect(),
        rows,
        message: None,
        status: None,
        changes: None,
    }
}

pub(super) fn int(v: u64) -> Value {
    Value::Integer(v as i64)
}
