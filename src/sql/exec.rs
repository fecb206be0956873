//! Statement execution over [`Database`].

use super::*;

impl Session {
    pub(super) fn run(&self, s: Statement, progress: Progress<'_>) -> Result<StatementResult> {
        let db = &self.db;
        Ok(match s {
            // IF [NOT] EXISTS: the statement's own "already exists" / "not found" becomes
            // a message (no second look-up beforehand).
            Statement::CreateCollection { spec, if_not_exists } => match db.create_collection(&spec) {
                Err(Error::AlreadyExists { kind: "collection", .. }) if if_not_exists => {
                    StatementResult::message(format!("collection {} already exists (unchanged)", spec.name))
                }
                r => {
                    r?;
                    StatementResult::message(format!("created collection {}", spec.name))
                }
            },
            Statement::DropCollection { name, if_exists } => match db.drop_collection(&name) {
                Err(Error::NotFound { kind: "collection", .. }) if if_exists => {
                    StatementResult::message(format!("no collection {name} (nothing dropped)"))
                }
                r => {
                    r?;
                    StatementResult::message(format!("dropped collection {name}"))
                }
            },
            // An interrupted build (not ready) is resumed even with IF NOT EXISTS: only a
            // ready index is "already there".
            Statement::CreateIndex { coll, kind, field, opts, if_not_exists } => {
                match self.create_index(&coll, &kind, field, &opts, progress) {
                    Err(Error::AlreadyExists { kind: "index", name }) if if_not_exists => {
                        StatementResult::message(format!("index {name} on {coll} already exists (unchanged)"))
                    }
                    r => r?,
                }
            }
            Statement::DropIndex { coll, kind, if_exists } => {
                if !db.drop_index(&coll, &kind)? {
                    if if_exists {
                        return Ok(StatementResult::message(format!(
                            "no index {kind} on {coll} (nothing dropped)"
                        )));
                    }
                    return Err(Error::NotFound { kind: "index", name: kind });
                }
                StatementResult::message(format!("dropped index {kind} on {coll}"))
            }
            Statement::ShowCollections => self.show_collections()?,
            Statement::ShowIndexes(coll) => self.show_indexes(&coll)?,
            Statement::Describe(n) => self.describe(&n)?,
            Statement::Insert { coll, rows, replace } => self.insert(&coll, rows, replace)?,
            Statement::Import { coll, path, on_conflict } => {
                self.import(&coll, &path, on_conflict, progress)?
            }
            Statement::Export { coll, path } => self.export(&coll, &path, progress)?,
            Statement::Update { coll, sets, filter } => {
                let n = db.update_where(&coll, &filter.unwrap_or_else(every_document), &sets)?;
                StatementResult::changed(n, format!("updated {n} document{}", if n == 1 { "" } else { "s" }))
            }
            Statement::Delete { coll, filter } => self.delete(&coll, filter)?,
            Statement::Select { coll, items, req, offset, explain } => {
                self.select(&coll, &items, &req, offset, explain)?
            }
            Statement::List { coll, items, req } => self.list(&coll, &items, &req)?,
            Statement::Count { coll, filter } => {
                let n = db.count(&coll, filter.as_ref())?;
                table(COUNT_COLUMNS, vec![vec![int(n)]])
            }
            Statement::Hopfield { coll, field, vector, known, opts } => {
                self.hopfield(&coll, &field, &vector, known.as_deref(), &opts)?
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
            Statement::Backup(path) => self.backup(&path, progress)?,
            Statement::Restore { from, into } => self.restore(&from, &into, progress)?,
            Statement::Check => self.check()?,
            Statement::Stats(c) => self.stats(&c)?,
            Statement::Evaluate { coll, opts } => self.evaluate(&coll, &opts, progress)?,
        })
    }

    #[cfg(not(feature = "embed"))]
    fn evaluate(&self, _: &str, _: &[(String, Value)], _: Progress<'_>) -> Result<StatementResult> {
        Err(Error::NotAvailable("EVALUATE needs the `embed` cargo feature (its pooling operators)".into()))
    }

    /// `EVALUATE`: one row per candidate representation, the recommendation in the message.
    #[cfg(feature = "embed")]
    fn evaluate(
        &self,
        coll: &str,
        opts: &[(String, Value)],
        progress: Progress<'_>,
    ) -> Result<StatementResult> {
        check_options(
            opts,
            &[
                "queries",
                "qrels",
                "self_column",
                "sample",
                "query_sample",
                "seed",
                "permutations",
                "bootstrap",
                "alpha",
                "folds",
                "chart",
            ],
            "EVALUATE",
        )?;
        let text = |k: &str| -> Result<Option<String>> {
            match opts.iter().find(|(n, _)| n == k).map(|(_, v)| v) {
                None => Ok(None),
                Some(Value::Text(t)) => Ok(Some(t.clone())),
                Some(_) => Err(Error::invalid(format!("option {k} needs a string ('…')"))),
            }
        };
        let d = crate::EvalOptions::default();
        let o = crate::EvalOptions {
            queries: text("queries")?.map(Into::into),
            qrels: text("qrels")?.map(Into::into),
            self_column: text("self_column")?,
            sample_docs: opt_usize(opts, "sample")?,
            sample_queries: opt_usize(opts, "query_sample")?,
            seed: opt_usize(opts, "seed")?.map_or(d.seed, |s| s as u64),
            permutations: opt_usize(opts, "permutations")?.unwrap_or(d.permutations),
            bootstrap: opt_usize(opts, "bootstrap")?.unwrap_or(d.bootstrap),
            // Parsed as f32: round away the widening's tail (0.05, not 0.0500000007).
            alpha: (f64::from(opt_f32(opts, "alpha", d.alpha as f32)?) * 1e6).round() / 1e6,
            folds: opt_usize(opts, "folds")?.unwrap_or(d.folds),
        };
        if !(o.alpha > 0.0 && o.alpha < 1.0) {
            return Err(Error::invalid(format!(
                "option alpha is a significance level in (0, 1), got {}",
                o.alpha
            )));
        }
        let chart = text("chart")?;
        if chart.is_some() && !cfg!(feature = "charts") {
            return Err(Error::NotAvailable(
                "EVALUATE … WITH (chart = …) needs the `charts` cargo feature".into(),
            ));
        }
        let r = self.db.evaluate(coll, &o, &mut |step, done, _| progress(done, step))?;
        #[cfg(feature = "charts")]
        let chart_note = match &chart {
            Some(path) => {
                let title = format!(
                    "EVALUATE {coll}: quality against bytes ({} documents, {} queries)",
                    r.docs, r.queries
                );
                crate::storage::create_atomically(std::path::Path::new(path), |tmp| {
                    std::fs::write(tmp, r.chart_svg(&title)?).map_err(|e| Error::io(tmp, e))
                })?;
                format!(" Chart written to {path}.")
            }
            None => String::new(),
        };
        #[cfg(not(feature = "charts"))]
        let chart_note = String::new();
        let real = |x: f64| Value::Real((x * 1e4).round() / 1e4);
        let rows = r
            .rows
            .iter()
            .map(|row| {
                vec![
                    Value::Text(row.candidate.clone()),
                    Value::Text(row.kind.into()),
                    real(row.ndcg_at_10),
                    real(row.recall_at_100),
                    real(row.mrr_at_10),
                    Value::Integer(row.bytes_per_doc.round() as i64),
                    Value::Real((row.p50_ms * 1e3).round() / 1e3),
                    real(row.diff),
                    real(row.ci.0),
                    real(row.ci.1),
                    real(row.p_value),
                    real(row.p_holm),
                    Value::Text(row.verdict.into()),
                    row.statement.clone().map_or(Value::Null, Value::Text),
                ]
            })
            .collect();
        let mut out = table(EVALUATE_COLUMNS, rows);
        out.message = Some(format!(
            "{} documents, {} queries, {:.1} s; {}. Recommended: {}{chart_note} Notes: {}",
            r.docs,
            r.queries,
            r.seconds,
            r.judgments,
            r.recommendation,
            r.notes.join("; ")
        ));
        Ok(out)
    }

    fn show_collections(&self) -> Result<StatementResult> {
        let db = &self.db;
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
        Ok(table(SHOW_COLLECTIONS_COLUMNS, rows))
    }

    fn show_indexes(&self, coll: &str) -> Result<StatementResult> {
        let db = &self.db;
        // On a codes-only collection PLAID uses the collection's token codec, whatever
        // its own options say: show the codec's size beside them.
        let codec = db.token_codec(coll)?;
        let rows = db
            .indexes(coll)?
            .into_iter()
            .map(|i| {
                let params = match &codec {
                    Some(k) if i.kind == "plaid" => format!(
                        "{} (shares the collection's token codec: {} centroids, {} bits)",
                        i.params, k.centroids, k.nbits
                    ),
                    _ => i.params,
                };
                vec![
                    Value::Text(i.kind),
                    Value::Text(params),
                    int(i.segments_indexed),
                    int(i.segments),
                    int(i.bytes),
                    Value::Text(
                        if i.ready { "ready" } else { "building: CREATE INDEX again to resume" }.into(),
                    ),
                ]
            })
            .collect();
        Ok(table(SHOW_INDEXES_COLUMNS, rows))
    }

    fn describe(&self, n: &str) -> Result<StatementResult> {
        let db = &self.db;
        let c = db.describe(n)?;
        let mut rows = vec![
            vec![Value::Text("id".into()), Value::Text(format!("{:?}", c.id_type).to_uppercase())],
            vec![
                Value::Text("tokens".into()),
                Value::Text(match c.vectors.codes {
                    Some(_) => format!(
                        "{}[{}] (codes only)",
                        c.vectors.token_storage().to_uppercase(),
                        c.vectors.token_dim
                    ),
                    None => format!("{:?}[{}]", c.vectors.dtype, c.vectors.token_dim),
                }),
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
        Ok(table(DESCRIBE_COLUMNS, rows))
    }

    fn insert(&self, coll: &str, rows: Vec<Vec<(String, Value)>>, replace: bool) -> Result<StatementResult> {
        let db = &self.db;
        let n = rows.len();
        let spec = db.describe(coll)?;
        let docs = rows.into_iter().map(|f| document_from_fields(&spec, f)).collect::<Result<Vec<_>>>()?;
        if docs.iter().all(|d| d.tokens.is_empty()) && db.describe(coll)?.embedding.is_some() {
            if replace {
                return Err(Error::invalid(
                    "INSERT OR REPLACE takes token vectors; for text to embed, DELETE the documents first and INSERT them again",
                ));
            }
            #[cfg(feature = "embed")]
            db.insert_text(coll, &docs)?;
            #[cfg(not(feature = "embed"))]
            return Err(Error::NotAvailable(
                "inserting text to embed needs the `embed` cargo feature".into(),
            ));
        } else if replace {
            db.upsert(coll, &docs)?;
        } else {
            db.insert(coll, &docs)?;
        }
        let verb = if replace { "inserted or replaced" } else { "inserted" };
        Ok(StatementResult::changed(n, format!("{verb} {n} document{}", if n == 1 { "" } else { "s" })))
    }

    fn import(
        &self,
        coll: &str,
        path: &str,
        on_conflict: crate::OnConflict,
        progress: Progress<'_>,
    ) -> Result<StatementResult> {
        let db = &self.db;
        if crate::db::import::is_parquet(std::path::Path::new(path))? {
            if on_conflict != crate::OnConflict::Error {
                return Err(Error::invalid(
                    "ON CONFLICT applies to JSONL and CSV imports; a Parquet import refuses existing ids",
                ));
            }
            return self.import_parquet(coll, path, progress);
        }
        let (n, unknown) = db.import_file_report(coll, std::path::Path::new(path), on_conflict, |n| {
            progress(n, "documents")
        })?;
        if !unknown.is_empty() {
            let list: Vec<String> = unknown.iter().map(|(k, line)| format!("'{k}' (line {line})")).collect();
            return Ok(StatementResult::changed(
                n,
                format!(
                    "imported {n} documents into {coll}; fields naming nothing in {coll} were left out: {}",
                    list.join(", ")
                ),
            ));
        }
        Ok(StatementResult::changed(n, format!("imported {n} documents into {coll}")))
    }

    fn delete(&self, coll: &str, filter: Option<Filter>) -> Result<StatementResult> {
        let db = &self.db;
        let n = match filter {
            Some(f) => db.delete_where(coll, &f)?,
            None => db.delete_where(coll, &every_document())?,
        };
        Ok(StatementResult::changed(n, format!("deleted {n} document{}", if n == 1 { "" } else { "s" })))
    }

    fn hopfield(
        &self,
        coll: &str,
        field: &str,
        vector: &[f32],
        known: Option<&[bool]>,
        opts: &[(String, Value)],
    ) -> Result<StatementResult> {
        let db = &self.db;
        check_options(opts, &["beta", "steps", "top_k"], "HOPFIELD")?;
        let o = HopfieldLookup {
            params: HopfieldParams {
                beta: opt_f32(opts, "beta", HopfieldParams::default().beta)?,
                steps: opt_usize(opts, "steps")?.unwrap_or(1),
                eps: HopfieldParams::default().eps,
            },
            top_k: opt_usize(opts, "top_k")?.unwrap_or(100),
            filter: None,
        };
        let r = match known {
            None => db.hopfield_recall(coll, field, vector, &o)?,
            Some(k) => db.hopfield_complete(coll, field, vector, k, &o)?,
        };
        let state = serde_json::to_string(&r.state).unwrap_or_default();
        let rows = r
            .weights
            .into_iter()
            .take(20)
            .map(|(id, w)| vec![Value::Text(id.to_string()), Value::Real(f64::from(w))])
            .collect();
        Ok(StatementResult {
            status: None,
            changes: None,
            columns: strings(HOPFIELD_COLUMNS),
            rows,
            message: Some(format!(
                "energy {:.6}, steps {}, {}; state {state}",
                r.energy,
                r.steps,
                if r.metastable { "metastable (no memory holds half the weight)" } else { "retrieved" }
            )),
        })
    }

    fn backup(&self, path: &str, progress: Progress<'_>) -> Result<StatementResult> {
        let db = &self.db;
        let r = db.backup(path, |done, _| progress((done >> 20) as usize, "MiB"))?;
        Ok(StatementResult::message(format!(
            "backed up {} files ({:.1} MiB) to {path}: {:.1} MiB compressed, {:.1} s",
            r.files,
            r.bytes as f64 / 1048576.0,
            r.archive_bytes as f64 / 1048576.0,
            r.seconds
        )))
    }

    fn restore(&self, from: &str, into: &str, progress: Progress<'_>) -> Result<StatementResult> {
        let r = Database::restore(from, into, |done, _| progress((done >> 20) as usize, "MiB"))?;
        Ok(StatementResult::message(format!(
            "restored {} files ({:.1} MiB) from {from} into {into}, every checksum verified, {:.1} s",
            r.files,
            r.bytes as f64 / 1048576.0,
            r.seconds
        )))
    }

    fn check(&self) -> Result<StatementResult> {
        let db = &self.db;
        let r = db.check()?;
        let rows = r.problems.iter().map(|p| vec![Value::Text(p.clone())]).collect();
        Ok(StatementResult {
            status: (!r.problems.is_empty()).then_some(crate::ErrorCode::Corruption),
            changes: None,
            columns: strings(CHECK_COLUMNS),
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
        })
    }

    fn stats(&self, c: &str) -> Result<StatementResult> {
        let db = &self.db;
        let s = db.stats(c)?;
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
        .map(|(k, v)| (k.to_string(), v))
        .chain(s.index_bytes.iter().map(|(k, v)| (format!("index_bytes:{k}"), *v)))
        .chain(std::iter::once(("catalog_bytes".to_string(), s.catalog_bytes)))
        .map(|(k, v)| vec![Value::Text(k), int(v)])
        .collect();
        Ok(table(STATS_COLUMNS, rows))
    }

    fn create_index(
        &self,
        coll: &str,
        kind: &str,
        field: Option<String>,
        opts: &[(String, Value)],
        progress: Progress<'_>,
    ) -> Result<StatementResult> {
        let db = &self.db;
        let mut build = |spec: crate::IndexSpec| {
            db.create_index(coll, &spec, &mut |p| progress(p.tokens_done as usize, "tokens indexed"))
        };
        let info = match kind {
            "plaid" => {
                check_options(opts, &["centroids", "nbits", "sample", "seed"], "a PLAID index")?;
                let d = PlaidOptions::default();
                build(crate::IndexSpec::Plaid(PlaidOptions {
                    centroids: opt_usize(opts, "centroids")?.or(d.centroids),
                    nbits: opt_usize(opts, "nbits")?.map_or(d.nbits, |b| b as u8),
                    sample: opt_usize(opts, "sample")?.unwrap_or(d.sample),
                    seed: opt_usize(opts, "seed")?.map_or(d.seed, |s| s as u64),
                    ..d
                }))?
            }
            "hnsw" => {
                check_options(opts, &["m", "ef_construction", "ef_search"], "an HNSW index")?;
                let field =
                    field.ok_or_else(|| Error::invalid("HNSW needs a pooled vector: USING hnsw(field)"))?;
                let d = HnswParams::default();
                build(crate::IndexSpec::Hnsw {
                    field,
                    params: HnswParams {
                        m: opt_usize(opts, "m")?.unwrap_or(d.m),
                        ef_construction: opt_usize(opts, "ef_construction")?.unwrap_or(d.ef_construction),
                        ef_search: opt_usize(opts, "ef_search")?.unwrap_or(d.ef_search),
                    },
                })?
            }
            "muvera" => {
                check_options(opts, &["repetitions", "simhash_bits", "seed"], "a MUVERA index")?;
                let d = MuveraOptions::default();
                build(crate::IndexSpec::Muvera(MuveraOptions {
                    repetitions: opt_usize(opts, "repetitions")?.unwrap_or(d.repetitions),
                    simhash_bits: opt_usize(opts, "simhash_bits")?.unwrap_or(d.simhash_bits),
                    seed: opt_usize(opts, "seed")?.map_or(d.seed, |s| s as u64),
                    ..d
                }))?
            }
            #[cfg(feature = "fulltext")]
            "fulltext" => {
                check_options(
                    opts,
                    &["columns", "language", "stopwords", "lowercase", "stemmer", "k1", "b"],
                    "a full-text index",
                )?;
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
                        stemmer: get("stemmer").and_then(|v| text_of(&v)).unwrap_or(d.stemmer),
                        k1: opt_f32(opts, "k1", d.k1)?,
                        b: opt_f32(opts, "b", d.b)?,
                    },
                )?
            }
            other => {
                return Err(Error::invalid(format!(
                    "unknown index type '{other}': use plaid, hnsw(field), muvera or fulltext"
                )))
            }
        };
        Ok(StatementResult::message(if info.kind == "fulltext" {
            format!("created index fulltext on {coll} ({} bytes)", info.bytes)
        } else {
            format!(
                "created index {} on {coll} ({} segments, {} bytes of side files; no segment rewritten)",
                info.kind, info.segments_indexed, info.bytes
            )
        }))
    }

    fn select(
        &self,
        coll: &str,
        items: &[String],
        req: &SearchRequest,
        offset: usize,
        explain: bool,
    ) -> Result<StatementResult> {
        // OFFSET: the best `limit + offset`, the first `offset` dropped.
        let mut req = req.clone();
        req.limit = req.limit.saturating_add(offset);
        if req.limit > crate::MAX_LIMIT {
            return Err(Error::invalid(format!(
                "LIMIT + OFFSET of a search is at most {} (got {})",
                crate::MAX_LIMIT,
                req.limit
            )));
        }
        let mut out = self.db.search_explained(coll, &req)?;
        out.hits.drain(..offset.min(out.hits.len()));
        if explain {
            let mut rows = vec![vec![
                Value::Text("plan".into()),
                Value::Text(format!("{:?}", out.plan)),
                int(out.docs),
                Value::Real(0.0),
            ]];
            let spec = self.db.describe(coll)?;
            if spec.vectors.codes.is_some() {
                let what = format!(
                    "{} codes only: MaxSim runs on vectors decoded from the stored codes{}",
                    spec.vectors.token_storage(),
                    if out.plan == crate::Plan::Exact {
                        " (exact over the stored representation)"
                    } else {
                        ""
                    }
                );
                rows.push(vec![Value::Text("tokens".into()), Value::Text(what), int(0), Value::Real(0.0)]);
            }
            if let Some(r) = out.recall {
                let what = if r.used {
                    format!("target {:.3}, calibrated recall@10 {:.3}", r.target, r.calibrated)
                } else if r.calibrated >= r.target {
                    format!(
                        "target {:.3} reached (calibrated recall@10 {:.3}) but the index is not faster than exact here: exact",
                        r.target, r.calibrated
                    )
                } else {
                    format!(
                        "target {:.3} not reached by the index (best calibrated recall@10 {:.3}): exact",
                        r.target, r.calibrated
                    )
                };
                rows.push(vec![Value::Text("recall".into()), Value::Text(what), int(0), Value::Real(0.0)]);
            }
            for s in &out.stages {
                rows.push(vec![
                    Value::Text("stage".into()),
                    Value::Text(s.name.into()),
                    int(s.docs),
                    Value::Real(s.micros as f64 / 1e3),
                ]);
            }
            return Ok(table(EXPLAIN_COLUMNS, rows));
        }
        let spec = self.db.describe(coll)?;
        let columns = result_columns(&spec, items, true)?;
        Ok(StatementResult {
            rows: self.hit_rows(&spec, &columns, out.hits)?,
            columns,
            message: None,
            status: None,
            changes: None,
        })
    }

    /// `SELECT … FROM coll [WHERE …] [ORDER BY column [DESC]] [LIMIT n [OFFSET m]]`.
    fn list(&self, coll: &str, items: &[String], req: &crate::ListRequest) -> Result<StatementResult> {
        let spec = self.db.describe(coll)?;
        let columns = result_columns(&spec, items, false)?;
        let hits = self.db.list(coll, req)?;
        Ok(StatementResult {
            rows: self.hit_rows(&spec, &columns, hits)?,
            columns,
            message: None,
            status: None,
            changes: None,
        })
    }

    /// One result row per hit, in `columns` order; vector columns (`tokens`, pooled
    /// vectors) are read from the stored document as JSON arrays (f32 values, exact).
    fn hit_rows(
        &self,
        spec: &CollectionSpec,
        columns: &[String],
        hits: Vec<crate::Hit>,
    ) -> Result<Vec<Vec<Value>>> {
        let vectors = columns.iter().any(|c| is_vector_column(spec, c));
        hits.into_iter()
            .map(|h| {
                let stored = if vectors { self.db.get(&spec.name, &h.id)? } else { None };
                Ok(columns
                    .iter()
                    .map(|c| match c.as_str() {
                        "id" => match &h.id {
                            DocId::Int(i) => Value::Integer(*i),
                            other => Value::Text(other.to_string()),
                        },
                        "score" => Value::Real(f64::from(h.score)),
                        name if is_vector_column(spec, name) => {
                            stored.as_ref().map_or(Value::Null, |d| vector_value(spec, d, name))
                        }
                        name => {
                            h.values.iter().find(|(k, _)| k == name).map_or(Value::Null, |(_, v)| v.clone())
                        }
                    })
                    .collect())
            })
            .collect()
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
            Ok(StatementResult { changes: Some(r.docs), ..StatementResult::message(msg) })
        }
        #[cfg(not(feature = "parquet"))]
        {
            let _ = (coll, progress);
            Err(Error::NotAvailable(format!(
                "{path} is a Parquet file: importing it needs the `parquet` cargo feature"
            )))
        }
    }
}

