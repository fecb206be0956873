//! Tiny checkpoints written by the test in the Stanford ColBERT and PyLate layouts:
//! every loader, marker, skiplist and head runs without the real model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use maxsimdb::embed::colbert::{Act, Block, TokenEncoder};
use maxsimdb::embed::Encoder;
use maxsimdb::testing::Rng;

const H: usize = 8;
const VOCAB: &[&str] = &[
    "[PAD]",
    "[unused0]",
    "[unused1]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ",",
    ".",
    "a",
    "b",
    "c",
    "hello",
    "world",
    "late",
    "interaction",
    "##s",
];

fn tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> =
        VOCAB.iter().enumerate().map(|(i, t)| ((*t).to_string(), serde_json::json!(i))).collect();
    let added: Vec<serde_json::Value> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|t| {
            let id = VOCAB.iter().position(|v| v == t).unwrap();
            serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 5], "cls": ["[CLS]", 4]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}
    })
    .to_string()
}

fn randn(rng: &mut Rng, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal() * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A 1-layer, 8-wide BERT with random weights, under `prefix`.
fn bert_weights(rng: &mut Rng, prefix: &str) -> HashMap<String, Tensor> {
    let mut w = HashMap::new();
    let mut put = |k: &str, shape: &[usize], s: f32| {
        w.insert(format!("{prefix}{k}"), randn(rng, shape, s));
    };
    put("embeddings.word_embeddings.weight", &[VOCAB.len(), H], 1.0);
    put("embeddings.position_embeddings.weight", &[64, H], 0.1);
    put("embeddings.token_type_embeddings.weight", &[2, H], 0.1);
    for (k, shape) in [
        ("attention.self.query", vec![H, H]),
        ("attention.self.key", vec![H, H]),
        ("attention.self.value", vec![H, H]),
        ("attention.output.dense", vec![H, H]),
        ("intermediate.dense", vec![16, H]),
        ("output.dense", vec![H, 16]),
    ] {
        put(&format!("encoder.layer.0.{k}.weight"), &shape, 0.3);
        put(&format!("encoder.layer.0.{k}.bias"), &shape[..1], 0.1);
    }
    let ones = |n| Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    let zeros = |n| Tensor::zeros(n, candle_core::DType::F32, &Device::Cpu).unwrap();
    for ln in [
        "embeddings.LayerNorm",
        "encoder.layer.0.attention.output.LayerNorm",
        "encoder.layer.0.output.LayerNorm",
    ] {
        w.insert(format!("{prefix}{ln}.weight"), ones(H));
        w.insert(format!("{prefix}{ln}.bias"), zeros(H));
    }
    w
}

fn write_base(dir: &Path, arch: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = serde_json::json!({
        "architectures": [arch], "vocab_size": VOCAB.len(), "hidden_size": H, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu", "max_position_embeddings": 64,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json()).unwrap();
}

fn unit_rows(v: &[f32], dim: usize) -> bool {
    v.chunks_exact(dim).all(|r| (r.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-5)
}

#[test]
fn stanford_checkpoint_markers_expansion_and_skiplist() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stanford");
    write_base(&root, "HF_ColBERT");
    let mut rng = Rng::new(1);
    let mut w = bert_weights(&mut rng, "bert.");
    w.insert("linear.weight".into(), randn(&mut rng, &[4, H], 0.5));
    candle_core::safetensors::save(&w, root.join("model.safetensors")).unwrap();
    let meta = serde_json::json!({"query_maxlen": 8, "doc_maxlen": 16, "query_token_id": "[unused0]", "doc_token_id": "[unused1]"});
    std::fs::write(root.join("artifact.metadata"), meta.to_string()).unwrap();

    let te = TokenEncoder::load(&root).unwrap();
    assert_eq!(te.dim(), 4);
    assert_eq!(te.head().blocks.len(), 1, "a Stanford checkpoint yields one Dense(hidden→dim, no bias)");
    assert!(
        matches!(&te.head().blocks[0], Block::Dense { b: None, act: Act::Identity, residual: None, w } if w.rows == 4 && w.cols == H)
    );
    let s = te.settings();
    assert_eq!((s.query_marker, s.doc_marker, s.mask_id), (Some(1), Some(2), Some(6)));
    assert_eq!(s.skiplist, vec![7, 8], "',' and '.' are skipped; [UNK] never is");

    let q = te.encode_queries(&["hello world"]).unwrap().remove(0);
    assert_eq!(q.len(), 8 * 4, "expanded to query_maxlen rows");
    assert!(unit_rows(&q, 4), "unit vectors, including the [MASK] rows");
    let docs = te.encode_documents(&["a, b.", "hello"]).unwrap();
    // [CLS] [D] a , b . [SEP] → the two punctuation tokens are dropped.
    assert_eq!(docs[0].encoded.token_ids, vec![4, 2, 9, 7, 10, 8, 5]);
    assert_eq!(docs[0].tokens.len(), 5 * 4);
    assert!(unit_rows(&docs[0].tokens, 4));
    // Unknown words map to [UNK], which stays.
    let unk = te.encode_documents(&["zzz"]).unwrap().remove(0);
    assert_eq!(unk.encoded.token_ids, vec![4, 2, 3, 5]);
    assert_eq!(unk.tokens.len(), 4 * 4);

    // Missing or mis-shaped projection weights are errors, never random initialisation.
    w.insert("linear.weight".into(), randn(&mut rng, &[4, H + 1], 0.5));
    candle_core::safetensors::save(&w, root.join("model.safetensors")).unwrap();
    assert!(TokenEncoder::load(&root).is_err());
}

fn dense(dir: &Path, cfg: serde_json::Value, weights: HashMap<String, Tensor>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).unwrap();
}

fn matvec(w: &Tensor, x: &[f32]) -> Vec<f32> {
    let w: Vec<Vec<f32>> = w.to_vec2().unwrap();
    w.iter().map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

fn gelu(x: f32) -> f32 {
    // erf via f64 series accurate enough for |x| < 6.
    let z = f64::from(x) / std::f64::consts::SQRT_2;
    let mut sum = 0.0;
    let mut term = z;
    for n in 0..60 {
        sum += term / (2 * n + 1) as f64;
        term *= -z * z / (n + 1) as f64;
    }
    (0.5 * f64::from(x) * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * sum)) as f32
}

#[test]
fn pylate_dense_stack_matches_a_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pylate");
    write_base(&root, "BertModel");
    let mut rng = Rng::new(2);
    candle_core::safetensors::save(&bert_weights(&mut rng, ""), root.join("model.safetensors")).unwrap();
    let modules = serde_json::json!([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "pylate.models.Dense.Dense"},
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "pylate.models.Dense.Dense"}
    ]);
    std::fs::write(root.join("modules.json"), modules.to_string()).unwrap();
    std::fs::write(
        root.join("config_sentence_transformers.json"),
        serde_json::json!({"query_prefix": "[unused0]", "document_prefix": "[unused1]", "query_length": 8, "document_length": 16}).to_string(),
    )
    .unwrap();
    let w1 = randn(&mut rng, &[16, H], 0.4);
    let b1 = randn(&mut rng, &[16], 0.1);
    let w2 = randn(&mut rng, &[16, 16], 0.2);
    let w3 = randn(&mut rng, &[4, 16], 0.3);
    let wr3 = randn(&mut rng, &[4, 16], 0.3);
    let act = "torch.nn.modules.activation.GELU";
    dense(
        &root.join("1_Dense"),
        serde_json::json!({"in_features": H, "out_features": 16, "bias": true, "activation_function": act}),
        HashMap::from([("linear.weight".into(), w1.clone()), ("linear.bias".into(), b1.clone())]),
    );
    dense(
        &root.join("2_Dense"),
        serde_json::json!({"in_features": 16, "out_features": 16, "bias": false, "activation_function": act, "use_residual": true}),
        HashMap::from([("linear.weight".into(), w2.clone())]),
    );
    dense(
        &root.join("3_Dense"),
        serde_json::json!({"in_features": 16, "out_features": 4, "bias": false, "activation_function": "torch.nn.modules.linear.Identity", "use_residual": true}),
        HashMap::from([("linear.weight".into(), w3.clone()), ("residual.weight".into(), wr3.clone())]),
    );

    let te = TokenEncoder::load(&root).unwrap();
    assert_eq!(te.head().blocks.len(), 3);
    let docs = te.encode_documents(&["late interaction"]).unwrap();
    let enc = Encoder::load(&root).unwrap();
    let hidden = enc.encode_ids(&[docs[0].encoded.token_ids.clone()], false).unwrap().remove(0).hidden;
    let b1: Vec<f32> = b1.to_vec1().unwrap();
    let mut want = Vec::new();
    for x in hidden.chunks_exact(H) {
        let y1: Vec<f32> = matvec(&w1, x).iter().zip(&b1).map(|(a, b)| gelu(a + b)).collect();
        let y2: Vec<f32> = matvec(&w2, &y1).iter().zip(&y1).map(|(a, r)| gelu(*a) + r).collect();
        let mut y3: Vec<f32> = matvec(&w3, &y2).iter().zip(matvec(&wr3, &y2)).map(|(a, r)| a + r).collect();
        let n = y3.iter().map(|v| v * v).sum::<f32>().sqrt();
        y3.iter_mut().for_each(|v| *v /= n);
        want.extend(y3);
    }
    assert_eq!(docs[0].tokens.len(), want.len());
    let err = docs[0].tokens.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(err < 1e-5, "head output differs from the hand computation by {err}");

    // A missing key is an error naming it.
    std::fs::remove_file(root.join("2_Dense/model.safetensors")).unwrap();
    dense(
        &root.join("2_Dense"),
        serde_json::json!({"in_features": 16, "out_features": 16, "bias": true, "activation_function": act}),
        HashMap::from([("linear.weight".into(), w2)]),
    );
    let err = TokenEncoder::load(&root).unwrap_err().to_string();
    assert!(err.contains("linear.bias"), "{err}");
}

