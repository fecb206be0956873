//! `embed` suite: encoder throughput on SciFact documents, ModernBERT at GTE-ModernColBERT-v1's
//! size against BERT at ColBERTv2's (BERT-base) size, both with random weights and the same
//! tokens, in one process.
//!
//! Both checkpoints are written by the suite in the PyLate layout (a 768 → 128 Dense head,
//! `document_length` 300) with the byte-level BPE tokenizer of the modernbert-tiny fixture
//! (trained on SciFact, so token counts are realistic; the vocabulary is 1,000 instead of
//! 50,370, which changes no FLOP of the encoder). Documents are `title + " " + text`,
//! truncated at 300 tokens as PyLate does. The figures: tokens/s and useful GFLOP/s
//! (matmuls, plus `4·d` per attended query–key pair: only the keys inside a local layer's
//! window count), and `time_per_flop_ratio` = ModernBERT's seconds per FLOP over BERT's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use maxsimdb::embed::colbert::TokenEncoder;
use maxsimdb::testing::Rng;
use serde_json::json;

use crate::{report, Args};

/// One architecture's shape.
struct Shape {
    modern: bool,
    hidden: usize,
    layers: usize,
    heads: usize,
    inter: usize,
    /// ModernBERT: `local_attention` (window = half each side); every 3rd layer global.
    local: usize,
}

const GTE_MODERNCOLBERT: Shape =
    Shape { modern: true, hidden: 768, layers: 22, heads: 12, inter: 1152, local: 128 };
const BERT_BASE: Shape = Shape { modern: false, hidden: 768, layers: 12, heads: 12, inter: 3072, local: 0 };
const VOCAB: usize = 1000;

