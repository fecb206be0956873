//! End-to-end tests of the `maxsimdb` binary: statements from -c, -f and standard input,
//! every search mode, updates, deletes, maintenance, output formats and the error cases.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value as J;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_maxsimdb"))
}

/// Run `sql` with `-c` in JSON mode; every output line parsed.
fn run(db: &Path, sql: &str) -> (Output, Vec<J>) {
    let out = bin().arg(db).args(["--format", "json", "-c", sql]).output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect();
    (out, lines)
}

/// Standard output of `sql` run with `-c` in `format` (table, json, csv); the run must succeed.
fn stdout_in(db: &Path, format: &str, sql: &str) -> String {
    let out = bin().arg(db).args(["--format", format, "-c", sql]).output().unwrap();
    assert!(out.status.success(), "{sql}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn ok(db: &Path, sql: &str) -> Vec<J> {
    let (out, lines) = run(db, sql);
    assert!(out.status.success(), "{sql}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    lines
}

fn ids(line: &J) -> Vec<String> {
    line["rows"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

fn err(db: &Path, sql: &str) -> (i32, String) {
    let (out, _) = run(db, sql);
    assert!(!out.status.success(), "{sql} should fail");
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn shell_runs_every_statement_kind() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.msdb");
    ok(
        &db,
        "CREATE COLLECTION docs (title TEXT, year INTEGER) WITH (dim = 2, pooled = 'mean:2', dtype = 'f32');
         INSERT INTO docs (id, title, year, tokens, mean) VALUES
           ('a', 'Cats purr on mats', 2001, '[[1,0],[0.6,0.8]]', '[1,0]'),
           ('b', 'Dogs bark at cats', 2002, '[[0,1]]', '[0,1]'),
           ('c', 'Birds fly south', 2003, '[[0.8,0.6]]', '[0.8,0.6]');
         CREATE INDEX ON docs USING fulltext;",
    );
    // MaxSim with a vector query: scores are exact.
    let r = ok(&db, "SELECT id, score FROM docs ORDER BY maxsim('[[1,0]]') LIMIT 3");
    assert_eq!(ids(&r[0]), ["a", "c", "b"]);
    assert!((r[0]["rows"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    // Dense, with a filter.
    let r = ok(&db, "SELECT id FROM docs WHERE year >= 2002 ORDER BY dense(mean, '[1,0]')");
    assert_eq!(ids(&r[0]), ["c", "b"]);
    // BM25 and hybrid, with selected columns.
    let r = ok(&db, "SELECT id, title FROM docs ORDER BY bm25('cat') LIMIT 10");
    assert_eq!(ids(&r[0]).len(), 2);
    assert!(r[0]["rows"][0]["title"].as_str().unwrap().contains("at"));
    let r = ok(&db, "SELECT * FROM docs WHERE year IN (2001, 2003) ORDER BY hybrid('birds', 'bm25')");
    assert_eq!(ids(&r[0]), ["c"]);
    assert_eq!(r[0]["rows"][0]["year"], 2003);
    // EXPLAIN reports the plan and the stages.
    let r = ok(&db, "EXPLAIN SELECT id FROM docs ORDER BY maxsim('[[1,0]]')");
    let names: Vec<&str> =
        r[0]["rows"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Exact", "filter", "exact"]);
    // Bound-free UPDATE / DELETE with WHERE, then maintenance.
    let r = ok(&db, "UPDATE docs SET year = 1990 WHERE title LIKE 'Dogs%'");
    assert_eq!(r[0]["message"], "updated 1 document");
    let r = ok(&db, "SELECT id, year FROM docs WHERE year < 2000 ORDER BY dense(mean, '[0,1]')");
    assert_eq!(ids(&r[0]), ["b"]);
    let r = ok(&db, "DELETE FROM docs WHERE id = 'a'; FLUSH docs; VACUUM docs; CHECK; STATS docs");
    assert_eq!(r[0]["message"], "deleted 1 document");
    assert!(r[3]["message"].as_str().unwrap().ends_with("ok"), "{}", r[3]);
    let docs =
        r[4]["rows"].as_array().unwrap().iter().find(|x| x["stat"] == "docs").unwrap()["value"].clone();
    assert_eq!(docs, 2);
    let r = ok(&db, "SELECT id FROM docs ORDER BY bm25('cats')");
    assert_eq!(ids(&r[0]), ["b"], "the deleted document left the full-text index");
    // Catalog statements.
    let r = ok(&db, "SHOW COLLECTIONS; DESCRIBE docs; SHOW INDEXES ON docs");
    assert_eq!(r[0]["rows"][0]["collection"], "docs");
    assert!(r[1]["rows"].as_array().unwrap().iter().any(|x| x["name"] == "year" && x["type"] == "INTEGER"));
    assert_eq!(r[2]["rows"][0]["kind"], "fulltext");
    // Hopfield lookup.
    let r = ok(&db, "HOPFIELD docs USING mean '[0.79, 0.61]' WITH (beta = 50, top_k = 5)");
    assert_eq!(r[0]["rows"][0]["id"], "c");
    assert!(r[0]["message"].as_str().unwrap().contains("energy"));

    // Statements from a file and from standard input; CSV and table output.
    let f = dir.path().join("q.sql");
    std::fs::write(&f, "SELECT id, year\n  FROM docs\n  ORDER BY dense(mean, '[1,0]');\n").unwrap();
    let out = bin().arg(&db).args(["--format", "csv", "-f"]).arg(&f).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "id,year\nc,2003\nb,1990\n");
    let mut child = bin()
        .arg(&db)
        .args(["--format", "table"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"SELECT id FROM docs\nORDER BY bm25('birds');").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("(1 row)") && text.contains('c'), "{text}");
    // Search options: plan hints, candidates, Hopfield refinement.
    let r = ok(&db, "EXPLAIN SELECT id FROM docs ORDER BY dense(mean, '[1,0]') WITH (plan = 'exact', refine = 1, beta = 30)");
    let names: Vec<&str> =
        r[0]["rows"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Exact", "hopfield", "filter", "exact"]);
    let (code, msg) = err(&db, "SELECT id FROM docs ORDER BY maxsim('[[1,0]]') WITH (plan = 'plaid')");
    assert_eq!(code, 12, "no PLAID index: {msg}");
    assert_eq!(err(&db, "SELECT id FROM docs ORDER BY maxsim('[[1,0]]') WITH (color = 1)").0, 2);
    // Hopfield completion: null marks an unknown component.
    let r = ok(&db, "HOPFIELD docs USING mean '[0.8, null]' WITH (beta = 80)");
    assert_eq!(r[0]["rows"][0]["id"], "c");
    assert!(r[0]["message"].as_str().unwrap().contains("state [0.8"), "{}", r[0]["message"]);
    // UPDATE with a general WHERE, in one transaction.
    assert_eq!(ok(&db, "UPDATE docs SET title = 'x' WHERE year > 0")[0]["message"], "updated 2 documents");

    // The interactive loop, driven through a pipe: meta commands, multi-line statements.
    let history = dir.path().join("history");
    let mut child = bin()
        .arg(&db)
        .arg("-i")
        .env("MAXSIMDB_HISTORY", &history)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b".help\n.mode json\nSELECT id\n  FROM docs ORDER BY dense(mean, '[1,0]')\n  LIMIT 1;\n.mode csv\n.tables\n.timer on\n.bogus\n.quit\nSHOW COLLECTIONS;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let errs = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{errs}");
    assert!(text.contains("Meta commands"), "help: {text}");
    assert!(text.contains(r#"{"rows":[{"id":"c"}]}"#), "multi-line statement in JSON mode: {text}");
    assert!(text.contains("collection,docs,segments,bytes"), "CSV mode, .tables: {text}");
    assert!(errs.contains("unknown meta command .bogus"), "{errs}");
    assert_eq!(text.matches("collection,docs").count(), 1, ".quit stops reading: {text}");
    let saved = std::fs::read_to_string(&history).unwrap();
    assert!(saved.contains(".tables") && saved.contains("LIMIT 1;"), "history saved: {saved}");

    // Drop.
    ok(&db, "DROP INDEX fulltext ON docs; DROP COLLECTION docs");
    assert_eq!(ok(&db, "SHOW COLLECTIONS")[0]["rows"].as_array().unwrap().len(), 0);
}

#[test]
fn errors_name_the_statement_and_position_and_set_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.msdb");
    ok(&db, "CREATE COLLECTION docs (title TEXT) WITH (dim = 2)");
    // Syntax: position and statement on stderr, exit status 13 (ErrorCode::Syntax).
    let (code, msg) = err(&db, "SHOW COLLECTIONS;\nSELECT id FROM docs ORDER BY maxsim('[[1,0]]') LIMIT 1 2");
    assert_eq!(code, 13);
    assert!(msg.contains("line 2") && msg.contains("SELECT id FROM docs"), "{msg}");
    // Output of the statements before the failure still appears.
    let (out, lines) = run(&db, "SHOW COLLECTIONS; SELEKT 1");
    assert!(!out.status.success());
    assert_eq!(lines.len(), 1);
    // Anything outside the language is refused before it reaches SQLite.
    for hostile in [
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "PRAGMA writable_schema = 1",
        "SELECT load_extension('evil')",
        "DROP TABLE c1_docs",
        "SELECT id FROM docs WHERE load_extension('evil') = 1 ORDER BY maxsim('[[1,0]]')",
        "SELECT id FROM docs WHERE title = 'x' OR 1=1; DROP TABLE meta -- ORDER BY maxsim('[[1,0]]')",
        "DELETE FROM docs WHERE (SELECT 1) = 1",
        "UPDATE docs SET title = 'x' WHERE title IN (SELECT name FROM sqlite_master)",
    ] {
        let (code, msg) = err(&db, hostile);
        assert!(code == 13 || code == 2, "{hostile}: exit {code}: {msg}");
    }
    // The database is intact.
    assert_eq!(ok(&db, "SHOW COLLECTIONS")[0]["rows"][0]["collection"], "docs");
    // Semantic errors keep their codes: unknown collection (4), bad dimension (3).
    assert_eq!(err(&db, "STATS nope").0, 4);
    assert_eq!(err(&db, "INSERT INTO docs (id, tokens) VALUES ('a', '[[1,0,0]]')").0, 3);
    assert_eq!(err(&db, "SELECT id FROM docs ORDER BY maxsim('[[1,0]') LIMIT 1").0, 2);
    assert_eq!(err(&db, "SELECT id FROM docs ORDER BY bm25('x')").0, 12, "no full-text index: not available");
    // A rejected 1 MB statement is quoted in part, not echoed whole.
    let rows: Vec<String> = (0..40_000).map(|i| format!("('r{i}', '[[1,0]]')")).collect();
    let big = format!("INSERT INTO docs (id, tokens) VALUES {}, ('bad', '[[1,0')", rows.join(", "));
    assert!(big.len() > 700_000);
    // (Through -f: one command-line argument holds at most 128 KiB on Linux.)
    let script = dir.path().join("big.sql");
    std::fs::write(&script, &big).unwrap();
    let out = bin().arg(&db).arg("-f").arg(&script).output().unwrap();
    let (code, msg) = (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).to_string());
    assert_eq!(code, 2, "{}", &msg[..msg.len().min(300)]);
    assert!(
        msg.len() < 1000 && msg.contains("characters)"),
        "{} bytes: {}",
        msg.len(),
        &msg[..msg.len().min(300)]
    );
    // Usage errors: exit status 2.
    let out = bin().arg(&db).arg("--format").arg("xml").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn import_jsonl_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("i.msdb");
    ok(&db, "CREATE COLLECTION docs (title TEXT, year INTEGER) WITH (dim = 2, pooled = 'mean:2')");
    let jsonl = dir.path().join("d.jsonl");
    let lines: Vec<String> = (0..50)
        .map(|i| {
            format!(
                r#"{{"_id": "j{i}", "title": "doc {i}", "year": {}, "tokens": [[1, {i}]], "mean": [0, 1]}}"#,
                2000 + i
            )
        })
        .collect();
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let csv = dir.path().join("d.csv");
    std::fs::write(
        &csv,
        "id,title,year,tokens,mean\nc1,\"a, quoted \"\"title\"\"\",1999,\"[[0,1]]\",\"[1,0]\"\n",
    )
    .unwrap();
    let r = ok(
        &db,
        &format!("IMPORT INTO docs FROM '{}'; IMPORT INTO docs FROM '{}'", jsonl.display(), csv.display()),
    );
    assert_eq!(r[0]["message"], "imported 50 documents into docs");
    assert_eq!(r[1]["message"], "imported 1 documents into docs");
    let r = ok(&db, "SELECT id, title, year FROM docs WHERE year < 2000 ORDER BY dense(mean, '[1,0]')");
    assert_eq!(r[0]["rows"][0]["title"], "a, quoted \"title\"");
    assert_eq!(r[0]["rows"][0]["year"], 1999);
    // A bad line is an error naming the file and line; nothing of that import is stored.
    std::fs::write(&jsonl, "{\"_id\": \"x1\", \"tokens\": [[1,0]], \"mean\": [1,0]}\n{not json}\n").unwrap();
    let (code, msg) = err(&db, &format!("IMPORT INTO docs FROM '{}'", jsonl.display()));
    assert_eq!(code, 2);
    assert!(msg.contains("line 2"), "{msg}");
    let r = ok(&db, "STATS docs");
    assert_eq!(r[0]["rows"][0]["value"], 51);
    let count = |db: &Path| ok(db, "SELECT COUNT(*) FROM docs")[0]["rows"][0]["count"].as_i64().unwrap();
    // An unknown field (a typo, or BEIR's `metadata`) is reported, not silently dropped.
    std::fs::write(&jsonl, "{\"_id\": \"t1\", \"titel\": \"x\", \"tokens\": [[1,0]], \"mean\": [1,0]}\n")
        .unwrap();
    let r = ok(&db, &format!("IMPORT INTO docs FROM '{}'", jsonl.display()));
    let m = r[0]["message"].as_str().unwrap();
    assert!(m.contains("left out: 'titel' (line 1)"), "{m}");
    ok(&db, "DELETE FROM docs WHERE id = 't1'");
    // A wrong dimension on line 1,500 of 2,500: the file and line are named, nothing is kept.
    let row = |i: usize, tokens: &str| {
        format!(r#"{{"_id": "b{i}", "title": "t", "year": 1, "tokens": {tokens}, "mean": [1, 0]}}"#)
    };
    let bad: Vec<String> =
        (1..=2500).map(|i| row(i, if i == 1500 { "[[1,0,0]]" } else { "[[1,0]]" })).collect();
    std::fs::write(&jsonl, bad.join("\n")).unwrap();
    let (code, msg) = err(&db, &format!("IMPORT INTO docs FROM '{}'", jsonl.display()));
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("d.jsonl: line 1500"), "{msg}");
    assert_eq!(count(&db), 51, "nothing of the failed file is kept");
    // With a UTF-8 byte-order mark, 2,500 good lines go in; again, the ids exist: an
    // error naming the line, nothing changed; ON CONFLICT SKIP resumes, REPLACE replaces.
    let good: Vec<String> = (1..=2500).map(|i| row(i, "[[1,0]]")).collect();
    std::fs::write(&jsonl, format!("\u{feff}{}", good.join("\n"))).unwrap();
    ok(&db, &format!("IMPORT INTO docs FROM '{}'", jsonl.display()));
    assert_eq!(count(&db), 2551);
    let more: Vec<String> = (2001..=3000).map(|i| row(i, "[[0,1]]")).collect();
    std::fs::write(&jsonl, more.join("\n")).unwrap();
    let (_, msg) = err(&db, &format!("IMPORT INTO docs FROM '{}'", jsonl.display()));
    assert!(
        msg.contains("line 1") && msg.contains("already exists") && msg.contains("ON CONFLICT SKIP"),
        "{msg}"
    );
    assert_eq!(count(&db), 2551);
    let r = ok(&db, &format!("IMPORT INTO docs FROM '{}' ON CONFLICT SKIP", jsonl.display()));
    assert_eq!(r[0]["message"], "imported 500 documents into docs");
    assert_eq!(count(&db), 3051);
    ok(&db, &format!("IMPORT INTO docs FROM '{}' ON CONFLICT REPLACE", jsonl.display()));
    assert_eq!(count(&db), 3051);
    let r =
        ok(&db, "SELECT id, score FROM docs WHERE id IN ('b2001', 'b1') ORDER BY maxsim('[[0,1]]') LIMIT 2");
    assert_eq!(ids(&r[0]), ["b2001", "b1"], "b2001's vectors were replaced: {}", r[0]);
    assert!((r[0]["rows"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-3);
}

/// SciFact through the shell with the real model: import a slice, search in each mode.
#[cfg(feature = "embed")]
#[test]
fn scifact_slice_through_the_shell() {
    if crate::embed::minilm().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sf.msdb");
    let corpus = std::fs::read_to_string("../shared/datasets/scifact/corpus.jsonl").unwrap();
    let slice = dir.path().join("slice.jsonl");
    std::fs::write(&slice, corpus.lines().take(60).collect::<Vec<_>>().join("\n")).unwrap();
    let r = ok(
        &db,
        &format!(
            "CREATE COLLECTION sf (title TEXT, text TEXT) WITH (model = 'all-MiniLM-L6-v2', embed = 'title,text', pooled = 'model');
             IMPORT INTO sf FROM '{}';
             CREATE INDEX ON sf USING fulltext;",
            slice.display()
        ),
    );
    // BEIR's `metadata` names nothing in the collection: left out, and said so.
    assert_eq!(
        r[1]["message"],
        "imported 60 documents into sf; fields naming nothing in sf were left out: 'metadata' (line 1)"
    );
    // The first SciFact abstract, by its own title words, in every mode.
    let first: J = serde_json::from_str(corpus.lines().next().unwrap()).unwrap();
    let title = first["title"].as_str().unwrap().replace('\'', "''");
    let want = first["_id"].as_str().unwrap();
    for f in ["maxsim", "bm25", "hybrid"] {
        let r = ok(&db, &format!("SELECT id, score FROM sf ORDER BY {f}('{title}') LIMIT 3"));
        assert_eq!(ids(&r[0])[0], want, "{f}");
    }
    let r = ok(&db, &format!("SELECT id FROM sf ORDER BY dense(model, '{title}') LIMIT 3"));
    assert_eq!(ids(&r[0])[0], want);
    let r = ok(&db, "INSERT INTO sf (id, title, text) VALUES ('new', 'Zebrafish fins', 'Fins regrow.')");
    assert_eq!(r[0]["message"], "inserted 1 document");
    let r = ok(&db, "SELECT id FROM sf ORDER BY hybrid('zebrafish fin regrowth') LIMIT 1");
    assert_eq!(ids(&r[0]), ["new"]);
}

/// Files named without a directory land in the working directory (their parent is the
/// empty path, which must be fsynced as `.`).
#[test]
fn backup_and_export_to_a_bare_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut sql = String::from(
        "CREATE COLLECTION c (t TEXT) WITH (dim = 2); INSERT INTO c (id, t, tokens) VALUES ('a', 'x', '[[1,0]]'); \
         BACKUP TO 'b.msdb.zst';",
    );
    if cfg!(feature = "parquet") {
        sql.push_str(" EXPORT c TO 'c.parquet'; IMPORT INTO c2 FROM 'c.parquet';");
    }
    let out =
        bin().current_dir(dir.path()).args(["d.msdb", "--format", "json", "-c", &sql]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("b.msdb.zst").is_file());
    if cfg!(feature = "parquet") {
        assert!(dir.path().join("c.parquet").is_file());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("imported 1 documents"), "{text}");
    }
}

/// Indexes as side files through the shell: CREATE INDEX reports them, SHOW INDEXES their
/// state, STATS the bytes per index and of the catalog; DROP INDEX removes the bytes.
#[test]
fn index_side_files_through_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ix.msdb");
    let rows: Vec<String> = (0..60)
        .map(|i| {
            let (a, b) = ((i as f32 * 0.1).cos(), (i as f32 * 0.1).sin());
            format!("('d{i}', '[[{a}, {b}], [{b}, {a}]]', '[{a}, {b}]')")
        })
        .collect();
    ok(
        &db,
        &format!(
            "CREATE COLLECTION v WITH (dim = 2, pooled = 'mean:2');
             INSERT INTO v (id, tokens, mean) VALUES {}; FLUSH v",
            rows.join(", ")
        ),
    );
    let r = ok(&db, "CREATE INDEX ON v USING plaid WITH (centroids = 4); SHOW INDEXES ON v; STATS v");
    assert!(r[0]["message"].as_str().unwrap().contains("no segment rewritten"), "{}", r[0]);
    assert_eq!(r[1]["rows"][0]["kind"], "plaid");
    assert_eq!(r[1]["rows"][0]["state"], "ready");
    let stat = |r: &J, k: &str| {
        r["rows"].as_array().unwrap().iter().find(|x| x["stat"] == k).map(|x| x["value"].clone())
    };
    assert!(stat(&r[2], "index_bytes:plaid").and_then(|v| v.as_u64()).is_some_and(|b| b > 0), "{}", r[2]);
    assert!(stat(&r[2], "catalog_bytes").and_then(|v| v.as_u64()).is_some_and(|b| b > 0), "{}", r[2]);
    let r = ok(&db, "EXPLAIN SELECT id FROM v ORDER BY maxsim('[[1, 0]]') LIMIT 3 WITH (plan = 'plaid')");
    assert!(r[0].to_string().contains("plaid_probe"), "{}", r[0]);
    let r = ok(&db, "DROP INDEX plaid ON v; STATS v");
    assert_eq!(stat(&r[1], "index_bytes:plaid"), None, "{}", r[1]);
}

/// `CHECK` that finds damage prints the problems in full and exits with the corruption
/// code (6), on writable and read-only handles; a clean CHECK exits 0.
#[test]
fn check_that_finds_damage_exits_with_the_corruption_code() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.msdb");
    ok(&db, "CREATE COLLECTION docs WITH (dim = 2)");
    ok(&db, "INSERT INTO docs (id, tokens) VALUES ('a', '[[1,0],[0,1]]'), ('b', '[[0.6,0.8]]')");
    ok(&db, "FLUSH docs");
    assert!(run(&db, "CHECK").0.status.success());
    let seg = std::fs::read_dir(db.join("segments"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // A byte of the token vectors (after the 64-byte header and the small sections).
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    for args in [&["--format", "json"][..], &["--read-only", "--format", "json"][..]] {
        let out = bin().arg(&db).args(args).args(["-c", "CHECK"]).output().unwrap();
        assert_eq!(out.status.code(), Some(6), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("checksum mismatch"), "{text}");
    }
    // The table view prints the problem whole (its last column is never cut).
    let out = bin().arg(&db).args(["--format", "table", "-c", "CHECK"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = String::from_utf8_lossy(
        &bin().arg(&db).args(["--format", "json", "-c", "CHECK"]).output().unwrap().stdout,
    )
    .to_string();
    let v: J = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    let problem = v["rows"][0]["problem"].as_str().unwrap().to_string();
    assert!(problem.len() > 60 && text.contains(&problem), "{text}");
}

/// Bytes that are not UTF-8: a database path may hold them (paths are bytes); a `-c`
/// argument or a `-f` file with them is a usage error naming where, never a panic; `-i
/// --format json` keeps standard output pure JSON Lines (the banner goes to stderr).
#[test]
fn non_utf8_input_is_refused_clearly_and_the_banner_stays_off_stdout() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.msdb");
    let db = dir.path().join(latin1);
    let out = bin()
        .arg(&db)
        .args(["--format", "json", "-c", "CREATE COLLECTION c WITH (dim = 2)"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(db.join("catalog.sqlite").exists());
    let bad = std::ffi::OsStr::from_bytes(b"SHOW COLLECTIONS WHERE x = '\xe9'");
    let out = bin().arg(&db).arg("-c").arg(bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid UTF-8"));
    let script = dir.path().join("s.sql");
    std::fs::write(&script, b"SHOW COLLECTIONS;\nSELECT '\xe9';\n").unwrap();
    let out = bin().arg(&db).arg("-f").arg(&script).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("not valid UTF-8"), "{err}");
    let mut child = bin()
        .arg(&db)
        .args(["-i", "--format", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("MAXSIMDB_HISTORY", "")
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"SHOW COLLECTIONS;\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.trim().is_empty());
    for l in stdout.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<J>(l).unwrap_or_else(|e| panic!("not JSON on stdout: {l}: {e}"));
    }
}

/// Meta commands work in `-c`, `-f` and piped scripts, on lines of their own between
/// statements (as sqlite3 and duckdb take them).
#[test]
fn meta_commands_work_in_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.msdb");
    ok(&db, "CREATE COLLECTION alpha WITH (dim = 2); CREATE COLLECTION beta WITH (dim = 3)");
    let out = bin().arg(&db).args(["-c", ".help"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(".schema"));
    // `.mode csv` switches the output of the statements after it.
    let script = dir.path().join("m.sql");
    std::fs::write(&script, "SHOW COLLECTIONS;\n.mode csv\nSHOW COLLECTIONS;\n").unwrap();
    let out = bin().arg(&db).args(["--format", "json", "-f"]).arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with('{'), "{text}");
    assert!(text.contains("collection,"), "csv header after .mode csv: {text}");
    // Piped: .schema prints every collection under its name.
    let mut child = bin()
        .arg(&db)
        .args(["--format", "table"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b".tables\n.schema\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("-- collection alpha") && text.contains("-- collection beta"), "{text}");
}

/// The SQL people expect (new-user issue, item 14): listing without a score function,
/// ORDER BY a column, LIMIT/OFFSET (listings and searches), COUNT(*), IF [NOT] EXISTS,
/// INSERT OR REPLACE, UPDATE without WHERE.
#[test]
fn listing_counting_offsets_upserts_and_if_exists() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("l.msdb");
    ok(
        &db,
        "CREATE COLLECTION IF NOT EXISTS d (title TEXT, year INTEGER) WITH (dim = 2);
         CREATE COLLECTION IF NOT EXISTS d (other TEXT) WITH (dim = 3);
         INSERT INTO d (id, title, year, tokens) VALUES
           ('a', 'one', 2003, '[[1,0]]'), ('b', 'two', 2001, '[[0.8,0.6]]'),
           ('c', 'three', 2002, '[[0.6,0.8]]'), ('e', 'four', NULL, '[[0,1]]');",
    );
    // Without `dim` (or a model) the error says what to add.
    let (code, msg) = err(&db, "CREATE COLLECTION x (t TEXT)");
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("WITH (dim = 128)"), "{msg}");
    // IF NOT EXISTS kept the first definition.
    let r = ok(&db, "SELECT * FROM d");
    assert_eq!(ids(&r[0]), ["a", "b", "c", "e"], "insertion order");
    assert_eq!(r[0]["rows"][0]["title"], "one");
    assert!(r[0]["rows"][0].get("score").is_none(), "a listing has no score: {}", r[0]);
    let r = ok(&db, "SELECT id, year FROM d WHERE year IS NOT NULL ORDER BY year DESC");
    assert_eq!(ids(&r[0]), ["a", "c", "b"]);
    let r = ok(&db, "SELECT id FROM d ORDER BY id LIMIT 2 OFFSET 1");
    assert_eq!(ids(&r[0]), ["b", "c"]);
    let r = ok(&db, "SELECT COUNT(*) FROM d");
    assert_eq!(r[0]["rows"][0]["count"], 4);
    let r = ok(&db, "SELECT COUNT(*) FROM d WHERE year < 2003");
    assert_eq!(r[0]["rows"][0]["count"], 2);
    // Searches: OFFSET skips the best hits.
    let all = ok(&db, "SELECT id FROM d ORDER BY maxsim('[[1,0]]') LIMIT 4");
    assert_eq!(ids(&all[0]), ["a", "b", "c", "e"]);
    let r = ok(&db, "SELECT id FROM d ORDER BY maxsim('[[1,0]]') LIMIT 2 OFFSET 1");
    assert_eq!(ids(&r[0]), ["b", "c"]);
    // score only where something is scored; search options only on searches.
    let (code, msg) = err(&db, "SELECT id, score FROM d");
    assert_eq!(code, 2, "{msg}");
    assert!(msg.contains("score needs ORDER BY a score function"), "{msg}");
    let (_, msg) = err(&db, "SELECT id FROM d ORDER BY nosuch");
    assert!(msg.contains("nosuch"), "{msg}");
    // INSERT OR REPLACE replaces; plain INSERT of an existing id still fails.
    ok(&db, "INSERT OR REPLACE INTO d (id, title, year, tokens) VALUES ('a', 'uno', 1999, '[[0,1]]'), ('f', 'five', 2005, '[[1,0]]')");
    let r = ok(&db, "SELECT id, title FROM d WHERE id IN ('a', 'f') ORDER BY id");
    assert_eq!(r[0]["rows"][0]["title"], "uno");
    assert_eq!(ids(&r[0]), ["a", "f"]);
    let r = ok(&db, "SELECT id FROM d ORDER BY maxsim('[[1,0]]') LIMIT 1");
    assert_eq!(ids(&r[0]), ["f"], "a's vectors were replaced");
    err(&db, "INSERT INTO d (id, title, tokens) VALUES ('a', 'dup', '[[1,0]]')");
    // UPDATE without WHERE updates every document, as DELETE without WHERE deletes all.
    let r = ok(&db, "UPDATE d SET year = 2020");
    assert!(r.is_empty() || !r[0].to_string().contains("error"));
    let r = ok(&db, "SELECT COUNT(*) FROM d WHERE year = 2020");
    assert_eq!(r[0]["rows"][0]["count"], 5);
    // IF [NOT] EXISTS on indexes and DROP.
    ok(&db, "CREATE INDEX IF NOT EXISTS ON d USING plaid WITH (centroids = 2)");
    ok(&db, "CREATE INDEX IF NOT EXISTS ON d USING plaid WITH (centroids = 2)");
    err(&db, "CREATE INDEX ON d USING plaid WITH (centroids = 2)");
    ok(&db, "DROP INDEX IF EXISTS plaid ON d; DROP INDEX IF EXISTS plaid ON d");
    err(&db, "DROP INDEX plaid ON d");
    ok(&db, "DROP COLLECTION IF EXISTS d; DROP COLLECTION IF EXISTS d");
    err(&db, "DROP COLLECTION d");
}

/// Thirty separate `-c INSERT` runs (the new-user issue's item 16) leave no segment file
/// each: small pending sets stay in the catalog (durable, searched) until a flush pays.
#[test]
fn many_short_sessions_do_not_leave_a_segment_each() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.msdb");
    ok(&db, "CREATE COLLECTION d WITH (dim = 2)");
    for i in 0..30 {
        ok(&db, &format!("INSERT INTO d (id, tokens) VALUES ('x{i}', '[[1,{i}]]')"));
    }
    let r = ok(&db, "STATS d");
    let stat = |name: &str| {
        r[0]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["stat"] == name)
            .map(|row| row["value"].clone())
    };
    assert_eq!(stat("docs"), Some(J::from(30)), "{}", r[0]);
    assert_eq!(stat("segments"), Some(J::from(0)), "{}", r[0]);
    assert_eq!(ok(&db, "SELECT COUNT(*) FROM d")[0]["rows"][0]["count"], 30);
    // FLUSH still writes them out when asked.
    ok(&db, "FLUSH d");
    assert_eq!(
        ok(&db, "STATS d")[0]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["stat"] == "segments")
            .unwrap()["value"],
        1
    );
}

#[test]
fn table_json_and_csv_output_keep_values_readable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("o.msdb");
    let long = "x".repeat(80);
    ok(
        &db,
        &format!(
            "CREATE COLLECTION o (title TEXT, n INTEGER, x REAL) WITH (dim = 2);
             INSERT INTO o (id, title, n, x, tokens) VALUES
               ('a', 'two\nlines\tand a tab', 7, 0.1234567890123, '[[1,0]]'),
               ('b', '漢字と emoji 🎉', 12345, NULL, '[[0,1]]'),
               ('c', '{long}', NULL, 2.5, '[[1,0]]')"
        ),
    );
    // Table: one line per row whatever the text holds, every line as wide on a terminal
    // (CJK and emoji take two cells), long text cut with an ellipsis, numbers on the right.
    let text = stdout_in(&db, "table", "SELECT id, title, n, x FROM o ORDER BY id");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "header, rule, 3 rows, count:\n{text}");
    let w = unicode_width::UnicodeWidthStr::width(lines[0]);
    for l in &lines[..5] {
        assert_eq!(unicode_width::UnicodeWidthStr::width(*l), w, "misaligned:\n{text}");
    }
    assert!(lines[2].contains("two\\nlines\\tand a tab"), "{text}");
    assert!(lines[2].contains(" |     7 | "), "integers right-aligned:\n{text}");
    assert!(lines[3].contains("漢字と emoji 🎉"), "{text}");
    assert!(lines[4].contains("xxx…") && !lines[4].contains(&long), "{text}");
    assert_eq!(lines[5], "(3 rows)");
    // JSON: keys in SELECT order.
    let text = stdout_in(&db, "json", "SELECT x, id, title FROM o ORDER BY id");
    assert!(
        text.starts_with(r#"{"rows":[{"x":0.1234567890123,"id":"a","title":"two\nlines\tand a tab"}"#),
        "{text}"
    );
    // CSV: every digit of a REAL, NULL as the empty cell.
    let text = stdout_in(&db, "csv", "SELECT id, n, x FROM o ORDER BY id");
    assert_eq!(text, "id,n,x\na,7,0.1234567890123\nb,12345,\nc,,2.5\n");
}

#[test]
fn csv_import_reads_rfc_4180_and_round_trips_through_csv_output() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.msdb");
    ok(&db, "CREATE COLLECTION o (title TEXT, n INTEGER, x REAL) WITH (dim = 2)");
    // A quoted line break and quotes inside a field, empty numeric cells (NULL), vectors as
    // JSON in quoted cells.
    let cells = "a,\"two\nlines, and \"\"quotes\"\"\",,0.25\nb,plain,3,\n";
    let input: String = "id,title,n,x,tokens\n".to_string()
        + &cells.replace(",0.25\n", ",0.25,\"[[1,0]]\"\n").replace("3,\n", "3,,\"[[0,1]]\"\n");
    let file = dir.path().join("in.csv");
    std::fs::write(&file, &input).unwrap();
    let r = ok(&db, &format!("IMPORT INTO o FROM '{}'", file.display()));
    assert_eq!(r[0]["message"], "imported 2 documents into o");
    let r = ok(&db, "SELECT id, n, x FROM o WHERE n IS NULL");
    assert_eq!(ids(&r[0]), ["a"]);
    // What CSV output writes is what was read.
    assert_eq!(
        stdout_in(&db, "csv", "SELECT id, title, n, x FROM o ORDER BY id"),
        format!("id,title,n,x\n{cells}")
    );
    // Errors name the line a record starts on, counting the lines inside quoted fields.
    std::fs::write(&file, input.clone() + "c,bad,notanint,1,\"[[1,0]]\"\n").unwrap();
    let (code, msg) = err(&db, &format!("IMPORT INTO o FROM '{}'", file.display()));
    assert_eq!(code, 2);
    assert!(msg.contains("line 5"), "{msg}");
}

/// `--read-only` on a database in a directory this user cannot write (read-only media,
/// another user's files): a clean close leaves no `-wal`/`-shm` beside the catalog, and a
/// non-root user then reads, searches (MaxSim, BM25) and is told that writes need write
/// access. Run as root (CI), the reads run as user `nobody` through `setpriv`.
#[test]
fn read_only_opens_a_database_on_a_directory_the_user_cannot_write() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ro.msdb");
    ok(
        &db,
        "CREATE COLLECTION docs (title TEXT) WITH (dim = 2);
         INSERT INTO docs (id, title, tokens) VALUES
           ('a', 'Cats purr on mats', '[[1,0],[0.6,0.8]]'), ('b', 'Dogs bark', '[[0,1]]');
         CREATE INDEX ON docs USING fulltext;",
    );
    for leftover in ["catalog.sqlite-wal", "catalog.sqlite-shm"] {
        assert!(!db.join(leftover).exists(), "{leftover} left after a clean close");
    }
    // Everything readable by all, writable by none; the binary where `nobody` can run it.
    fn seal(p: &Path) {
        let meta = std::fs::metadata(p).unwrap();
        if meta.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                seal(&e.unwrap().path());
            }
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o555)).unwrap();
        } else {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    seal(&db);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("maxsimdb");
    std::fs::copy(env!("CARGO_BIN_EXE_maxsimdb"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let root =
        String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap().trim() == "0";
    let as_user = |args: &[&str]| -> Output {
        let mut c = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        c.arg(&db).args(["--format", "json"]).args(args).output().unwrap()
    };
    // The user really cannot write there.
    let probe = as_user(&["--read-only", "-c", "SELECT COUNT(*) FROM docs"]);
    let text =
        |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let first_json = |o: &Output| -> J {
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap()
    };
    assert!(probe.status.success(), "{}", text(&probe));
    assert!(text(&probe).contains('2'), "{}", text(&probe));
    let r = as_user(&["--read-only", "-c", "SELECT id FROM docs ORDER BY maxsim('[[1,0]]') LIMIT 2"]);
    assert!(r.status.success(), "{}", text(&r));
    let line = first_json(&r);
    assert_eq!(ids(&line), ["a", "b"]);
    let r = as_user(&["--read-only", "-c", "SELECT id FROM docs ORDER BY bm25('cats') LIMIT 2"]);
    assert!(r.status.success(), "{}", text(&r));
    let line = first_json(&r);
    assert_eq!(ids(&line), ["a"]);
    // Writes: refused with the read-only code, and nothing appears in the directory.
    let w = as_user(&["--read-only", "-c", "INSERT INTO docs (id, tokens) VALUES ('c', '[[1,0]]')"]);
    assert_eq!(w.status.code(), Some(9), "{}", text(&w));
    let before: Vec<_> = std::fs::read_dir(&db).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!before.iter().any(|n| n.to_string_lossy().contains("-shm")), "{before:?}");
    // Without --read-only the open says it cannot write there.
    let w = as_user(&["-c", "SELECT COUNT(*) FROM docs"]);
    assert!(!w.status.success());
    assert!(text(&w).to_lowercase().contains("permission") || text(&w).contains("read-only"), "{}", text(&w));
}

/// Ctrl-C (SIGINT) during a long IMPORT in a script: the import stops at a batch boundary,
/// the shell exits with the interrupted status (15) and says what was kept; the same IMPORT
/// with ON CONFLICT SKIP finishes it.
#[test]
fn ctrl_c_stops_a_long_import_at_a_batch_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("int.msdb");
    ok(&db, "CREATE COLLECTION c (n INTEGER) WITH (dim = 2, dtype = 'f32')");
    let file = dir.path().join("big.jsonl");
    let total = 200_000;
    let mut text = String::with_capacity(total * 40);
    for i in 0..total {
        text.push_str(&format!(
            "{{\"id\": \"d{i}\", \"n\": {i}, \"tokens\": [[1, {}]]}}\n",
            (i % 100) as f32 / 100.0
        ));
    }
    std::fs::write(&file, text).unwrap();
    let import = format!("IMPORT INTO c FROM '{}'", file.display());
    let mut child = bin()
        .arg(&db)
        .args(["--format", "json", "-c", &import])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until a batch is committed (a read-only handle sees it), then press Ctrl-C.
    let count = || maxsimdb::Database::open_read_only(&db).and_then(|r| r.count("c", None)).unwrap_or(0);
    while count() == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the import ended ({status}) before a batch was seen");
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(15), "{stderr}");
    assert!(stderr.contains("documents are committed") && stderr.contains("ON CONFLICT SKIP"), "{stderr}");
    let kept = count();
    assert!(kept > 0 && kept < total as u64 && kept.is_multiple_of(1000), "{kept} kept");
    assert!(stderr.contains(&format!("{kept} of {total} documents")), "{stderr}");
    ok(&db, &format!("{import} ON CONFLICT SKIP"));
    assert_eq!(count(), total as u64);
}
