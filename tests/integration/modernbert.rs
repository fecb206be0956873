//! ModernBERT and the PyLate ModernColBERT layout against the random-weight fixture
//! `../shared/fixtures/modernbert-tiny` and its independent float64 reference outputs
//! (`reference.jsonl`: plain encoder; `pylate.jsonl`: ColBERT queries and documents). The
//! tolerances are the fixture README's "Expected agreement for a float32 implementation".

use std::path::{Path, PathBuf};

use maxsimdb::embed::colbert::TokenEncoder;
use maxsimdb::embed::Encoder;

fn fixture() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/modernbert-tiny");
    assert!(p.join("config.json").is_file(), "the ModernBERT fixture is missing at {}", p.display());
    p
}

fn records(file: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(fixture().join(file)).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn flat(v: &serde_json::Value) -> Vec<f32> {
    fn walk(v: &serde_json::Value, out: &mut Vec<f32>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

fn sentences() -> Vec<String> {
    records("reference.jsonl").iter().map(|r| r["text"].as_str().unwrap().to_string()).collect()
}

#[test]
fn modernbert_tokenizes_like_the_reference() {
    let enc = Encoder::load(&fixture()).unwrap();
    let texts = sentences();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = enc.tokenize(&refs).unwrap();
    for (r, g) in records("reference.jsonl").iter().zip(&got) {
        assert_eq!(*g, ids(&r["token_ids"]), "{}", r["text"]);
    }
    assert_eq!(got[9].len(), 64, "truncated at max_seq_length with [CLS] and [SEP]");
}

/// Every sentence alone: hidden states (every layer for the first three), projected rows and
/// mean pooling within the README's float32 tolerances.
#[test]
fn modernbert_matches_the_float64_reference() {
    let mut enc = Encoder::load(&fixture()).unwrap();
    enc.batch_size = 1;
    let head = TokenEncoder::load(&fixture()).unwrap();
    let recs = records("reference.jsonl");
    let seqs: Vec<Vec<u32>> = recs.iter().map(|r| ids(&r["token_ids"])).collect();
    let out = enc.encode_ids(&seqs, true).unwrap();
    let (mut worst, mut worst_layer, mut worst_mean, mut min_cos) = (0f32, 0f32, 0f32, 1f32);
    for (r, e) in recs.iter().zip(&out) {
        let want = flat(&r["last_hidden_state"]);
        worst = worst.max(max_abs(&e.hidden, &want));
        if let Some(states) = r["layer_states"].as_array() {
            assert_eq!(e.layers.len(), states.len(), "embedding output + one state per layer");
            for (got, want) in e.layers.iter().zip(states) {
                worst_layer = worst_layer.max(max_abs(got, &flat(want)));
            }
        }
        let mut mean = vec![0f32; 64];
        for row in e.hidden.chunks_exact(64) {
            mean.iter_mut().zip(row).for_each(|(m, x)| *m += x / (e.hidden.len() / 64) as f32);
        }
        worst_mean = worst_mean.max(max_abs(&normalized(mean), &flat(&r["mean_pooled_normalized"])));
        let projected = head.head().apply(&e.hidden, 64);
        for (g, w) in projected.chunks_exact(16).zip(flat(&r["projected"]).chunks_exact(16)) {
            min_cos = min_cos.min(cosine(g, w));
        }
    }
    eprintln!(
        "modernbert-tiny: last_hidden_state max abs {worst:.2e}, layer states {worst_layer:.2e}, \
         mean pooled {worst_mean:.2e}, projected min cosine {min_cos:.9}"
    );
    assert!(worst <= 1e-4, "last_hidden_state differs by {worst}");
    assert!(worst_layer <= 1e-4, "a layer state differs by {worst_layer}");
    assert!(worst_mean <= 1e-5, "mean pooled differs by {worst_mean}");
    assert!(min_cos >= 0.99999, "projected cosine {min_cos}");
}

/// All twelve in one batch padded to 64 (most are longer than the local window): the real
/// rows equal the reference and the unpadded runs.
#[test]
fn modernbert_padded_batch_equals_unpadded() {
    let mut enc = Encoder::load(&fixture()).unwrap();
    let recs = records("reference.jsonl");
    let seqs: Vec<Vec<u32>> = recs.iter().map(|r| ids(&r["token_ids"])).collect();
    enc.batch_size = seqs.len();
    let batched = enc.encode_ids(&seqs, false).unwrap();
    enc.batch_size = 1;
    let alone = enc.encode_ids(&seqs, false).unwrap();
    let (mut to_ref, mut to_alone) = (0f32, 0f32);
    for ((r, b), a) in recs.iter().zip(&batched).zip(&alone) {
        assert!(b.hidden.iter().all(|x| x.is_finite()), "no NaN from fully masked padding rows");
        to_ref = to_ref.max(max_abs(&b.hidden, &flat(&r["last_hidden_state"])));
        to_alone = to_alone.max(max_abs(&b.hidden, &a.hidden));
    }
    eprintln!("padded batch: {to_ref:.2e} from the reference, {to_alone:.2e} from unpadded runs");
    assert!(to_ref <= 1e-4 && to_alone <= 1e-5, "padded batch differs: {to_ref} / {to_alone}");
}

/// PyLate semantics: `[Q] ` / `[D] ` after `[CLS]`, `[MASK]` expansion to 32 without
/// attending to it, skiplist rows dropped, Dense head without bias, L2 normalisation.
#[test]
fn modern_colbert_queries_and_documents_match_pylate() {
    let enc = TokenEncoder::load(&fixture()).unwrap();
    let s = enc.settings();
    assert_eq!(
        (s.query_maxlen, s.doc_maxlen, s.query_marker, s.doc_marker, s.mask_id),
        (32, 64, Some(998), Some(999), Some(997))
    );
    assert!(!s.attend_to_mask);
    let mut skip = s.skiplist.clone();
    skip.sort_unstable();
    assert_eq!(skip, [0, 7, 8, 11, 12, 13, 25, 26, 30], "skiplist words as token ids");
    assert_eq!(enc.dim(), 16);
    let texts = sentences();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let queries = enc.encode_queries(&refs).unwrap();
    let docs = enc.encode_documents(&refs).unwrap();
    let recs = records("pylate.jsonl");
    let (mut q_worst, mut q_nokey_worst, mut d_worst) = (0f32, 0f32, 0f32);
    let mut nokey_rows = 0;
    for (i, pair) in recs.chunks_exact(2).enumerate() {
        let (qr, dr) = (&pair[0], &pair[1]);
        assert!(qr["is_query"].as_bool().unwrap() && !dr["is_query"].as_bool().unwrap());
        let want = flat(&qr["embeddings"]);
        assert_eq!(queries[i].len(), want.len(), "{}: 32 query rows", texts[i]);
        let nokey: Vec<usize> =
            qr["no_key_in_window"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        nokey_rows += nokey.len();
        for (row, (g, w)) in queries[i].chunks_exact(16).zip(want.chunks_exact(16)).enumerate() {
            let d = max_abs(g, w);
            if nokey.contains(&row) {
                q_nokey_worst = q_nokey_worst.max(d);
            } else {
                q_worst = q_worst.max(d);
            }
        }
        assert_eq!(docs[i].encoded.token_ids, ids(&dr["input_ids"]), "{}: document ids", texts[i]);
        d_worst = d_worst.max(max_abs(&docs[i].tokens, &flat(&dr["embeddings"])));
    }
    eprintln!(
        "pylate: query rows {q_worst:.2e}, {nokey_rows} no-key-in-window rows {q_nokey_worst:.2e}, documents {d_worst:.2e}"
    );
    assert_eq!(nokey_rows, 69);
    assert!(q_worst <= 1e-5 && d_worst <= 1e-5, "queries {q_worst}, documents {d_worst}");
    // The rows with no key inside the window follow transformers 4.x (finfo.min): a
    // uniform average over all positions, as the reference computes them.
    assert!(q_nokey_worst <= 1e-5, "no-key rows differ by {q_nokey_worst}");
}

/// A text collection on the fixture, from SQL: stored (and exported) token vectors are
/// PyLate's document encodings row for row, and MaxSim search ranks and scores as the
/// reference encodings do.
#[test]
fn a_text_collection_on_a_modern_colbert_folder_stores_pylate_encodings() {
    use maxsimdb::{Database, Document, SearchRequest};
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let session = maxsimdb::sql::Session::new(db.clone());
    session
        .execute(&format!(
            "CREATE COLLECTION m (text TEXT) WITH (model = '{}', embed = 'text', tokens = 'f32');",
            fixture().display()
        ))
        .unwrap();
    assert_eq!(db.describe("m").unwrap().vectors.token_dim, 16);
    let texts = sentences();
    let docs: Vec<Document> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Document::new(format!("s{i}")).set("text", t.as_str()))
        .collect();
    db.insert_text("m", &docs).unwrap();
    let recs = records("pylate.jsonl");
    let want_docs: Vec<Vec<f32>> = recs.chunks_exact(2).map(|p| flat(&p[1]["embeddings"])).collect();
    for (i, want) in want_docs.iter().enumerate() {
        let got = db.get("m", &format!("s{i}").into()).unwrap().unwrap();
        assert!(max_abs(&got.tokens, want) <= 1e-5, "s{i}: stored token vectors");
    }
    // EXPORT writes the same rows.
    let file = dir.path().join("m.parquet");
    session.execute(&format!("EXPORT m TO '{}';", file.display())).unwrap();
    let exported = exported_tokens(&file);
    assert_eq!(exported.len(), texts.len());
    for (id, rows) in &exported {
        let i: usize = id.trim_start_matches('s').parse().unwrap();
        assert!(max_abs(rows, &want_docs[i]) <= 1e-5, "{id}: exported token vectors");
    }
    // MaxSim over the reference encodings gives the same ranking and scores.
    for (qi, pair) in recs.chunks_exact(2).enumerate().step_by(3) {
        let q = flat(&pair[0]["embeddings"]);
        let mut want: Vec<(f32, usize)> = want_docs
            .iter()
            .enumerate()
            .map(|(d, doc)| {
                let s = q
                    .chunks_exact(16)
                    .map(|qr| {
                        doc.chunks_exact(16)
                            .map(|dr| qr.iter().zip(dr).map(|(a, b)| a * b).sum::<f32>())
                            .fold(f32::NEG_INFINITY, f32::max)
                    })
                    .sum::<f32>();
                (s, d)
            })
            .collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0));
        let hits = db.search("m", &SearchRequest::maxsim_text(&texts[qi]).limit(3)).unwrap();
        for (h, (s, d)) in hits.iter().zip(&want) {
            assert_eq!(h.id, format!("s{d}").into(), "query {qi}: ranking");
            assert!((h.score - s).abs() < 1e-3, "query {qi}: score {} vs {s}", h.score);
        }
    }
}

fn exported_tokens(file: &Path) -> Vec<(String, Vec<f32>)> {
    use arrow_array::{cast::AsArray, types::Float32Type, Array};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(file).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let ids = batch.column_by_name("id").unwrap().as_string::<i32>().clone();
        let tokens = batch.column_by_name("tokens").unwrap().as_list::<i32>().clone();
        for r in 0..batch.num_rows() {
            let rows = tokens.value(r);
            let fixed = rows.as_fixed_size_list();
            let vals = fixed.values().as_primitive::<Float32Type>();
            assert_eq!(vals.len(), fixed.len() * 16);
            out.push((ids.value(r).to_string(), vals.values().to_vec()));
        }
    }
    out
}