/// A safetensors file of f32 tensors (header: JSON of dtype, shape, byte offsets).
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<(), String> {
    let mut header = serde_json::Map::new();
    let mut at = 0usize;
    for (name, shape, data) in tensors {
        let end = at + data.len() * 4;
        header.insert(name.clone(), json!({"dtype": "F32", "shape": shape, "data_offsets": [at, end]}));
        at = end;
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + at);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    for (_, _, data) in tensors {
        for x in data {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<(), String> {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap_or_default())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Write a random-weight checkpoint of shape `s` into `dir` (PyLate layout).
fn write_model(dir: &Path, s: &Shape, fixture: &Path, rng: &mut Rng) -> Result<(), String> {
    std::fs::create_dir_all(dir.join("1_Dense")).map_err(|e| e.to_string())?;
    let (h, i) = (s.hidden, s.inter);
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut randn = |name: String, shape: Vec<usize>, scale: f32| {
        let n = shape.iter().product();
        let v = (0..n).map(|_| rng.normal() * scale).collect();
        t.push((name, shape, v));
    };
    let ones = |name: String, n: usize| (name, vec![n], vec![1.0f32; n]);
    let zeros = |name: String, n: usize| (name, vec![n], vec![0.0f32; n]);
    let mut fixed = Vec::new();
    if s.modern {
        randn("embeddings.tok_embeddings.weight".into(), vec![VOCAB, h], 0.02);
        fixed.push(ones("embeddings.norm.weight".into(), h));
        for l in 0..s.layers {
            randn(format!("layers.{l}.attn.Wqkv.weight"), vec![3 * h, h], 0.02);
            randn(format!("layers.{l}.attn.Wo.weight"), vec![h, h], 0.02);
            randn(format!("layers.{l}.mlp.Wi.weight"), vec![2 * i, h], 0.02);
            randn(format!("layers.{l}.mlp.Wo.weight"), vec![h, i], 0.02);
            if l > 0 {
                fixed.push(ones(format!("layers.{l}.attn_norm.weight"), h));
            }
            fixed.push(ones(format!("layers.{l}.mlp_norm.weight"), h));
        }
        fixed.push(ones("final_norm.weight".into(), h));
    } else {
        randn("embeddings.word_embeddings.weight".into(), vec![VOCAB, h], 0.02);
        randn("embeddings.position_embeddings.weight".into(), vec![512, h], 0.02);
        randn("embeddings.token_type_embeddings.weight".into(), vec![2, h], 0.02);
        fixed.push(ones("embeddings.LayerNorm.weight".into(), h));
        fixed.push(zeros("embeddings.LayerNorm.bias".into(), h));
        for l in 0..s.layers {
            let p = format!("encoder.layer.{l}");
            for (k, o, n) in [
                ("attention.self.query", h, h),
                ("attention.self.key", h, h),
                ("attention.self.value", h, h),
                ("attention.output.dense", h, h),
                ("intermediate.dense", i, h),
                ("output.dense", h, i),
            ] {
                randn(format!("{p}.{k}.weight"), vec![o, n], 0.02);
                fixed.push(zeros(format!("{p}.{k}.bias"), o));
            }
            for k in ["attention.output.LayerNorm", "output.LayerNorm"] {
                fixed.push(ones(format!("{p}.{k}.weight"), h));
                fixed.push(zeros(format!("{p}.{k}.bias"), h));
            }
        }
    }
    let mut dense = Vec::new();
    let n = 128 * h;
    dense.push(("linear.weight".to_string(), vec![128, h], (0..n).map(|_| rng.normal() * 0.02).collect()));
    t.extend(fixed);
    write_safetensors(&dir.join("model.safetensors"), &t)?;
    write_safetensors(&dir.join("1_Dense/model.safetensors"), &dense)?;
    let mut config = json!({
        "vocab_size": VOCAB, "hidden_size": h, "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads, "intermediate_size": i,
        "pad_token_id": 996, "cls_token_id": 994, "sep_token_id": 995,
    });
    let c = config.as_object_mut().ok_or("config")?;
    if s.modern {
        for (k, v) in [
            ("model_type", json!("modernbert")),
            ("architectures", json!(["ModernBertModel"])),
            ("max_position_embeddings", json!(8192)),
            ("global_attn_every_n_layers", json!(3)),
            ("global_rope_theta", json!(160_000.0)),
            ("local_rope_theta", json!(10_000.0)),
            ("local_attention", json!(s.local)),
            ("hidden_activation", json!("gelu")),
            ("norm_eps", json!(1e-5)),
            ("norm_bias", json!(false)),
            ("attention_bias", json!(false)),
            ("mlp_bias", json!(false)),
        ] {
            c.insert(k.into(), v);
        }
    } else {
        for (k, v) in [
            ("model_type", json!("bert")),
            ("architectures", json!(["BertModel"])),
            ("max_position_embeddings", json!(512)),
            ("hidden_act", json!("gelu")),
            ("layer_norm_eps", json!(1e-12)),
            ("type_vocab_size", json!(2)),
        ] {
            c.insert(k.into(), v);
        }
    }
    write_json(&dir.join("config.json"), &config)?;
    write_json(
        &dir.join("modules.json"),
        &json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}
        ]),
    )?;
    write_json(
        &dir.join("1_Dense/config.json"),
        &json!({"in_features": h, "out_features": 128, "bias": false,
                "activation_function": "torch.nn.modules.linear.Identity"}),
    )?;
    write_json(
        &dir.join("sentence_bert_config.json"),
        &json!({"max_seq_length": 299, "do_lower_case": false}),
    )?;
    let st = std::fs::read_to_string(fixture.join("config_sentence_transformers.json"))
        .map_err(|e| e.to_string())?;
    let mut st: serde_json::Value = serde_json::from_str(&st).map_err(|e| e.to_string())?;
    st["document_length"] = json!(300);
    write_json(&dir.join("config_sentence_transformers.json"), &st)?;
    std::fs::copy(fixture.join("tokenizer.json"), dir.join("tokenizer.json")).map_err(|e| e.to_string())?;
    Ok(())
}