#[test]
fn glu_and_zero_residual_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..6).map(|_| rng.normal()).collect();
    // Residual block with W = 0 is the identity when in == out.
    let zero = Tensor::zeros((6, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
    dense(
        &dir.path().join("z"),
        serde_json::json!({"in_features": 6, "out_features": 6, "bias": false, "activation_function": "", "use_residual": true}),
        HashMap::from([("linear.weight".into(), zero)]),
    );
    let b = maxsimdb::embed::colbert::load_block(&dir.path().join("z")).unwrap();
    let head = maxsimdb::embed::colbert::Head { blocks: vec![b] };
    assert_eq!(head.apply(&x, 6), x);
    // GLU: y = W_down(silu(W_gate x) ⊙ W_up x).
    let (g, u, d) =
        (randn(&mut rng, &[5, 6], 0.5), randn(&mut rng, &[5, 6], 0.5), randn(&mut rng, &[3, 5], 0.5));
    dense(
        &dir.path().join("g"),
        serde_json::json!({"type": "glu", "in_features": 6, "hidden_features": 5, "out_features": 3, "activation_function": "silu"}),
        HashMap::from([
            ("glu.gate.weight".into(), g.clone()),
            ("glu.up.weight".into(), u.clone()),
            ("glu.down.weight".into(), d.clone()),
        ]),
    );
    let head = maxsimdb::embed::colbert::Head {
        blocks: vec![maxsimdb::embed::colbert::load_block(&dir.path().join("g")).unwrap()],
    };
    let h: Vec<f32> =
        matvec(&g, &x).iter().zip(matvec(&u, &x)).map(|(a, b)| a / (1.0 + (-a).exp()) * b).collect();
    let want = matvec(&d, &h);
    let got = head.apply(&x, 6);
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "{got:?} vs {want:?}");
}

