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
//! error's code (non-zero). Ctrl-C during a long statement (IMPORT, CREATE INDEX) stops it
//! at the next batch boundary, keeping what was committed (status 15 in a script); a
//! second Ctrl-C ends the shell at once.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
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
    catch_ctrl_c(&db);
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

/// What Ctrl-C interrupts: the open database's long operation.
static INTERRUPT: OnceLock<maxsimdb::Interrupt> = OnceLock::new();
/// Ctrl-C was pressed during the statement now running.
static PRESSED: AtomicBool = AtomicBool::new(false);

/// SIGINT: the first asks the running statement to stop at its next batch boundary; a
/// second (the statement has no boundary, or is stuck) ends the process as SIGINT does.
/// Only async-signal-safe work here: atomics, `write`, `signal`, `raise`.
extern "C" fn on_sigint(_: libc::c_int) {
    if PRESSED.swap(true, Ordering::SeqCst) {
        // SAFETY: async-signal-safe calls; restoring the default action and re-raising
        // ends the process with the status of a SIGINT.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::raise(libc::SIGINT);
        }
        return;
    }
    if let Some(i) = INTERRUPT.get() {
        i.interrupt();
    }
    let msg = b"\ninterrupting at the next batch boundary (Ctrl-C again to quit at once)\n";
    // SAFETY: write(2) on standard error with a valid buffer.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
}

fn catch_ctrl_c(db: &Database) {
    let _ = INTERRUPT.set(db.interrupt_handle());
    // SAFETY: installs a handler that only touches atomics and async-signal-safe calls.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t);
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
        PRESSED.store(false, Ordering::SeqCst);
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
                    let _ = write!(out, "{}", table(r));
                    let _ =
                        writeln!(out, "({} row{})", r.rows.len(), if r.rows.len() == 1 { "" } else { "s" });
                }
                if let Some(m) = &r.message {
                    let _ = writeln!(out, "{m}");
                }
            }
            Format::Json => {
                // Keys in SELECT order (serde_json's map sorts them).
                let mut parts = Vec::new();
                if !r.columns.is_empty() {
                    let rows: Vec<String> = r
                        .rows
                        .iter()
                        .map(|row| {
                            json_object(r.columns.iter().map(String::as_str).zip(row.iter().map(json)))
                        })
                        .collect();
                    parts.push(format!("\"rows\":[{}]", rows.join(",")));
                }
                if let Some(m) = &r.message {
                    parts.push(format!("\"message\":{}", serde_json::Value::from(m.as_str())));
                }
                let _ = writeln!(out, "{{{}}}", parts.join(","));
            }
            Format::Csv => {
                if !r.columns.is_empty() {
                    let _ =
                        writeln!(out, "{}", r.columns.iter().map(|c| csv(c)).collect::<Vec<_>>().join(","));
                    for row in &r.rows {
                        let _ = writeln!(out, "{}", row.iter().map(csv_value).collect::<Vec<_>>().join(","));
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

/// A value as a CSV cell: NULL is the empty cell, reals keep every digit (the shortest text
/// that reads back as the same number), JSON its text.
fn csv_value(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Real(r) => format!("{r:?}"),
        v => csv(&show(v)),
    }
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `{"k":v,...}` with the keys in the given order.
fn json_object<'a>(pairs: impl Iterator<Item = (&'a str, serde_json::Value)>) -> String {
    let fields: Vec<String> = pairs.map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k))).collect();
    format!("{{{}}}", fields.join(","))
}

/// Widest a column other than the last gets, in terminal cells.
const MAX_CELL: usize = 60;

/// A table cell: its text with control characters written as escapes (a newline or tab in
/// a value must not break the table), and whether it is a number (right-aligned).
fn table_cell(v: &Value) -> (String, bool) {
    let mut s = String::new();
    for ch in show(v).chars() {
        match ch {
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c if c.is_control() => s.push_str(&c.escape_unicode().to_string()),
            c => s.push(c),
        }
    }
    (s, matches!(v, Value::Integer(_) | Value::Real(_)))
}

/// Display width in terminal cells (CJK and emoji take two).
fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` padded (or cut, with an ellipsis) to `w` cells, numbers to the right.
fn fit(s: &str, w: usize, right: bool) -> String {
    let sw = width(s);
    if sw > w {
        let mut cut = String::new();
        let mut cw = 0;
        for ch in s.chars() {
            let c = unicode_width::UnicodeWidthChar::width(ch).unwrap_or(0);
            if cw + c + 1 > w {
                break;
            }
            cut.push(ch);
            cw += c;
        }
        return format!("{cut}…{}", " ".repeat(w - cw - 1));
    }
    let pad = " ".repeat(w - sw);
    if right {
        format!("{pad}{s}")
    } else {
        format!("{s}{pad}")
    }
}

/// The table view of a result: a header, a rule, one line per row. Columns are as wide as
/// their widest cell up to [`MAX_CELL`] cells (longer ones are cut with an ellipsis), except
/// the last, which nothing follows (CHECK problems, messages) and which is never cut.
fn table(r: &StatementResult) -> String {
    let cells: Vec<Vec<(String, bool)>> =
        r.rows.iter().map(|row| row.iter().map(table_cell).collect()).collect();
    let last = r.columns.len().saturating_sub(1);
    let mut w: Vec<usize> = r.columns.iter().map(|c| width(c)).collect();
    for row in &cells {
        for (i, (c, _)) in row.iter().enumerate() {
            w[i] = w[i].max(width(c));
        }
    }
    for (i, w) in w.iter_mut().enumerate() {
        if i != last {
            *w = (*w).min(MAX_CELL);
        }
    }
    let line = |cells: &mut dyn Iterator<Item = (&str, bool)>| -> String {
        let parts: Vec<String> = cells.zip(&w).map(|((c, right), &w)| fit(c, w, right)).collect();
        parts.join(" | ")
    };
    let mut out = String::new();
    out.push_str(&line(&mut r.columns.iter().map(|c| (c.as_str(), false))));
    out.push('\n');
    out.push_str(&w.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>().join("-+-"));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(&mut row.iter().map(|(c, n)| (c.as_str(), *n))));
        out.push('\n');
    }
    out
}