const COUNT_COLUMNS: &[&str] = &["count"];
const SHOW_COLLECTIONS_COLUMNS: &[&str] = &["collection", "docs", "segments", "bytes"];
const SHOW_INDEXES_COLUMNS: &[&str] = &["kind", "params", "segments_indexed", "segments", "bytes", "state"];
const DESCRIBE_COLUMNS: &[&str] = &["name", "type"];
const STATS_COLUMNS: &[&str] = &["stat", "value"];
pub(super) const EXPLAIN_COLUMNS: &[&str] = &["step", "name", "docs", "ms"];
const HOPFIELD_COLUMNS: &[&str] = &["id", "weight"];
const CHECK_COLUMNS: &[&str] = &["problem"];
const EVALUATE_COLUMNS: &[&str] = &[
    "candidate",
    "kind",
    "ndcg_at_10",
    "recall_at_100",
    "mrr_at_10",
    "bytes_per_doc",
    "p50_ms",
    "diff",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
    "verdict",
    "statement",
];

pub(super) fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_string()).collect()
}

impl Session {
    /// The result columns `s` will have, without running it (none for statements that
    /// return only a message).
    pub(super) fn columns_of(&self, s: &Statement) -> Result<Vec<String>> {
        Ok(match s {
            Statement::Select { explain: true, .. } => strings(EXPLAIN_COLUMNS),
            Statement::Select { coll, items, .. } => result_columns(&self.db.describe(coll)?, items, true)?,
            Statement::List { coll, items, .. } => result_columns(&self.db.describe(coll)?, items, false)?,
            Statement::Count { .. } => strings(COUNT_COLUMNS),
            Statement::ShowCollections => strings(SHOW_COLLECTIONS_COLUMNS),
            Statement::ShowIndexes(_) => strings(SHOW_INDEXES_COLUMNS),
            Statement::Describe(_) => strings(DESCRIBE_COLUMNS),
            Statement::Stats(_) => strings(STATS_COLUMNS),
            Statement::Hopfield { .. } => strings(HOPFIELD_COLUMNS),
            Statement::Check => strings(CHECK_COLUMNS),
            Statement::Evaluate { .. } => strings(EVALUATE_COLUMNS),
            _ => Vec::new(),
        })
    }
}

