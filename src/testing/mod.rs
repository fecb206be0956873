//! Test support shared by the integration tests and the bench runner: a deterministic
//! PRNG, random unit vectors, and the crash-recovery workload (a child process that
//! writes and acknowledges, a parent that kills it and verifies the reopened database).
//! Not part of the stable API.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

pub mod corrupt;

pub use crate::storage::fault;

use crate::{
    CollectionSpec, ColumnType, Database, DocId, Document, IdType, SearchRequest, Value, VectorSpec,
};

pub use crate::rng::Rng;
pub use crate::vector::normalize;

/// Token dimension of the crash workload's collection.
pub const CRASH_DIM: usize = 16;

/// The deterministic document `id` at `version`: 2–9 unit token vectors and a pooled mean.
#[must_use]
pub fn crash_doc(id: i64, version: i64) -> Document {
    let mut rng = Rng::new((id as u64) << 20 ^ version as u64);
    let n = 2 + rng.below(8) as usize;
    let tokens = rng.unit_vectors(n, CRASH_DIM);
    let mut mean = vec![0f32; CRASH_DIM];
    for row in tokens.chunks_exact(CRASH_DIM) {
        mean.iter_mut().zip(row).for_each(|(m, x)| *m += x);
    }
    normalize(&mut mean);
    Document::new(id)
        .tokens(tokens)
        .pooled("mean", mean)
        .set("ver", version)
        .set("body", crash_body(id, version))
}

/// The text of document `id` after its text was last set to `tag`: one word, unique to
/// the pair, so BM25 finds exactly the document while that text is current.
#[must_use]
pub fn crash_body(id: i64, tag: i64) -> String {
    format!("k{id}x{tag}")
}

/// Open the crash database with the small flush threshold that makes flushes frequent.
///
/// # Errors
/// Open errors.
pub fn crash_open(path: &Path) -> crate::Result<Database> {
    // A codes-only collection trains its codec once it holds 256 token vectors (a few
    // dozen documents), so the workload crosses that point and then runs on codes.
    Database::builder(path)
        .flush_threshold_tokens(96)
        .codec_min_tokens(256)
        .retire_grace(Duration::ZERO)
        .open()
}

/// Create the workload's collection `c` (and its full-text index, with the `fulltext`
/// feature) unless it exists.
///
/// # Errors
/// Database errors.
pub fn crash_setup(db: &Database) -> crate::Result<()> {
    crash_setup_with(db, None)
}

/// [`crash_setup`] with the token storage: f16 vectors (`None`) or codes only with
/// `Some(nbits)` (`tokens = 'plaid<nbits>'`).
///
/// # Errors
/// Database errors.
pub fn crash_setup_with(db: &Database, codes: Option<u8>) -> crate::Result<()> {
    if db.describe("c").is_ok() {
        return Ok(());
    }
    let mut vectors = VectorSpec::new(CRASH_DIM).pooled("mean", CRASH_DIM);
    if let Some(b) = codes {
        vectors = vectors.codes(b);
    }
    let spec = CollectionSpec::new("c", vectors)
        .id_type(IdType::Integer)
        .column("ver", ColumnType::Integer)
        .column("body", ColumnType::Text);
    db.create_collection(&spec)?;
    #[cfg(feature = "fulltext")]
    db.create_fulltext_index("c", crate::FullTextOptions::default())?;
    Ok(())
}

/// Carry out one workload operation.
///
/// # Errors
/// Database errors.
pub fn run_op(db: &Database, op: &InFlight) -> crate::Result<()> {
    match op {
        InFlight::Insert(v) => {
            db.insert("c", &v.iter().map(|&(i, ver)| crash_doc(i, ver)).collect::<Vec<_>>())
        }
        InFlight::Upsert(id, ver) => db.upsert("c", &[crash_doc(*id, *ver)]),
        InFlight::Update(id, tag) => {
            db.update("c", &DocId::Int(*id), &[("body".into(), Value::Text(crash_body(*id, *tag)))])
        }
        InFlight::Delete(id) => db.delete("c", &[DocId::Int(*id)]).map(drop),
        InFlight::Flush => db.flush("c").map(drop),
        InFlight::Compact => db.compact("c").map(drop),
        InFlight::CreateIndex(kind) => {
            let spec = match kind.strip_prefix("hnsw:") {
                Some(field) => {
                    crate::IndexSpec::Hnsw { field: field.into(), params: crate::HnswParams::default() }
                }
                None => {
                    crate::IndexSpec::Plaid(crate::PlaidOptions { centroids: Some(8), ..Default::default() })
                }
            };
            match db.create_index("c", &spec, &mut |_| {}) {
                // Built before, or nothing to train on yet: the op has nothing to do.
                Err(crate::Error::AlreadyExists { .. } | crate::Error::InvalidArgument(_)) => Ok(()),
                r => r.map(drop),
            }
        }
        InFlight::DropIndex(kind) => db.drop_index("c", kind).map(drop),
    }
}

