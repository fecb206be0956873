//! The `maxsimdb` shell: the SQL-like language at a terminal, in scripts, and on pipes.
//!
//! ```text
//! maxsimdb PATH                      interactive (line editing, history in ~/.maxsimdb_history
//!                                    or $MAXSIMDB_HISTORY)
//! maxsimdb PATH -c "STATEMENTS"      run and exit
//! maxsimdb PATH -f FILE.sql          run a file
//! ... | maxsimdb PATH                statements from standard input
//! ```
//! Output: `--format table|json|csv` (default: table on a terminal, json otherwise).
//! Errors go to standard error with the statement and position; the exit status is the
//! error's code (non-zero).

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::time::Instant;

use maxsimdb::sql::{Session, StatementResult};
use maxsimdb::{Database, Value};

const USAGE: &str =
    "usage: maxsimdb PATH [-c STATEMENTS | -f FILE | -i] [--format table|json|csv] [--read-only]
  Opens the database directory PATH (created if absent, unless --read-only) and runs
  statements: from -c, from -f FILE, from standard input, or interactively (the default
  on a terminal; -i forces it, e.g. to drive the shell through a pipe).
  Type .help in the shell for the statements and meta commands.";

const HELP: &str = "Statements (end each with ;):
  CREATE COLLECTION name (col TEXT|INTEGER|REAL|JSON, ...) WITH (dim = 128, pooled = 'mean:128',
      dtype = 'f16', model = 'all-MiniLM-L6-v2', embed = 'title,text', id = 'text'|'integer')
  DROP COLLECTION name;   SHOW COLLECTIONS;   DESCRIBE name;   STATS name;
  CREATE INDEX ON name USING plaid | muvera | fulltext[(col)] | hnsw(field) [WITH (...)];
  DROP INDEX plaid|muvera|fulltext|hnsw:field ON name;   SHOW INDEXES ON name;
  INSERT INTO name (id, col, ..., tokens, field) VALUES (...), (...);
      (tokens: '[[...],...]', pooled field: '[...]'; or only text columns with a model)
  IMPORT INTO name FROM 'file.jsonl' | 'file.csv' | 'file.parquet';   EXPORT name TO 'file.parquet';
  UPDATE name SET col = value, ... WHERE filter;     DELETE FROM name [WHERE filter];
  SELECT id, score, col | * FROM name [WHERE filter]
      ORDER BY maxsim('text' | '[[...]]') | dense(field, 'text' | '[...]') | bm25('text')
             | hybrid('text' [, 'bm25,maxsim,dense:field']) [LIMIT k];
  EXPLAIN SELECT ...;   HOPFIELD name USING field '[...]' [WITH (beta = 20, steps = 1, top_k = 100)];
  FLUSH name;   VACUUM name;   CHECK;   BACKUP TO 'file';   RESTORE FROM 'file' INTO 'dir';
Meta commands:
  .help  .tables  .schema [name]  .timer on|off  .mode table|json|csv  .quit";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Csv,
}

struct Shell {
    session: Session,
    format: Format,
    timer: bool,
    /// The first non-success status a statement reported (CHECK that found damage).
    status: Option<maxsimdb::ErrorCode>,
}

