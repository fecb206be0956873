//! `export` suite: EXPORT of a collection of an existing database (`--db PATH`, opened
//! read-only, so it may be in use; `--collection NAME`, default the first) to Apache
//! Parquet, then IMPORT of that file into a fresh database in a scratch directory
//! (`--scratch DIR`, default the system temp dir). Reports throughput (documents/s, and
//! MB/s of vectors as float32, which is what the file holds), the file size against the
//! collection's segments, and checks that 200 sampled documents came back bit-exact.

use std::time::Instant;

use maxsimdb::{Database, DocId};
use serde_json::json;

use crate::{report, Args};

pub fn run(args: &Args) -> Result<(), String> {
    let path = args.opt("db").ok_or("--db PATH (an existing database) is required")?;
    let scratch =
        tempfile::tempdir_in(args.opt("scratch").unwrap_or(&std::env::temp_dir().display().to_string()))
            .map_err(|e| e.to_string())?;
    let db = Database::open_read_only(path).map_err(|e| e.to_string())?;
    let name = match args.opt("collection") {
        Some(n) => n.to_string(),
        None => db.collections().map_err(|e| e.to_string())?.into_iter().next().ok_or("no collection")?.name,
    };
    let stats = db.stats(&name).map_err(|e| e.to_string())?;
    let file = scratch.path().join("export.parquet");
    let e = db.export_parquet(&name, &file, |_, _| {}).map_err(|e| e.to_string())?;
    let target = Database::open(scratch.path().join("imported.msdb")).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let i = target.import_parquet(&name, &file, |_, _, _| {}).map_err(|e| e.to_string())?;
    target.flush(&name).map_err(|e| e.to_string())?;
    let import_s = t.elapsed().as_secs_f64();
    if i.docs != e.docs || i.tokens != e.tokens {
        return Err(format!(
            "imported {} docs / {} tokens, exported {} / {}",
            i.docs, i.tokens, e.docs, e.tokens
        ));
    }
    // Spot-check: 200 documents spread over the id space read back identical.
    let ids: Vec<DocId> = sample_ids(&file, 200)?;
    for id in &ids {
        let a = db.get(&name, id).map_err(|e| e.to_string())?.ok_or("sampled id vanished")?;
        let b = target.get(&name, id).map_err(|e| e.to_string())?.ok_or(format!("{id} not imported"))?;
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        if bits(&a.tokens) != bits(&b.tokens) || a.values != b.values || a.pooled.len() != b.pooled.len() {
            return Err(format!("{id} differs after the round trip"));
        }
    }
    let vmb = e.vector_bytes as f64 / 1e6;
    let out = json!({
        "collection": name,
        "docs": e.docs,
        "tokens": e.tokens,
        "segment_mb": stats.segment_bytes as f64 / 1e6,
        "vector_mb_f32": vmb,
        "file_mb": e.file_bytes as f64 / 1e6,
        "file_vs_segments": e.file_bytes as f64 / stats.segment_bytes.max(1) as f64,
        "file_vs_f32": e.file_bytes as f64 / e.vector_bytes.max(1) as f64,
        "row_groups": e.row_groups,
        "export_s": e.seconds,
        "export_docs_s": e.docs as f64 / e.seconds,
        "export_mb_s": vmb / e.seconds,
        "import_s": import_s,
        "import_docs_s": i.docs as f64 / import_s,
        "import_mb_s": vmb / import_s,
        "checked_bit_exact": ids.len(),
    });
    report(args, "export to Parquet and import back", &out);
    Ok(())
}

/// Up to `n` ids spread evenly over the exported file (its `id` column).
fn sample_ids(file: &std::path::Path, n: usize) -> Result<Vec<DocId>, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use arrow_array::Array;
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| e.to_string())?;
    let total = b.metadata().file_metadata().num_rows().max(1) as usize;
    let step = total.div_ceil(n).max(1);
    let mask = parquet::arrow::ProjectionMask::roots(b.parquet_schema(), [0]);
    let mut out = Vec::new();
    let mut row = 0usize;
    for batch in b.with_projection(mask).build().map_err(|e| e.to_string())? {
        let col = batch.map_err(|e| e.to_string())?.column(0).clone();
        for k in 0..col.len() {
            if (row + k).is_multiple_of(step) {
                out.push(match col.data_type() {
                    arrow_schema::DataType::Int64 => DocId::Int(col.as_primitive::<Int64Type>().value(k)),
                    _ => DocId::Text(col.as_string::<i32>().value(k).to_string()),
                });
            }
        }
        row += col.len();
    }
    Ok(out)
}
