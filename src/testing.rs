//! Test support shared by the integration tests and the bench runner: a deterministic
//! PRNG, random unit vectors, and the crash-recovery workload (a child process that
//! writes and acknowledges, a parent that kills it and verifies the reopened database).
//! Not part of the stable API.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{
    CollectionSpec, ColumnType, Database, DocId, Document, IdType, SearchRequest, Value, VectorSpec,
};

/// SplitMix64: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.unit().max(1e-7);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }

    /// `n` random unit vectors of dimension `dim`, row-major.
    pub fn unit_vectors(&mut self, n: usize, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n * dim).map(|_| self.normal()).collect();
        for row in v.chunks_exact_mut(dim) {
            normalize(row);
        }
        v
    }
}

/// L2-normalise in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

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
    Document::new(id).tokens(tokens).pooled("mean", mean).set("ver", version)
}

/// Open the crash database with the small flush threshold that makes flushes frequent.
///
/// # Errors
/// Open errors.
pub fn crash_open(path: &Path) -> crate::Result<Database> {
    Database::builder(path).flush_threshold_tokens(96).retire_grace(Duration::ZERO).open()
}

/// The child side: write forever, printing `P <op>` before and `A` after each commit.
/// Ops: `I id:ver ...` insert batch, `U id:ver` upsert, `D id` delete, `F` flush,
/// `C` compact. Ids start at `start_id`; existing ids are read back from the database.
///
/// # Errors
/// Any database error (the parent treats an early exit as a failure).
pub fn crash_child(path: &Path, seed: u64, start_id: i64) -> crate::Result<()> {
    let db = crash_open(path)?;
    if db.describe("c").is_err() {
        let spec = CollectionSpec::new("c", VectorSpec::new(CRASH_DIM).pooled("mean", CRASH_DIM))
            .id_type(IdType::Integer)
            .column("ver", ColumnType::Integer);
        db.create_collection(&spec)?;
    }
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
        let r = rng.below(100);
        let line = if r < 55 || live.is_empty() {
            let n = 1 + rng.below(4) as i64;
            let ids: Vec<i64> = (next..next + n).collect();
            next += n;
            let docs: Vec<Document> = ids.iter().map(|&i| crash_doc(i, 0)).collect();
            announce(
                &out,
                &format!("P I {}", ids.iter().map(|i| format!("{i}:0")).collect::<Vec<_>>().join(" ")),
            );
            db.insert("c", &docs)?;
            live.extend(ids);
            "A"
        } else if r < 75 {
            let id = live[rng.below(live.len() as u64) as usize];
            let ver = 1 + rng.below(1000) as i64;
            announce(&out, &format!("P U {id}:{ver}"));
            db.upsert("c", &[crash_doc(id, ver)])?;
            "A"
        } else if r < 88 {
            let k = rng.below(live.len() as u64) as usize;
            let id = live.swap_remove(k);
            announce(&out, &format!("P D {id}"));
            db.delete("c", &[DocId::Int(id)])?;
            "A"
        } else if r < 96 {
            announce(&out, "P F");
            db.flush("c")?;
            "A"
        } else {
            announce(&out, "P C");
            db.compact("c")?;
            "A"
        };
        announce(&out, line);
    }
}

fn announce(out: &std::io::Stdout, line: &str) {
    let mut o = out.lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// What the parent knows: acknowledged state, plus the one operation that may or may not
/// have committed when the child died.
#[derive(Debug, Default, Clone)]
pub struct CrashModel {
    /// Acknowledged live documents: id → version.
    pub live: BTreeMap<i64, i64>,
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
    /// Delete: present (old) or gone.
    Delete(i64),
    /// Flush or compaction: no visible effect.
    Maintenance,
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
        "D" => parts.next()?.parse().ok().map(InFlight::Delete),
        "F" | "C" => Some(InFlight::Maintenance),
        _ => None,
    }
}

impl CrashModel {
    fn apply(&mut self, op: &InFlight) {
        match op {
            InFlight::Insert(v) => {
                for &(i, ver) in v {
                    self.live.insert(i, ver);
                    self.max_id = self.max_id.max(i);
                }
            }
            InFlight::Upsert(i, v) => {
                self.live.insert(*i, *v);
            }
            InFlight::Delete(i) => {
                self.live.remove(i);
            }
            InFlight::Maintenance => {}
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
        let version_of = |id: i64| -> std::result::Result<Option<i64>, String> {
            let d = db.get("c", &DocId::Int(id)).map_err(|e| format!("get {id}: {e}"))?;
            let Some(d) = d else { return Ok(None) };
            let ver = match d.values.first().map(|(_, v)| v) {
                Some(Value::Integer(v)) => *v,
                other => return Err(format!("doc {id} has no version: {other:?}")),
            };
            let want = crash_doc(id, ver);
            let close = d.tokens.len() == want.tokens.len()
                && d.tokens.iter().zip(&want.tokens).all(|(a, b)| (a - b).abs() < 1e-3);
            if !close {
                return Err(format!("doc {id} v{ver}: token vectors differ from what was written"));
            }
            Ok(Some(ver))
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
                if version_of(i)? == Some(ver) {
                    self.live.insert(i, ver);
                }
            }
            Some(InFlight::Delete(i)) => {
                if version_of(i)?.is_none() {
                    self.live.remove(&i);
                }
            }
            Some(InFlight::Maintenance) | None => {}
        }
        let stats = db.stats("c").map_err(|e| e.to_string())?;
        if stats.docs != self.live.len() as u64 {
            return Err(format!(
                "database has {} documents, acknowledged state has {}",
                stats.docs,
                self.live.len()
            ));
        }
        for (&id, &ver) in &self.live {
            match version_of(id)? {
                Some(v) if v == ver => {}
                other => return Err(format!("acknowledged doc {id} v{ver} lost: found {other:?}")),
            }
        }
        self.check_searchable(db)
    }

    /// A sample of live documents must come first when searched with their own tokens.
    fn check_searchable(&self, db: &Database) -> std::result::Result<(), String> {
        let ids: Vec<i64> = self.live.keys().copied().collect();
        for id in ids.iter().rev().take(3).chain(ids.iter().take(2)) {
            let doc = crash_doc(*id, self.live[id]);
            let hits =
                db.search("c", &SearchRequest::maxsim(doc.tokens).limit(1)).map_err(|e| e.to_string())?;
            if hits.first().map(|h| &h.id) != Some(&DocId::Int(*id)) {
                return Err(format!("doc {id} is not found by its own tokens: {hits:?}"));
            }
        }
        let report = db.check().map_err(|e| e.to_string())?;
        if !report.problems.is_empty() {
            return Err(format!("check found problems: {:?}", report.problems));
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