#[test]
fn text_collections_embed_inserts_and_queries_and_refuse_another_model() {
    use maxsimdb::{
        CollectionSpec, ColumnType, Database, Document, EmbeddingSpec, Error, SearchRequest, VectorSpec,
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    write_base(&model, "BertModel");
    let mut rng = Rng::new(4);
    candle_core::safetensors::save(&bert_weights(&mut rng, ""), model.join("model.safetensors")).unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let spec = CollectionSpec::new("t", VectorSpec::new(0).pooled("mean", 0).pooled("model", 0))
        .column("title", ColumnType::Text)
        .column("body", ColumnType::Text)
        .column("n", ColumnType::Integer)
        .embedding(EmbeddingSpec {
            token_pool_factor: 2,
            ..EmbeddingSpec::new(model.display().to_string(), &["title", "body"])
        });
    db.create_collection(&spec).unwrap();
    let stored = db.describe("t").unwrap();
    assert_eq!(stored.vectors.token_dim, H, "dimensions come from the model");
    assert_eq!(stored.vectors.pooled[0].dim, H);
    assert_eq!(stored.embedding.as_ref().unwrap().model_hash.len(), 32, "weights hash recorded");
    let texts = ["hello world", "late interaction", "a b c", "hello late"];
    let docs: Vec<Document> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Document::new(format!("d{i}")).set("title", *t).set("body", "c").set("n", i as i64))
        .collect();
    let n = db.import_text("t", docs, |_| {}).unwrap();
    assert_eq!(n, 4);
    let got = db.get("t", &"d1".into()).unwrap().unwrap();
    // [CLS] late interaction c [SEP] = 5 tokens; CLS protected, 4 pooled by 2 → 1 + 2.
    assert_eq!(got.tokens.len(), 3 * H, "token pooling factor 2 applied");
    for q in ["late interaction", "hello world"] {
        let hits = db.search("t", &SearchRequest::maxsim_text(q).limit(4)).unwrap();
        assert_eq!(hits.len(), 4);
        let dense = db.search("t", &SearchRequest::dense_text("model", q).limit(1)).unwrap();
        assert_eq!(dense.len(), 1);
    }
    #[cfg(feature = "parquet")]
    {
        // Parquet: an export carries the model; a file of text alone is embedded on import.
        let file = dir.path().join("t.parquet");
        db.export_parquet("t", &file, |_, _| {}).unwrap();
        let other = Database::open(dir.path().join("other")).unwrap();
        other.import_parquet("t", &file, |_, _, _| {}).unwrap();
        assert_eq!(other.describe("t").unwrap(), db.describe("t").unwrap(), "created with the same model");
        assert_eq!(other.get("t", &"d1".into()).unwrap(), db.get("t", &"d1".into()).unwrap());
        let text_only = dir.path().join("text.parquet");
        let batch = arrow_array::RecordBatch::try_from_iter([
            ("id", std::sync::Arc::new(arrow_array::StringArray::from(vec!["p1"])) as arrow_array::ArrayRef),
            ("title", std::sync::Arc::new(arrow_array::StringArray::from(vec!["late interaction"])) as _),
            ("body", std::sync::Arc::new(arrow_array::StringArray::from(vec!["c"])) as _),
        ])
        .unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&text_only).unwrap(),
            batch.schema(),
            None,
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let r = other.import_parquet("t", &text_only, |_, _, _| {}).unwrap();
        assert_eq!((r.docs, r.tokens, r.embedded), (1, 0, true), "vectors computed by the model, not read");
        let p1 = other.get("t", &"p1".into()).unwrap().unwrap();
        assert_eq!(p1.tokens, got.tokens, "same text, same model: same token vectors as d1");
    }
    // Vector inserts into a text collection still work; text into a vector collection is refused.
    db.create_collection(&CollectionSpec::new("v", VectorSpec::new(H))).unwrap();
    let err = db.insert_text("v", &[Document::new("x")]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(db.search("v", &SearchRequest::maxsim_text("hello")).is_err());
    drop(db);
    // Different weights at the same model path: the collection refuses them.
    let mut rng = Rng::new(99);
    candle_core::safetensors::save(&bert_weights(&mut rng, ""), model.join("model.safetensors")).unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let err = db.insert_text("t", &[Document::new("new").set("title", "hello")]).unwrap_err();
    assert!(err.to_string().contains("refusing to mix models"), "{err}");
    assert_eq!(db.stats("t").unwrap().docs, 4);
}