/// A writable copy of the fixture (its files are read-only).
fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to.join("1_Dense")).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Dense/config.json",
        "1_Dense/model.safetensors",
    ] {
        std::fs::write(to.join(f), std::fs::read(fixture().join(f)).unwrap()).unwrap();
    }
}

fn first_hidden(dir: &Path) -> Vec<f32> {
    let enc = Encoder::load(dir).unwrap();
    let seq = ids(&records("reference.jsonl")[9]["token_ids"]);
    enc.encode_ids(&[seq], false).unwrap().remove(0).hidden
}

/// `model.`-prefixed tensors (a `ModernBertForMaskedLM` save) and a transformers 5.x config
/// (`layer_types`, `rope_parameters`, `sliding_window`, no legacy keys) load to the same
/// encoder; missing and mis-shaped tensors are errors naming the file and tensor.
#[test]
fn modernbert_checkpoint_variants_load_and_bad_ones_are_refused() {
    let want = flat(&records("reference.jsonl")[9]["last_hidden_state"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    copy_fixture(&dir);
    let weights = dir.join("model.safetensors");
    let original = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    let save = |t: &std::collections::HashMap<String, candle_core::Tensor>| {
        std::fs::remove_file(&weights).unwrap();
        candle_core::safetensors::save(t, &weights).unwrap();
    };
    // model. prefix, plus an MLM head the encoder ignores.
    let mut prefixed: std::collections::HashMap<_, _> =
        original.iter().map(|(k, v)| (format!("model.{k}"), v.clone())).collect();
    prefixed.insert(
        "decoder.bias".into(),
        candle_core::Tensor::zeros(1000, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    save(&prefixed);
    assert!(max_abs(&first_hidden(&dir), &want) <= 1e-4, "model.-prefixed checkpoint");
    save(&original);
    // transformers 5.x spelling.
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap()).unwrap();
    let o = cfg.as_object_mut().unwrap();
    for k in [
        "global_rope_theta",
        "local_rope_theta",
        "global_attn_every_n_layers",
        "local_attention",
        "layer_norm_eps",
    ] {
        o.remove(k);
    }
    o.insert(
        "layer_types".into(),
        serde_json::json!(["full_attention", "sliding_attention", "sliding_attention", "full_attention"]),
    );
    o.insert("sliding_window".into(), serde_json::json!(4));
    o.insert(
        "rope_parameters".into(),
        serde_json::json!({"full_attention": {"rope_type": "default", "rope_theta": 160000.0},
                           "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
    );
    std::fs::write(dir.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    assert!(max_abs(&first_hidden(&dir), &want) <= 1e-4, "transformers 5.x config");
    // A missing attention norm (only layer 0 may lack one) and a mis-shaped Wqkv.
    let mut missing = original.clone();
    missing.remove("layers.2.attn_norm.weight");
    save(&missing);
    let err = Encoder::load(&dir).unwrap_err().to_string();
    assert!(err.contains("layers.2.attn_norm.weight") && err.contains("model.safetensors"), "{err}");
    let mut shaped = original.clone();
    let w = shaped["layers.1.attn.Wqkv.weight"].narrow(0, 0, 128).unwrap();
    shaped.insert("layers.1.attn.Wqkv.weight".into(), w);
    save(&shaped);
    let err = Encoder::load(&dir).unwrap_err().to_string();
    assert!(
        err.contains("layers.1.attn.Wqkv.weight") && err.contains("[128, 64]") && err.contains("[192, 64]"),
        "{err}"
    );
    std::fs::remove_file(&weights).unwrap();
    let err = Encoder::load(&dir).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}