fn main() -> ExitCode {
    // The database path may be any bytes (as paths are on Unix); every other argument
    // must be UTF-8 text.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let mut os_path: Option<std::ffi::OsString> = None;
    let mut args: Vec<String> = Vec::with_capacity(raw.len());
    let mut prev_takes_value = false;
    for a in raw {
        match a.into_string() {
            Ok(s) => {
                prev_takes_value = matches!(s.as_str(), "-c" | "-f" | "--format" | "-m");
                args.push(s);
            }
            Err(a) if !prev_takes_value && os_path.is_none() => {
                os_path = Some(a);
                args.push("\u{0}path".into());
            }
            Err(a) => {
                return usage_error(&format!(
                    "argument {} is not valid UTF-8: statements and options must be UTF-8 text",
                    a.to_string_lossy()
                ))
            }
        }
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "-V" || a == "--version") {
        println!("maxsimdb {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let (mut path, mut command, mut file, mut format, mut read_only) = (None, None, None, None, false);
    let mut force_interactive = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" => command = it.next().cloned(),
            "-f" => file = it.next().cloned(),
            "--format" | "-m" => {
                format = match it.next().map(String::as_str) {
                    Some("table") => Some(Format::Table),
                    Some("json") => Some(Format::Json),
                    Some("csv") => Some(Format::Csv),
                    _ => return usage_error("--format needs table, json or csv"),
                }
            }
            "--read-only" => read_only = true,
            "-i" | "--interactive" => force_interactive = true,
            other if other.starts_with('-') => return usage_error(&format!("unknown option {other}")),
            "\u{0}path" if path.is_none() => path = os_path.clone().map(std::path::PathBuf::from),
            other if path.is_none() => path = Some(std::path::PathBuf::from(other)),
            other => return usage_error(&format!("unexpected argument {other}")),
        }
    }
    let Some(path) = path else { return usage_error("missing PATH") };
    let interactive =
        command.is_none() && file.is_none() && (force_interactive || std::io::stdin().is_terminal());
    let format = format.unwrap_or(if std::io::stdout().is_terminal() { Format::Table } else { Format::Json });
    let db = match Database::builder(&path).read_only(read_only).open() {
        Ok(db) => db,
        Err(e) => return fail(&e),
    };
    let mut shell = Shell { session: Session::new(db), format, timer: false, status: None };
    let input = if let Some(c) = command {
        c
    } else if let Some(f) = file {
        match std::fs::read(&f) {
            Ok(b) => match String::from_utf8(b) {
                Ok(s) => s,
                Err(e) => {
                    let bad = e.utf8_error().valid_up_to();
                    let line = e.as_bytes()[..bad].iter().filter(|&&c| c == b'\n').count() + 1;
                    eprintln!("error: {f} line {line}: not valid UTF-8 (byte {bad}); save the file as UTF-8");
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                eprintln!("error: cannot read {f}: {e}");
                return ExitCode::from(10);
            }
        }
    } else if interactive {
        return shell.interactive();
    } else {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("error: cannot read standard input: {e}");
            return ExitCode::from(10);
        }
        s
    };
    match shell.run_script(&input) {
        // CHECK printed its problems; the exit status says damage was found.
        Ok(()) => shell.status.map_or(ExitCode::SUCCESS, |c| ExitCode::from(c as u8)),
        Err(e) => fail(&e),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn fail(e: &maxsimdb::Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(u8::try_from(e.code() as i32).unwrap_or(1).max(1))
}

/// True when `buf` holds a complete statement: ends with `;` outside quotes.
fn complete(buf: &str) -> bool {
    let (mut single, mut double) = (false, false);
    let mut last = None;
    for ch in buf.chars() {
        match ch {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ => {}
        }
        if !ch.is_whitespace() {
            last = Some(ch);
        }
    }
    !single && !double && last == Some(';')
}

impl Shell {
    /// Run a script (`-c`, `-f`, standard input): statements, and meta commands on lines
    /// of their own between statements, as the interactive shell takes them.
    fn run_script(&mut self, input: &str) -> maxsimdb::Result<()> {
        let is_meta = |l: &str| l.trim_start().starts_with('.');
        if !input.lines().any(is_meta) {
            return self.run(input);
        }
        let mut buf = String::new();
        for line in input.lines() {
            if buf.trim().is_empty() && is_meta(line) {
                buf.clear();
                if !self.meta(line.trim()) {
                    return Ok(());
                }
                continue;
            }
            buf.push_str(line);
            buf.push('\n');
            if complete(&buf) {
                self.run(&buf)?;
                buf.clear();
            }
        }
        if buf.trim().is_empty() {
            Ok(())
        } else {
            self.run(&buf)
        }
    }

    fn run(&mut self, sql: &str) -> maxsimdb::Result<()> {
        let start = Instant::now();
        let progress_tty = std::io::stderr().is_terminal();
        let mut progress = |n: usize, unit: &str| {
            if progress_tty {
                eprint!("\r{n} {unit} ({:.0} s)", start.elapsed().as_secs_f64());
            }
        };
        let session = self.session.clone();
        let result = session.execute_with(sql, &[], &mut progress, &mut |r| {
            if progress_tty {
                eprint!("\r\x1b[K");
            }
            self.status = self.status.or(r.status);
            self.print(&r);
        });
        result?;
        if self.timer {
            eprintln!("time: {:.6} s", start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn interactive(&mut self) -> ExitCode {
        let mut rl = match rustyline::DefaultEditor::new() {
            Ok(rl) => rl,
            Err(e) => {
                eprintln!("error: cannot start the line editor: {e}");
                return ExitCode::from(1);
            }
        };
        // `MAXSIMDB_HISTORY` names the history file (empty: none); default ~/.maxsimdb_history.
        let history = match std::env::var_os("MAXSIMDB_HISTORY") {
            Some(p) if p.is_empty() => None,
            Some(p) => Some(std::path::PathBuf::from(p)),
            None => std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".maxsimdb_history")),
        };
        if let Some(h) = &history {
            let _ = rl.load_history(h);
        }
        // The banner goes to standard error: standard output carries only results (JSON
        // Lines stay parseable with -i --format json).
        eprintln!("maxsimdb {} — .help for help, .quit to leave", env!("CARGO_PKG_VERSION"));
        let mut buf = String::new();
        let mut failures = 0;
        loop {
            let prompt = if buf.is_empty() { "maxsimdb> " } else { "     ...> " };
            let line = match rl.readline(prompt) {
                Ok(l) => l,
                Err(rustyline::error::ReadlineError::Interrupted) => {
                    buf.clear();
                    continue;
                }
                Err(rustyline::error::ReadlineError::Eof) => break,
                // E.g. a byte that is not UTF-8 (a Latin-1 é): say so, drop the line, go on.
                Err(e) => {
                    failures += 1;
                    eprintln!("error: {e}: the line was dropped (the shell reads UTF-8 text)");
                    if failures >= 3 {
                        return ExitCode::from(10);
                    }
                    continue;
                }
            };
            failures = 0;
            if buf.is_empty() && line.trim_start().starts_with('.') {
                let _ = rl.add_history_entry(line.as_str());
                if !self.meta(line.trim()) {
                    break;
                }
                continue;
            }
            buf.push_str(&line);
            buf.push('\n');
            if complete(&buf) {
                let _ = rl.add_history_entry(buf.trim());
                if let Err(e) = self.run(&buf) {
                    eprintln!("error: {e}");
                }
                buf.clear();
            }
        }
        if let Some(h) = &history {
            let _ = rl.save_history(h);
        }
        ExitCode::SUCCESS
    }

    /// A meta command; false to quit.
    fn meta(&mut self, cmd: &str) -> bool {
        let mut parts = cmd.split_whitespace();
        let name = parts.next().unwrap_or("");
        let arg = parts.next();
        let result = match name {
            ".quit" | ".exit" => return false,
            ".help" => {
                println!("{HELP}");
                Ok(())
            }
            ".tables" => self.run("SHOW COLLECTIONS"),
            ".schema" => match arg {
                Some(c) => self.run(&format!("DESCRIBE \"{}\"", c.replace('"', ""))),
                None => self.session.database().collections().map(|cs| {
                    for c in cs {
                        // Each collection's table under its name.
                        if self.format == Format::Table {
                            println!("-- collection {}", c.name);
                        }
                        let _ = self.run(&format!("DESCRIBE \"{}\"", c.name));
                    }
                }),
            },
            ".timer" => {
                self.timer = arg == Some("on");
                Ok(())
            }
            ".mode" => {
                match arg {
                    Some("table") => self.format = Format::Table,
                    Some("json") => self.format = Format::Json,
                    Some("csv") => self.format = Format::Csv,
                    _ => eprintln!("usage: .mode table|json|csv"),
                }
                Ok(())
            }
            other => {
                eprintln!("unknown meta command {other} (.help lists them)");
                Ok(())
            }
        };
        if let Err(e) = result {
            eprintln!("error: {e}");
        }
        true
    }

    fn print(&self, r: &StatementResult) {
        let mut out = std::io::stdout().lock();
        match self.format {
            Format::Table => {
                if !r.columns.is_empty() {
                    let cells: Vec<Vec<String>> =
                        r.rows.iter().map(|row| row.iter().map(show).collect()).collect();
                    let mut w: Vec<usize> = r.columns.iter().map(|c| c.chars().count()).collect();
                    for row in &cells {
                        for (i, c) in row.iter().enumerate() {
                            w[i] = w[i].max(c.chars().count()).min(60);
                        }
                    }
                    // Cells wider than 60 characters are cut with an ellipsis, except in
                    // the last column, which nothing follows (CHECK problems, messages).
                    let last = w.len().saturating_sub(1);
                    let line = |cells: &[String]| -> String {
                        cells
                            .iter()
                            .zip(&w)
                            .enumerate()
                            .map(|(i, (c, &w))| {
                                if i == last {
                                    c.clone()
                                } else if c.chars().count() > w {
                                    let cut: String = c.chars().take(w.saturating_sub(1)).collect();
                                    format!("{cut}…")
                                } else {
                                    format!("{c:<w$}")
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(" | ")
                    };
                    let _ = writeln!(out, "{}", line(&r.columns));
                    let _ =
                        writeln!(out, "{}", w.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>().join("-+-"));
                    for row in &cells {
                        let _ = writeln!(out, "{}", line(row));
                    }
                    let _ =
                        writeln!(out, "({} row{})", r.rows.len(), if r.rows.len() == 1 { "" } else { "s" });
                }
                if let Some(m) = &r.message {
                    let _ = writeln!(out, "{m}");
                }
            }
            Format::Json => {
                let mut obj = serde_json::Map::new();
                if !r.columns.is_empty() {
                    let rows: Vec<serde_json::Value> = r
                        .rows
                        .iter()
                        .map(|row| {
                            serde_json::Value::Object(
                                r.columns.iter().cloned().zip(row.iter().map(json)).collect(),
                            )
                        })
                        .collect();
                    obj.insert("rows".into(), rows.into());
                }
                if let Some(m) = &r.message {
                    obj.insert("message".into(), m.clone().into());
                }
                let _ = writeln!(out, "{}", serde_json::Value::Object(obj));
            }
            Format::Csv => {
                if !r.columns.is_empty() {
                    let _ =
                        writeln!(out, "{}", r.columns.iter().map(|c| csv(c)).collect::<Vec<_>>().join(","));
                    for row in &r.rows {
                        let _ = writeln!(
                            out,
                            "{}",
                            row.iter().map(|v| csv(&show(v))).collect::<Vec<_>>().join(",")
                        );
                    }
                }
                if let Some(m) = &r.message {
                    eprintln!("{m}");
                }
            }
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => format!("{r:.6}").trim_end_matches('0').trim_end_matches('.').to_string(),
        Value::Text(s) => s.clone(),
        Value::Json(j) => j.to_string(),
    }
}

fn json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(r) => {
            serde_json::Number::from_f64(*r).map_or(serde_json::Value::Null, serde_json::Value::Number)
        }
        Value::Text(s) => s.clone().into(),
        Value::Json(j) => j.clone(),
    }
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