/// `pytorch_model.bin` (torch's zip + pickle layout, written without torch by
/// `tests/fixtures/tiny-bert/make.py`) loads to the same model as the same weights in
/// `model.safetensors`: every hidden state and pooled vector is identical.
#[test]
fn pytorch_bin_equals_safetensors() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
    let tmp = tempfile::tempdir().unwrap();
    let (bin, st) = (tmp.path().join("bin"), tmp.path().join("st"));
    for (dir, file) in [(&bin, "pytorch_model.bin"), (&st, "model.safetensors")] {
        write_base(dir, "BertModel");
        std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
    }
    let (a, b) = (Encoder::load(&bin).unwrap(), Encoder::load(&st).unwrap());
    let texts = ["hello world", "late interactions, a b c.", "worlds"];
    let (ea, eb) = (a.encode(&texts).unwrap(), b.encode(&texts).unwrap());
    for (x, y) in ea.iter().zip(&eb) {
        assert_eq!(x.token_ids, y.token_ids);
        assert_eq!(x.hidden, y.hidden);
        assert_eq!(x.pooled, y.pooled);
        assert!(x.hidden.iter().any(|v| *v != 0.0), "a real forward pass");
    }
    // A damaged file is an error that names it, not a panic.
    std::fs::write(bin.join("pytorch_model.bin"), b"PK\x03\x04 not a zip").unwrap();
    let Err(err) = Encoder::load(&bin) else { panic!("damaged pytorch_model.bin must fail") };
    assert!(err.to_string().contains("model"), "{err}");
}