/// The text form of an operation (`P <op>` lines of the crash child).
#[must_use]
pub fn op_text(op: &InFlight) -> String {
    match op {
        InFlight::Insert(v) => {
            format!("I {}", v.iter().map(|(i, v)| format!("{i}:{v}")).collect::<Vec<_>>().join(" "))
        }
        InFlight::Upsert(i, v) => format!("U {i}:{v}"),
        InFlight::Update(i, t) => format!("T {i}:{t}"),
        InFlight::Delete(i) => format!("D {i}"),
        InFlight::Flush => "F".into(),
        InFlight::Compact => "C".into(),
        InFlight::CreateIndex(k) => format!("X {k}"),
        InFlight::DropIndex(k) => format!("Y {k}"),
    }
}

/// The child side: write forever, printing `P <op>` before and `A` after each commit.
/// Ops: `I id:ver ...` insert batch, `U id:ver` upsert, `T id:tag` update of the text
/// column, `D id` delete, `F` flush, `C` compact. With the `fulltext` feature the
/// collection has a full-text index, so every write is followed by its catch-up. Ids
/// start at `start_id`; existing ids are read back from the database.
///
/// # Errors
/// Any database error (the parent treats an early exit as a failure).
pub fn crash_child(path: &Path, seed: u64, start_id: i64, codes: Option<u8>) -> crate::Result<()> {
    let db = crash_open(path)?;
    crash_setup_with(&db, codes)?;
    let mut live: Vec<i64> = Vec::new();
    let q = SearchRequest::maxsim(vec![1.0; CRASH_DIM]).limit(crate::MAX_LIMIT);
    for h in db.search("c", &q)? {
        if let DocId::Int(i) = h.id {
            live.push(i);
        }
    }
    let mut rng = Rng::new(seed);
    let mut next = start_id;
    let out = std::io::stdout();
    // Start on a fresh line: a test harness may have printed a partial line before us.
    announce(&out, "");
    loop {
        let op = random_op(&mut rng, &mut live, &mut next);
        announce(&out, &format!("P {}", op_text(&op)));
        run_op(&db, &op)?;
        announce(&out, "A");
    }
}

/// A random operation of the workload over the `live` ids (kept up to date as if it
/// succeeds); new ids count up from `next`.
pub fn random_op(rng: &mut Rng, live: &mut Vec<i64>, next: &mut i64) -> InFlight {
    let r = rng.below(100);
    if r < 55 || live.is_empty() {
        let n = 1 + rng.below(4) as i64;
        let ids: Vec<i64> = (*next..*next + n).collect();
        *next += n;
        live.extend(&ids);
        InFlight::Insert(ids.into_iter().map(|i| (i, 0)).collect())
    } else if r < 68 {
        InFlight::Upsert(live[rng.below(live.len() as u64) as usize], 1 + rng.below(1000) as i64)
    } else if r < 78 {
        InFlight::Update(live[rng.below(live.len() as u64) as usize], 1001 + rng.below(1000) as i64)
    } else if r < 88 {
        InFlight::Delete(live.swap_remove(rng.below(live.len() as u64) as usize))
    } else if r < 94 {
        InFlight::Flush
    } else if r < 97 {
        InFlight::Compact
    } else if r < 99 {
        InFlight::CreateIndex(INDEX_KINDS[rng.below(2) as usize].to_string())
    } else {
        InFlight::DropIndex(INDEX_KINDS[rng.below(2) as usize].to_string())
    }
}

/// The indexes the crash workload builds and drops (side files per segment).
const INDEX_KINDS: [&str; 2] = ["plaid", "hnsw:mean"];