/// A filter every document passes (`DELETE` / `UPDATE` without `WHERE`).
pub(crate) fn every_document() -> Filter {
    Filter::Not(Box::new(Filter::is_null(crate::ID_COLUMN)))
}

/// The result columns of a `SELECT` list: `*` is `id` (and `score` for a search) and every
/// column; `score` only in a search.
pub(super) fn result_columns(spec: &CollectionSpec, items: &[String], scored: bool) -> Result<Vec<String>> {
    let mut columns = Vec::new();
    for it in items {
        if it == "*" {
            columns.push("id".to_string());
            if scored {
                columns.push("score".to_string());
            }
            columns.extend(spec.columns.iter().map(|c| c.name.clone()));
        } else if it.eq_ignore_ascii_case("score") && !scored {
            return Err(Error::invalid(
                "score needs ORDER BY a score function: maxsim('…'), dense(field, '…'), bm25('…') or hybrid('…')",
            ));
        } else if it.eq_ignore_ascii_case("id") || it.eq_ignore_ascii_case("score") {
            columns.push(it.to_lowercase());
        } else if is_vector_column(spec, it) {
            columns.push(it.clone());
        } else {
            let c = spec
                .columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(it))
                .ok_or_else(|| Error::NotFound { kind: "column", name: it.clone() })?;
            columns.push(c.name.clone());
        }
    }
    Ok(columns)
}

/// Whether `name` selects a vector: `tokens` or a pooled vector's name (a scalar column of
/// the same name wins).
fn is_vector_column(spec: &CollectionSpec, name: &str) -> bool {
    !spec.columns.iter().any(|c| c.name == name)
        && (name == "tokens" || spec.vectors.pooled.iter().any(|p| p.name == name))
}

/// A stored vector as JSON: `tokens` as an array of rows, a pooled vector as one array.
fn vector_value(spec: &CollectionSpec, d: &crate::StoredDocument, name: &str) -> Value {
    let arr =
        |v: &[f32]| serde_json::Value::Array(v.iter().map(|&x| serde_json::json!(f64::from(x))).collect());
    if name == "tokens" {
        let dim = spec.vectors.token_dim.max(1);
        Value::Json(serde_json::Value::Array(d.tokens.chunks(dim).map(arr).collect()))
    } else {
        d.pooled.iter().find(|(n, _)| n == name).map_or(Value::Null, |(_, v)| Value::Json(arr(v)))
    }
}