/// `EVALUATE` without judgments on a collection with a model: each sampled document's
/// title is the query for that document (self-supervised), the stored pooled vector and
/// BM25 are candidates, their fusions too, and the report says the judgments are
/// self-supervised and optimistic (the title is also embedded).
#[cfg(feature = "fulltext")]
#[test]
fn a_self_supervised_evaluation_with_a_model() {
    use maxsimdb::{
        CollectionSpec, ColumnType, Database, Document, EmbeddingSpec, EvalOptions, FullTextOptions,
        VectorSpec,
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    write_base(&model, "BertModel");
    let mut rng = Rng::new(5);
    candle_core::safetensors::save(&bert_weights(&mut rng, ""), model.join("model.safetensors")).unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    let spec = CollectionSpec::new("t", VectorSpec::new(0).pooled("model", 0))
        .column("title", ColumnType::Text)
        .embedding(EmbeddingSpec::new(model.display().to_string(), &["title"]));
    db.create_collection(&spec).unwrap();
    // 40 distinct titles of three of the vocabulary's words.
    let words = ["hello", "world", "late", "interaction", "a", "b", "c"];
    let mut docs = Vec::new();
    'outer: for x in &words {
        for y in &words {
            for z in &words {
                if x != y && y != z && x != z {
                    docs.push(Document::new(format!("d{}", docs.len())).set("title", format!("{x} {y} {z}")));
                    if docs.len() == 40 {
                        break 'outer;
                    }
                }
            }
        }
    }
    db.insert_text("t", &docs).unwrap();
    db.create_fulltext_index("t", FullTextOptions::default()).unwrap();
    let o = EvalOptions {
        sample_queries: Some(25),
        permutations: 1000,
        bootstrap: 300,
        ..EvalOptions::default()
    };
    let r = db.evaluate("t", &o, &mut |_, _, _| {}).unwrap();
    assert_eq!((r.docs, r.queries), (40, 25));
    assert!(r.judgments.contains("self-supervised") && r.judgments.contains("optimistic"), "{}", r.judgments);
    let names: Vec<&str> = r.rows.iter().map(|x| x.candidate.as_str()).collect();
    for want in ["maxsim", "dense:model", "dense max", "bm25"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(
        names.iter().any(|n| n.starts_with("rrf(")) && names.iter().any(|n| n.starts_with("weighted-cv("))
    );
    // A query that is its document's whole title: BM25 ranks that document first for
    // most queries (titles share words, so not all), whatever the random encoder does.
    let bm25 = r.rows.iter().find(|x| x.candidate == "bm25").unwrap();
    assert!(bm25.mrr_at_10 > 0.5, "{}", bm25.mrr_at_10);
    assert!(r.rows.iter().all(|x| x.per_query.len() == 25 && (0.0..=1.0).contains(&x.ndcg_at_10)));
    // An unknown pseudo-query column is named.
    let err = db
        .evaluate("t", &EvalOptions { self_column: Some("abstract".into()), ..o }, &mut |_, _, _| {})
        .unwrap_err();
    assert!(err.to_string().contains("abstract"), "{err}");
}
