//! The `maxsimdb` command-line tool. For now it opens a database (creating it if absent)
//! and lists its collections; the SQL-like shell builds on this.

use std::process::ExitCode;

const USAGE: &str = "usage: maxsimdb PATH [--read-only]\n\
    Opens the database directory PATH (created if absent, unless --read-only)\n\
    and lists its collections with their vector layout and counts.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "-V" || a == "--version") {
        println!("maxsimdb {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let read_only = args.iter().any(|a| a == "--read-only");
    let paths: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let [path] = paths.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match run(path, read_only) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.code() as i32).unwrap_or(1))
        }
    }
}

fn run(path: &str, read_only: bool) -> maxsimdb::Result<()> {
    let db = maxsimdb::Database::builder(path).read_only(read_only).open()?;
    let colls = db.collections()?;
    if colls.is_empty() {
        println!("{path}: no collections");
    }
    for c in colls {
        let s = db.stats(&c.name)?;
        let pooled: Vec<String> = c.vectors.pooled.iter().map(|p| format!("{}[{}]", p.name, p.dim)).collect();
        let cols: Vec<String> = c.columns.iter().map(|col| format!("{} {:?}", col.name, col.ty)).collect();
        println!(
            "{}: tokens[{}] {:?}{}{} | {} docs ({} pending), {} segments, {} tombstones, {} bytes",
            c.name,
            c.vectors.token_dim,
            c.vectors.dtype,
            if pooled.is_empty() { String::new() } else { format!(", pooled {}", pooled.join(" ")) },
            if cols.is_empty() { String::new() } else { format!(", columns ({})", cols.join(", ")) },
            s.docs,
            s.pending_docs,
            s.segments,
            s.tombstones,
            s.segment_bytes
        );
    }
    Ok(())
}