/// Useful FLOPs of one sequence of `t` tokens.
fn flops(s: &Shape, t: usize) -> f64 {
    let (h, i, t) = (s.hidden as f64, s.inter as f64, t as f64);
    // q/k/v + output projections; MLP: BERT h→i→h, ModernBERT GeGLU h→2i, i→h.
    let ffn = if s.modern { 3.0 * h * i } else { 2.0 * h * i };
    let dense = 2.0 * t * (4.0 * h * h + ffn);
    let half = s.local / 2;
    let mut total = 0.0;
    for l in 0..s.layers {
        let global = !s.modern || l % 3 == 0;
        let pairs: usize = if global {
            (t * t) as usize
        } else {
            (0..t as usize).map(|q| (q + half).min(t as usize - 1) + 1 - q.saturating_sub(half)).sum()
        };
        total += dense + 4.0 * h * pairs as f64;
    }
    total
}

pub fn run(args: &Args) -> Result<(), String> {
    let data = PathBuf::from(args.opt("data").unwrap_or("../shared/datasets/scifact"));
    let fixture = PathBuf::from(args.opt("fixture").unwrap_or("../shared/fixtures/modernbert-tiny"));
    let n: usize = args.get("docs", 128)?;
    let batch: usize = args.get("batch", 8)?;
    let corpus = crate::beir::read_jsonl(&data.join("corpus.jsonl"))?;
    let texts: Vec<String> = corpus
        .iter()
        .take(n)
        .map(|d| {
            format!("{} {}", d["title"].as_str().unwrap_or_default(), d["text"].as_str().unwrap_or_default())
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut rng = Rng::new(20_261_203);
    let mut out = serde_json::Map::new();
    let mut per_flop = Vec::new();
    for (name, shape) in [("modernbert", &GTE_MODERNCOLBERT), ("bert", &BERT_BASE)] {
        let dir = tmp.path().join(name);
        write_model(&dir, shape, &fixture, &mut rng)?;
        let mut enc = TokenEncoder::load(&dir).map_err(|e| e.to_string())?;
        enc.encoder_mut().batch_size = batch;
        // Warm-up (thread pools, page faults of the weights).
        enc.encode_documents(&refs[..refs.len().min(8)]).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let docs = enc.encode_documents(&refs).map_err(|e| e.to_string())?;
        let secs = started.elapsed().as_secs_f64();
        let lens: Vec<usize> = docs.iter().map(|d| d.encoded.token_ids.len()).collect();
        let tokens: usize = lens.iter().sum();
        let gflop: f64 = lens.iter().map(|&t| flops(shape, t)).sum::<f64>() / 1e9;
        eprintln!("{name}: {n} documents, {tokens} tokens in {secs:.2} s");
        out.insert(format!("{name}_tokens_per_s"), json!(tokens as f64 / secs));
        out.insert(format!("{name}_gflops"), json!(gflop / secs));
        out.insert(format!("{name}_gflop_per_token"), json!(gflop / tokens as f64));
        out.insert(format!("{name}_seconds"), json!(secs));
        out.insert("tokens".into(), json!(tokens));
        per_flop.push(secs / gflop);
        drop(enc);
        std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    }
    out.insert("docs".into(), json!(n));
    out.insert("batch".into(), json!(batch));
    out.insert("threads".into(), json!(rayon::current_num_threads()));
    out.insert("time_per_flop_ratio".into(), json!(per_flop[0] / per_flop[1]));
    report(
        args,
        "embed (random weights: GTE-ModernColBERT-v1 size vs BERT-base)",
        &serde_json::Value::Object(out),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{flops, Shape};

    /// A local window wider than the sequence counts every pair, as a global layer does; a
    /// narrower one counts `Σ_q |[q − w, q + w] ∩ [0, t)|` pairs.
    #[test]
    fn local_layers_count_only_the_keys_in_their_window() {
        let s = |local| Shape { modern: true, hidden: 8, layers: 2, heads: 2, inter: 4, local };
        let (t, h) = (10usize, 8.0);
        let dense = 2.0 * t as f64 * (4.0 * h * h + 3.0 * h * 4.0);
        // Layer 0 global (100 pairs); layer 1 local.
        assert_eq!(flops(&s(64), t), 2.0 * dense + 4.0 * h * 200.0);
        // Half window 2: rows 0 and 9 see 3 keys, rows 1 and 8 see 4, the other six see 5.
        assert_eq!(flops(&s(4), t), 2.0 * dense + 4.0 * h * (100.0 + 44.0));
    }
}