fn announce(out: &std::io::Stdout, line: &str) {
    let mut o = out.lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// What the parent knows: acknowledged state, plus the one operation that may or may not
/// have committed when the child died.
#[derive(Debug, Default, Clone)]
pub struct CrashModel {
    /// Acknowledged live documents: id → (version of the vectors, tag of the text).
    pub live: BTreeMap<i64, (i64, i64)>,
    /// Largest id ever announced.
    pub max_id: i64,
}

/// An operation announced but not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InFlight {
    /// Insert of these (id, version) pairs: all or none.
    Insert(Vec<(i64, i64)>),
    /// Upsert of (id, version): old or new.
    Upsert(i64, i64),
    /// Update of the text column to (id, tag): old text or new.
    Update(i64, i64),
    /// Delete: present (old) or gone.
    Delete(i64),
    /// Flush: no visible effect.
    Flush,
    /// Compaction: no visible effect.
    Compact,
    /// CREATE INDEX (or resume an interrupted build) of this kind: no visible effect.
    CreateIndex(String),
    /// DROP INDEX of this kind: no visible effect.
    DropIndex(String),
}

fn parse_op(s: &str) -> Option<InFlight> {
    let mut parts = s.split_whitespace();
    let pair = |p: &str| -> Option<(i64, i64)> {
        let (a, b) = p.split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    match parts.next()? {
        "I" => Some(InFlight::Insert(parts.map(pair).collect::<Option<Vec<_>>>()?)),
        "U" => pair(parts.next()?).map(|(i, v)| InFlight::Upsert(i, v)),
        "T" => pair(parts.next()?).map(|(i, t)| InFlight::Update(i, t)),
        "D" => parts.next()?.parse().ok().map(InFlight::Delete),
        "F" => Some(InFlight::Flush),
        "C" => Some(InFlight::Compact),
        "X" => Some(InFlight::CreateIndex(parts.next()?.to_string())),
        "Y" => Some(InFlight::DropIndex(parts.next()?.to_string())),
        _ => None,
    }
}

impl CrashModel {
    /// Apply an acknowledged operation to the model.
    pub fn apply(&mut self, op: &InFlight) {
        match op {
            InFlight::Insert(v) => {
                for &(i, ver) in v {
                    self.live.insert(i, (ver, ver));
                    self.max_id = self.max_id.max(i);
                }
            }
            InFlight::Upsert(i, v) => {
                self.live.insert(*i, (*v, *v));
            }
            InFlight::Update(i, t) => {
                if let Some(e) = self.live.get_mut(i) {
                    e.1 = *t;
                }
            }
            InFlight::Delete(i) => {
                self.live.remove(i);
            }
            InFlight::Flush | InFlight::Compact | InFlight::CreateIndex(_) | InFlight::DropIndex(_) => {}
        }
    }

    /// Read the child's output: apply acknowledged ops, return the unacknowledged one and
    /// the number of acknowledgements.
    pub fn consume(&mut self, out: impl BufRead) -> (Option<InFlight>, usize) {
        let mut pending: Option<InFlight> = None;
        let mut acks = 0;
        for line in out.lines().map_while(std::result::Result::ok) {
            if let Some(op) = line.strip_prefix("P ") {
                if let Some(InFlight::Insert(v)) = parse_op(op).as_ref() {
                    self.max_id = self.max_id.max(v.iter().map(|p| p.0).max().unwrap_or(0));
                }
                pending = parse_op(op);
            } else if line == "A" {
                if let Some(op) = pending.take() {
                    self.apply(&op);
                    acks += 1;
                }
            }
        }
        (pending, acks)
    }

    /// Check the reopened database against the model, resolving the in-flight op by what
    /// is found (it must be all-or-nothing). Returns the number of lost acknowledged
    /// writes (0 when sound) or a description of an inconsistency.
    ///
    /// # Errors
    /// A message describing what is wrong.
    pub fn verify(&mut self, db: &Database, inflight: Option<InFlight>) -> std::result::Result<(), String> {
        // Codes-only storage is lossy: tokens read back must point where they were
        // written (cos ≥ 0.8 each, ≥ 0.9 on average; unrelated 16-d unit vectors are
        // at cos ≈ 0 ± 0.25), not equal them.
        let lossy = db.describe("c").map_err(|e| e.to_string())?.vectors.codes.is_some();
        let version_of = |id: i64| -> std::result::Result<Option<(i64, i64)>, String> {
            let d = db.get("c", &DocId::Int(id)).map_err(|e| format!("get {id}: {e}"))?;
            let Some(d) = d else { return Ok(None) };
            let ver = match d.values.iter().find(|(k, _)| k == "ver").map(|(_, v)| v) {
                Some(Value::Integer(v)) => *v,
                other => return Err(format!("doc {id} has no version: {other:?}")),
            };
            let tag = match d.values.iter().find(|(k, _)| k == "body").map(|(_, v)| v) {
                Some(Value::Text(t)) => t
                    .strip_prefix(&format!("k{id}x"))
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| format!("doc {id} has a foreign text '{t}'"))?,
                other => return Err(format!("doc {id} has no text: {other:?}")),
            };
            let want = crash_doc(id, ver);
            // Cosine of each token read back to the one written.
            let cos: Vec<f32> = d
                .tokens
                .chunks_exact(CRASH_DIM)
                .zip(want.tokens.chunks_exact(CRASH_DIM))
                .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum())
                .collect();
            let close = d.tokens.len() == want.tokens.len()
                && if lossy {
                    cos.iter().all(|&c| c >= 0.8) && cos.iter().sum::<f32>() >= 0.9 * cos.len() as f32
                } else {
                    d.tokens.iter().zip(&want.tokens).all(|(a, b)| (a - b).abs() < 1e-3)
                };
            if !close {
                return Err(format!(
                    "doc {id} v{ver}: token vectors differ from what was written (cos per token {cos:?})"
                ));
            }
            Ok(Some((ver, tag)))
        };
        match inflight {
            Some(InFlight::Insert(v)) => {
                let found: Vec<bool> = v
                    .iter()
                    .map(|&(i, _)| version_of(i).map(|x| x.is_some()))
                    .collect::<std::result::Result<_, _>>()?;
                if found.iter().any(|&f| f != found[0]) {
                    return Err(format!("insert batch {v:?} is half-visible: {found:?}"));
                }
                if found[0] {
                    self.apply(&InFlight::Insert(v));
                }
            }
            Some(InFlight::Upsert(i, ver)) => {
                if version_of(i)? == Some((ver, ver)) {
                    self.live.insert(i, (ver, ver));
                }
            }
            Some(InFlight::Update(i, tag)) => {
                if version_of(i)?.is_some_and(|(_, t)| t == tag) {
                    self.apply(&InFlight::Update(i, tag));
                }
            }
            Some(InFlight::Delete(i)) => {
                if version_of(i)?.is_none() {
                    self.live.remove(&i);
                }
            }
            Some(InFlight::Flush | InFlight::Compact | InFlight::CreateIndex(_) | InFlight::DropIndex(_))
            | None => {}
        }
        let stats = db.stats("c").map_err(|e| e.to_string())?;
        if stats.docs != self.live.len() as u64 {
            return Err(format!(
                "database has {} documents, acknowledged state has {}",
                stats.docs,
                self.live.len()
            ));
        }
        for (&id, &want) in &self.live {
            match version_of(id)? {
                Some(got) if got == want => {}
                other => {
                    return Err(format!(
                        "acknowledged doc {id} (version, tag) {want:?} lost: found {other:?}"
                    ))
                }
            }
        }
        self.check_searchable(db)
    }

    /// A sample of live documents must come first when searched with their own tokens.
    fn check_searchable(&self, db: &Database) -> std::result::Result<(), String> {
        let ids: Vec<i64> = self.live.keys().copied().collect();
        for id in ids.iter().rev().take(3).chain(ids.iter().take(2)) {
            let (ver, _tag) = self.live[id];
            #[cfg(feature = "fulltext")]
            {
                let hits = db
                    .search("c", &SearchRequest::bm25(crash_body(*id, _tag)).limit(5))
                    .map_err(|e| format!("bm25: {e}"))?;
                if hits.iter().map(|h| &h.id).ne([DocId::Int(*id)].iter()) {
                    return Err(format!("full-text index out of step: doc {id}'s text finds {hits:?}"));
                }
            }
            let doc = crash_doc(*id, ver);
            // Exact: this checks what is stored; the index is checked by `check_plaid`
            // (once the collection outgrows AUTO_EXACT_MAX_DOCS, Auto may pick PLAID,
            // which is approximate by design).
            let req = SearchRequest::maxsim(doc.tokens).limit(1).plan(crate::Plan::Exact);
            let hits = db.search("c", &req).map_err(|e| e.to_string())?;
            if hits.first().map(|h| &h.id) != Some(&DocId::Int(*id)) {
                return Err(format!("doc {id} is not found by its own tokens: {hits:?}"));
            }
        }
        let report = db.check().map_err(|e| e.to_string())?;
        if !report.problems.is_empty() {
            return Err(format!("check found problems: {:?}", report.problems));
        }
        self.check_plaid(db)
    }

    /// With a PLAID index (built, or half-built by a killed CREATE INDEX), exhaustive PLAID
    /// over the side files that exist must answer exactly what exact search answers.
    fn check_plaid(&self, db: &Database) -> std::result::Result<(), String> {
        let indexes = db.indexes("c").map_err(|e| e.to_string())?;
        let (Some(&id), true) = (self.live.keys().next(), indexes.iter().any(|i| i.kind == "plaid")) else {
            return Ok(());
        };
        let req = SearchRequest::maxsim(crash_doc(id, self.live[&id].0).tokens).limit(10);
        let exact = db.search("c", &req.clone().plan(crate::Plan::Exact)).map_err(|e| e.to_string())?;
        let all = crate::index::plaid::SearchParams::exhaustive();
        let plaid =
            db.search("c", &req.plan(crate::Plan::Plaid).plaid_params(all)).map_err(|e| e.to_string())?;
        if plaid != exact {
            return Err(format!("exhaustive PLAID differs from exact: {plaid:?} vs {exact:?}"));
        }
        Ok(())
    }
}

