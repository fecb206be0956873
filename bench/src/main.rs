//! maxsimdb bench runner: `cargo run --release -p maxsimdb-bench -- SUITE [options]`.
//!
//! Prints a readable table; with `--json`, one JSON object as the last line.
//! Suites: `kernel`, `beir`, `scale`, `embed`, `crash`, `corrupt`, `backup`, `export`,
//! `binding` (the Rust half of bindings/python/bench/overhead.py).

mod backup;
mod beir;
mod binding;
mod chart;
mod corrupt;
mod crash;
mod embed;
mod export;
mod kernel;
mod roofline;
mod scale;

use std::process::ExitCode;

/// Parsed command line: suite, `--json`, and `--key value` options.
pub struct Args {
    pub suite: String,
    pub json: bool,
    opts: Vec<(String, String)>,
    pub rest: Vec<String>,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut it = std::env::args().skip(1);
        let suite = it.next().ok_or("usage: maxsimdb-bench SUITE [--json] [--key value ...]")?;
        let mut a = Args { suite, json: false, opts: Vec::new(), rest: Vec::new() };
        while let Some(x) = it.next() {
            if x == "--json" {
                a.json = true;
            } else if let Some(k) = x.strip_prefix("--") {
                let v = it.next().ok_or(format!("--{k} needs a value"))?;
                a.opts.push((k.to_string(), v));
            } else {
                a.rest.push(x);
            }
        }
        Ok(a)
    }

    /// Option `--key`, parsed, or `default`.
    pub fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.opts.iter().rev().find(|(k, _)| k == key) {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| format!("bad value for --{key}: {v}")),
        }
    }

    /// Option `--key` as a string.
    pub fn opt(&self, key: &str) -> Option<&str> {
        self.opts.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The `--tokens` option of the `scale` and `beir` suites: `f16` (vectors) or
/// `plaid1|2|4` (codes only), as the collection option spells it.
pub fn token_codes(storage: &str) -> Result<Option<u8>, String> {
    if storage.eq_ignore_ascii_case("f32") {
        return Err(
            "--tokens f32: the suites store f16 vectors or codes (f16, plaid1, plaid2, plaid4)".into()
        );
    }
    maxsimdb::VectorSpec::new(1).with_token_storage(storage).map(|v| v.codes).map_err(|e| e.to_string())
}

/// Print a table of (name, value) rows, then the JSON object if asked.
pub fn report(args: &Args, title: &str, obj: &serde_json::Value) {
    println!("== {title} ==");
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            println!("{k:<28} {v}");
        }
    }
    if args.json {
        println!("{obj}");
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let res = match args.suite.as_str() {
        "kernel" => kernel::run(&args),
        "crash" => crash::run(&args),
        "corrupt" => corrupt::run(&args),
        "backup" => backup::run(&args),
        "export" => export::run(&args),
        "crash-child" => crash::child(&args),
        "beir" => beir::run(&args),
        "scale" => scale::run(&args),
        "codec" => scale::codec(&args),
        "embed" => embed::run(&args),
        "binding" => binding::run(&args),
        other => Err(format!(
            "unknown suite '{other}': use kernel, beir, scale, codec, embed, crash, corrupt, backup, export or binding"
        )),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
