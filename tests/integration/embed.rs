//! The encoder against the independent float64 reference for all-MiniLM-L6-v2
//! (`../shared/fixtures/all-MiniLM-L6-v2`). The model comes from `scripts/get-model.sh`;
//! outside CI the test skips loudly when it is absent, in CI (`CI` set) it fails.

use std::path::PathBuf;

use maxsimdb::embed::{resolve_model, Encoder};

pub fn minilm() -> Option<Encoder> {
    match resolve_model("all-MiniLM-L6-v2") {
        Ok(dir) => Some(Encoder::load(&dir).expect("load all-MiniLM-L6-v2")),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "CI must fetch the model first: {e}");
            eprintln!("\n*** SKIPPING real-model test: {e} ***\n");
            None
        }
    }
}

fn reference() -> Vec<serde_json::Value> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/all-MiniLM-L6-v2/reference.jsonl");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn minilm_matches_the_float64_reference() {
    let Some(enc) = minilm() else { return };
    assert_eq!(enc.dim(), 384);
    assert_eq!(enc.max_len(), 256, "sentence_bert_config.json overrides the tokenizer's 128");
    let recs = reference();
    let texts: Vec<&str> = recs.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let out = enc.encode(&texts).unwrap();
    let mut hidden_checked = 0;
    for (r, e) in recs.iter().zip(&out) {
        let ids: Vec<u32> =
            r["token_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(e.token_ids, ids, "token ids of {:?}", r["text"]);
        let want = floats(&r["mean_pooled_normalized"]);
        let cos: f32 = want.iter().zip(&e.pooled).map(|(a, b)| a * b).sum::<f32>()
            / (want.iter().map(|x| x * x).sum::<f32>().sqrt()
                * e.pooled.iter().map(|x| x * x).sum::<f32>().sqrt());
        assert!(cos >= 0.99999, "pooled cosine {cos} for {:?}", r["text"]);
        if let Some(h) = r.get("last_hidden_state") {
            let want: Vec<f32> = h.as_array().unwrap().iter().flat_map(floats).collect();
            let err = want.iter().zip(&e.hidden).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert_eq!(want.len(), e.hidden.len());
            assert!(err <= 1e-3, "hidden state error {err}");
            hidden_checked += 1;
        }
    }
    assert_eq!(hidden_checked, 6);
    assert!(out.iter().any(|e| e.token_ids.len() == 256), "the > 256-token sentence is truncated at 256");
}

#[test]
fn alone_equals_inside_a_padded_batch() {
    let Some(enc) = minilm() else { return };
    let texts =
        ["short one", "a considerably longer sentence that forces padding of the short one in its batch"];
    let batch = enc.encode(&texts).unwrap();
    let alone = enc.encode(&texts[..1]).unwrap();
    let err = batch[0].hidden.iter().zip(&alone[0].hidden).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(err <= 1e-5, "hidden differs by {err}");
    let err = batch[0].pooled.iter().zip(&alone[0].pooled).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(err <= 1e-5, "pooled differs by {err}");
}