/// Outcome of a series of crash trials.
#[derive(Debug, Default, Clone)]
pub struct CrashReport {
    /// Trials run.
    pub trials: usize,
    /// Trials whose reopened database lost an acknowledged write or was inconsistent.
    pub failures: Vec<String>,
    /// Trials where the database failed to open.
    pub open_failures: usize,
    /// Acknowledged operations over all trials.
    pub acked_ops: usize,
    /// Time to reopen (recovery), per trial.
    pub recovery: Vec<Duration>,
}

/// Run `trials` kill-and-verify rounds on one database at `path`. `spawn(seed, start_id)`
/// starts the child with piped stdout.
pub fn crash_trials(
    path: &Path,
    trials: usize,
    seed: u64,
    mut spawn: impl FnMut(u64, i64) -> std::process::Child,
) -> CrashReport {
    let mut model = CrashModel::default();
    let mut rng = Rng::new(seed);
    let mut report = CrashReport::default();
    for t in 0..trials {
        let mut child = spawn(rng.next_u64(), model.max_id + 1);
        let stdout = child.stdout.take().expect("child stdout must be piped");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let the child make a random number of acknowledged writes, then kill it a random
        // few microseconds into whatever it does next.
        let target = rng.below(40) as usize;
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while lines.iter().filter(|l: &&String| l.as_str() == "A").count() < target
            && Instant::now() < deadline
        {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => lines.push(l),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(3_000)));
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        lines.extend(rx.try_iter());
        let (inflight, acks) = model.consume(std::io::Cursor::new(lines.join("\n")));
        report.acked_ops += acks;
        report.trials += 1;
        let started = Instant::now();
        let db = match crash_open(path) {
            Ok(db) => db,
            Err(e) => {
                report.open_failures += 1;
                report.failures.push(format!("trial {t}: open failed: {e}"));
                break;
            }
        };
        report.recovery.push(started.elapsed());
        if let Err(e) = model.verify(&db, inflight) {
            report.failures.push(format!("trial {t}: {e}"));
            break;
        }
        drop(db);
    }
    report
}

/// Create a database directory whose catalog is at schema `version`, holding `spec`.
///
/// # Errors
/// Catalog errors.
pub fn create_database_at_schema(root: &Path, version: u32, spec: &CollectionSpec) -> crate::Result<()> {
    std::fs::create_dir_all(root).map_err(|e| crate::Error::Io { path: root.to_path_buf(), source: e })?;
    crate::catalog::hooks::create_at_version(&crate::catalog::catalog_path(root), version, spec)
}

/// Overwrite the catalog's schema version (to simulate a newer database).
///
/// # Errors
/// Catalog errors.
pub fn set_schema_version(root: &Path, v: u32) -> crate::Result<()> {
    crate::catalog::hooks::set_user_version(&crate::catalog::catalog_path(root), v)
}

/// The catalog schema as SQL text (for snapshot tests).
///
/// # Errors
/// Catalog errors.
pub fn catalog_schema(root: &Path) -> crate::Result<String> {
    crate::catalog::hooks::schema(&crate::catalog::catalog_path(root))
}
