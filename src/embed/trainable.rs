//! Trainable pooling operators loaded from weights (ALGORITHMS.md §3.4, §3.5, §4.4, §3.7):
//! NV-Embed latent-attention pooling, multi-layer trainable pooling ("Pooling and
//! Attention"), and hflayers `HopfieldPooling`. Weights live in `pooler.safetensors` next
//! to a `pooler.json` (`{"kind": ..., "version": 1, ...hyperparameters}`), with the
//! upstream key names kept verbatim; a missing or mis-shaped key is an error, never a
//! random initialisation. Computation is in f32 on candle tensors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, D};
use serde::Deserialize;

use super::bert::{cerr, cpu};
use super::pooling::l2_normalize;
use crate::{Error, Result};

/// `pooler.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct PoolerConfig {
    /// `latent_attention`, `multi_layer` or `hopfield_pooling`.
    pub kind: String,
    /// Format version (1).
    #[serde(default = "one")]
    pub version: u32,
    /// Hidden size `d`.
    pub hidden: usize,
    /// Attention heads.
    #[serde(default = "one_usize")]
    pub heads: usize,
    /// Per-head dimension (latent / multi-layer: `dh`; Hopfield: `head_dim`).
    pub dim_head: usize,
    /// Number of latents `r` (latent / multi-layer) or state patterns `S` (Hopfield).
    #[serde(default = "one_usize")]
    pub num_latents: usize,
    /// Layers `L` (multi-layer pooling).
    #[serde(default)]
    pub layers: usize,
    /// LayerNorm epsilon (1e-5 upstream).
    #[serde(default = "eps")]
    pub eps: f64,
    /// Hopfield: β (default 1/√head_dim).
    #[serde(default)]
    pub scaling: Option<f64>,
    /// Hopfield: extra update steps (default 0 = one association).
    #[serde(default)]
    pub update_steps_max: usize,
    /// Hopfield: convergence threshold on the association matrix.
    #[serde(default = "steps_eps")]
    pub update_steps_eps: f64,
    /// Key prefix (NV-Embed: `latent_attention_model.`).
    #[serde(default)]
    pub prefix: String,
}

fn one() -> u32 {
    1
}
fn one_usize() -> usize {
    1
}
fn eps() -> f64 {
    1e-5
}
fn steps_eps() -> f64 {
    1e-4
}

/// A loaded trainable pooler.
pub struct TrainedPooler {
    cfg: PoolerConfig,
    w: HashMap<String, Tensor>,
}

impl std::fmt::Debug for TrainedPooler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainedPooler").field("kind", &self.cfg.kind).finish()
    }
}

fn c<T>(r: candle_core::Result<T>) -> Result<T> {
    r.map_err(cerr)
}

impl TrainedPooler {
    /// Load `pooler.json` + `pooler.safetensors` from `dir`, checking every key and shape.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming a missing or mis-shaped key or an unknown kind.
    pub fn load(dir: &Path) -> Result<Self> {
        let cp = dir.join("pooler.json");
        let cfg: PoolerConfig = super::model::read_json(&cp)?;
        let wp = dir.join("pooler.safetensors");
        if !wp.is_file() {
            return Err(Error::io(&wp, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        let w = candle_core::safetensors::load(&wp, &cpu())
            .map_err(|e| Error::invalid(format!("{}: {e}", wp.display())))?;
        let p = Self { cfg, w };
        for (k, shape) in p.expected_shapes()? {
            let t =
                p.w.get(&k)
                    .ok_or_else(|| Error::invalid(format!("{}: missing weight '{k}'", wp.display())))?;
            if t.dims() != shape.as_slice() {
                return Err(Error::invalid(format!(
                    "{}: '{k}' has shape {:?}, expected {shape:?}",
                    wp.display(),
                    t.dims()
                )));
            }
        }
        Ok(p)
    }

    /// Output dimension (`S·d` for Hopfield pooling with `S` state patterns, else `d`).
    #[must_use]
    pub fn out_dim(&self) -> usize {
        if self.cfg.kind == "hopfield_pooling" {
            self.cfg.num_latents * self.cfg.hidden
        } else {
            self.cfg.hidden
        }
    }

    /// Whether it needs every hidden layer (multi-layer pooling).
    #[must_use]
    pub fn needs_all_layers(&self) -> bool {
        self.cfg.kind == "multi_layer"
    }

    /// Every key this pooler needs, with its shape.
    fn expected_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let c = &self.cfg;
        let (d, inner, r) = (c.hidden, c.heads * c.dim_head, c.num_latents);
        let pre = &c.prefix;
        let mut v: Vec<(String, Vec<usize>)> = Vec::new();
        let mut add = |k: &str, s: Vec<usize>| v.push((format!("{pre}{k}"), s));
        match c.kind.as_str() {
            "latent_attention" | "multi_layer" => {
                add("latents", vec![r, d]);
                for n in [
                    "cross_attend_blocks.0.norm",
                    "cross_attend_blocks.0.norm_context",
                    "cross_attend_blocks.1.norm",
                ] {
                    add(&format!("{n}.weight"), vec![d]);
                    add(&format!("{n}.bias"), vec![d]);
                }
                add("cross_attend_blocks.0.fn.to_q.weight", vec![inner, d]);
                add("cross_attend_blocks.0.fn.to_kv.weight", vec![2 * inner, d]);
                add("cross_attend_blocks.0.fn.to_out.weight", vec![d, inner]);
                add("cross_attend_blocks.1.fn.net.0.weight", vec![8 * d, d]);
                add("cross_attend_blocks.1.fn.net.0.bias", vec![8 * d]);
                add("cross_attend_blocks.1.fn.net.2.weight", vec![d, 4 * d]);
                add("cross_attend_blocks.1.fn.net.2.bias", vec![d]);
                if c.kind == "multi_layer" {
                    if c.layers == 0 {
                        return Err(Error::invalid("multi_layer pooler needs `layers`"));
                    }
                    add("pos_emb.weight", vec![c.layers, d]);
                }
            }
            "hopfield_pooling" => {
                add("pooling_weights", vec![1, r, d]);
                add("hopfield.association_core.in_proj_weight", vec![3 * inner, d]);
                add("hopfield.association_core.in_proj_bias", vec![3 * inner]);
                add("hopfield.association_core.out_proj.weight", vec![d, inner]);
                add("hopfield.association_core.out_proj.bias", vec![d]);
                for n in ["norm_stored_pattern", "norm_state_pattern", "norm_pattern_projection"] {
                    add(&format!("hopfield.{n}.weight"), vec![d]);
                    add(&format!("hopfield.{n}.bias"), vec![d]);
                }
            }
            other => return Err(Error::invalid(format!("unknown pooler kind '{other}'"))),
        }
        Ok(v)
    }

    fn t(&self, k: &str) -> &Tensor {
        // Every key was checked in `load`.
        &self.w[&format!("{}{k}", self.cfg.prefix)]
    }

    fn ln(&self, x: &Tensor, name: &str) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + self.cfg.eps)?.sqrt()?)?;
        xn.broadcast_mul(self.t(&format!("{name}.weight")))?.broadcast_add(self.t(&format!("{name}.bias")))
    }

    /// Multi-head cross-attention: queries from `q_in` (n×d), keys/values from `kv_in` (m×d).
    fn cross(&self, q_in: &Tensor, kv_in: &Tensor) -> candle_core::Result<Tensor> {
        let (h, dh) = (self.cfg.heads, self.cfg.dim_head);
        let q = q_in.matmul(&self.t("cross_attend_blocks.0.fn.to_q.weight").t()?)?;
        let kv = kv_in.matmul(&self.t("cross_attend_blocks.0.fn.to_kv.weight").t()?)?;
        let (k, v) = (kv.narrow(1, 0, h * dh)?, kv.narrow(1, h * dh, h * dh)?);
        let mut outs = Vec::with_capacity(h);
        for i in 0..h {
            let (qh, kh, vh) = (q.narrow(1, i * dh, dh)?, k.narrow(1, i * dh, dh)?, v.narrow(1, i * dh, dh)?);
            let a = candle_nn::ops::softmax_last_dim(&(qh.matmul(&kh.t()?)? / (dh as f64).sqrt())?)?;
            outs.push(a.matmul(&vh)?);
        }
        Tensor::cat(&outs, 1)?.matmul(&self.t("cross_attend_blocks.0.fn.to_out.weight").t()?)
    }

    /// The GEGLU feed-forward block with its residual: `x + W2((a ⊙ gelu(g))) + b2`.
    fn ff(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let d = self.cfg.hidden;
        let u = self
            .ln(x, "cross_attend_blocks.1.norm")?
            .matmul(&self.t("cross_attend_blocks.1.fn.net.0.weight").t()?)?
            .broadcast_add(self.t("cross_attend_blocks.1.fn.net.0.bias"))?;
        let (a, g) = (u.narrow(1, 0, 4 * d)?, u.narrow(1, 4 * d, 4 * d)?);
        let y = (a * g.gelu_erf()?)?
            .matmul(&self.t("cross_attend_blocks.1.fn.net.2.weight").t()?)?
            .broadcast_add(self.t("cross_attend_blocks.1.fn.net.2.bias"))?;
        y + x
    }

    /// Pool one sequence. `layers` are the encoder's hidden states (embedding output first,
    /// each `L × d`); `mask` marks the tokens that take part (NV-Embed's pool mask,
    /// e.g. with instruction tokens removed). The result is L2-normalised (`S·d` values for
    /// Hopfield pooling with `S` state patterns, not normalised).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when no token is valid or shapes do not fit.
    pub fn pool(&self, layers: &[Vec<f32>], mask: &[bool]) -> Result<Vec<f32>> {
        let d = self.cfg.hidden;
        let n = mask.len();
        if mask.iter().all(|m| !m) {
            return Err(Error::invalid("pooling needs at least one unmasked token"));
        }
        let last = layers.last().ok_or_else(|| Error::invalid("no hidden states"))?;
        if last.len() != n * d {
            return Err(Error::DimensionMismatch {
                what: "pooler input".into(),
                expected: n * d,
                got: last.len(),
            });
        }
        let mut out = match self.cfg.kind.as_str() {
            "latent_attention" => self.latent(last, mask)?,
            "multi_layer" => self.multi_layer(layers, mask)?,
            _ => return self.hopfield(last, mask),
        };
        l2_normalize(&mut out);
        Ok(out)
    }

    fn latent(&self, h: &[f32], mask: &[bool]) -> Result<Vec<f32>> {
        let d = self.cfg.hidden;
        let h = c(Tensor::from_slice(h, (mask.len(), d), &cpu()))?;
        let x = c(self.ln(&h, "cross_attend_blocks.0.norm"))?;
        let ctx = c(self.ln(self.t("latents"), "cross_attend_blocks.0.norm_context"))?;
        let h1 = c(self.cross(&x, &ctx).and_then(|a| a + &h))?;
        let h2 = c(self.ff(&h1))?;
        masked_mean_rows(&h2, mask)
    }

    fn multi_layer(&self, layers: &[Vec<f32>], mask: &[bool]) -> Result<Vec<f32>> {
        let (d, l) = (self.cfg.hidden, self.cfg.layers);
        if layers.len() != l + 1 {
            return Err(Error::invalid(format!(
                "multi_layer pooler expects {l} layers (+ embeddings), got {}",
                layers.len()
            )));
        }
        let mut s = Vec::with_capacity(l * d);
        for layer in &layers[1..] {
            s.extend(super::pooling::masked_mean(layer, mask, d)?);
        }
        let s = c(Tensor::from_vec(s, (l, d), &cpu()).and_then(|s| s + self.t("pos_emb.weight")))?;
        let x = c(self.ln(&s, "cross_attend_blocks.0.norm"))?;
        let lat = self.t("latents");
        let ctx = c(self.ln(lat, "cross_attend_blocks.0.norm_context"))?;
        let z1 = c(self.cross(&ctx, &x).and_then(|a| a + lat))?;
        let z2 = c(self.ff(&z1))?;
        c(z2.mean(0).and_then(|m| m.to_vec1()))
    }

    fn hopfield(&self, y: &[f32], mask: &[bool]) -> Result<Vec<f32>> {
        let (d, h, hd, s) = (self.cfg.hidden, self.cfg.heads, self.cfg.dim_head, self.cfg.num_latents);
        let e = h * hd;
        let run = || -> candle_core::Result<Vec<f32>> {
            let y = Tensor::from_slice(y, (mask.len(), d), &cpu())?;
            let r = self.ln(&self.t("pooling_weights").reshape((s, d))?, "hopfield.norm_state_pattern")?;
            let ks = self.ln(&y, "hopfield.norm_stored_pattern")?;
            let vs = self.ln(&y, "hopfield.norm_pattern_projection")?;
            let w = self.t("hopfield.association_core.in_proj_weight");
            let b = self.t("hopfield.association_core.in_proj_bias");
            let proj = |x: &Tensor, i: usize| {
                x.matmul(&w.narrow(0, i * e, e)?.t()?)?.broadcast_add(&b.narrow(0, i * e, e)?)
            };
            let (q, k, v) = (proj(&r, 0)?, proj(&ks, 1)?, proj(&vs, 2)?);
            let beta = self.cfg.scaling.unwrap_or(1.0 / (hd as f64).sqrt());
            let bias: Vec<f32> = mask.iter().map(|m| if *m { 0.0 } else { f32::NEG_INFINITY }).collect();
            let bias = Tensor::from_vec(bias, (1, mask.len()), &cpu())?;
            let mut outs = Vec::with_capacity(h);
            for i in 0..h {
                let (mut qh, kh, vh) =
                    (q.narrow(1, i * hd, hd)?, k.narrow(1, i * hd, hd)?, v.narrow(1, i * hd, hd)?);
                let assoc = |qh: &Tensor| {
                    candle_nn::ops::softmax_last_dim(&(qh.matmul(&kh.t()?)? * beta)?.broadcast_add(&bias)?)
                };
                let mut a = assoc(&qh)?;
                for _ in 0..self.cfg.update_steps_max {
                    qh = a.matmul(&kh)?;
                    let next = assoc(&qh)?;
                    let delta = (&next - &a)?.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
                    a = next;
                    if f64::from(delta) <= self.cfg.update_steps_eps {
                        break;
                    }
                }
                outs.push(a.matmul(&vh)?);
            }
            let o = Tensor::cat(&outs, 1)?
                .matmul(&self.t("hopfield.association_core.out_proj.weight").t()?)?
                .broadcast_add(self.t("hopfield.association_core.out_proj.bias"))?;
            o.flatten_all()?.to_dtype(DType::F32)?.to_vec1()
        };
        c(run())
    }
}

fn masked_mean_rows(t: &Tensor, mask: &[bool]) -> Result<Vec<f32>> {
    let rows: Vec<Vec<f32>> = c(t.to_vec2())?;
    let flat: Vec<f32> = rows.into_iter().flatten().collect();
    super::pooling::masked_mean(&flat, mask, flat.len() / mask.len())
}

#[cfg(test)]
mod tests {
    //! Each pooler against an independent plain-Rust computation of its formula, with small
    //! random weights written by the test.
    use super::*;
    use crate::rng::Rng;

    type M = Vec<Vec<f32>>;

    fn mm(a: &M, bt: &M) -> M {
        // a (n×k) · btᵀ where bt is (m×k): torch Linear convention y = x Wᵀ.
        a.iter().map(|r| bt.iter().map(|w| r.iter().zip(w).map(|(x, y)| x * y).sum()).collect()).collect()
    }
    fn add(a: &M, b: &M) -> M {
        a.iter().zip(b).map(|(r, s)| r.iter().zip(s).map(|(x, y)| x + y).collect()).collect()
    }
    fn addv(a: &M, v: &[f32]) -> M {
        a.iter().map(|r| r.iter().zip(v).map(|(x, y)| x + y).collect()).collect()
    }
    fn ln(a: &M, w: &[f32], b: &[f32]) -> M {
        a.iter()
            .map(|r| {
                let n = r.len() as f32;
                let m = r.iter().sum::<f32>() / n;
                let v = r.iter().map(|x| (x - m).powi(2)).sum::<f32>() / n;
                r.iter().enumerate().map(|(i, x)| (x - m) / (v + 1e-5).sqrt() * w[i] + b[i]).collect()
            })
            .collect()
    }
    fn softmax_rows(a: &M) -> M {
        a.iter().map(|r| super::super::pooling::softmax(r)).collect()
    }
    fn gelu(x: f32) -> f32 {
        let z = f64::from(x) / std::f64::consts::SQRT_2;
        let (mut sum, mut term) = (0.0, z);
        for n in 0..80 {
            sum += term / (2 * n + 1) as f64;
            term *= -z * z / (n + 1) as f64;
        }
        (0.5 * f64::from(x) * (1.0 + 2.0 / std::f64::consts::PI.sqrt() * sum)) as f32
    }
    fn cols(a: &M, s: usize, n: usize) -> M {
        a.iter().map(|r| r[s..s + n].to_vec()).collect()
    }
    fn cat(parts: &[M]) -> M {
        (0..parts[0].len()).map(|i| parts.iter().flat_map(|p| p[i].clone()).collect()).collect()
    }
    fn t(rows: usize, cols: usize, rng: &mut Rng, s: f32) -> (M, Tensor) {
        let v: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * s).collect();
        let m = v.chunks(cols).map(<[f32]>::to_vec).collect();
        (m, Tensor::from_vec(v, (rows, cols), &cpu()).unwrap())
    }

    struct Weights {
        m: HashMap<String, M>,
        t: HashMap<String, Tensor>,
    }

    impl Weights {
        fn put(&mut self, k: &str, rows: usize, cols: usize, rng: &mut Rng, s: f32, vector: bool) {
            let (m, tensor) = t(rows, cols, rng, s);
            let tensor = if vector { tensor.flatten_all().unwrap() } else { tensor };
            self.m.insert(k.into(), m);
            self.t.insert(k.into(), tensor);
        }
        fn v(&self, k: &str) -> Vec<f32> {
            self.m[k].iter().flatten().copied().collect()
        }
    }

    fn cross_weights(d: usize, inner: usize, r: usize, rng: &mut Rng) -> Weights {
        let mut w = Weights { m: HashMap::new(), t: HashMap::new() };
        w.put("latents", r, d, rng, 1.0, false);
        for n in
            ["cross_attend_blocks.0.norm", "cross_attend_blocks.0.norm_context", "cross_attend_blocks.1.norm"]
        {
            w.put(&format!("{n}.weight"), 1, d, rng, 0.5, true);
            w.put(&format!("{n}.bias"), 1, d, rng, 0.1, true);
        }
        w.put("cross_attend_blocks.0.fn.to_q.weight", inner, d, rng, 0.5, false);
        w.put("cross_attend_blocks.0.fn.to_kv.weight", 2 * inner, d, rng, 0.5, false);
        w.put("cross_attend_blocks.0.fn.to_out.weight", d, inner, rng, 0.5, false);
        w.put("cross_attend_blocks.1.fn.net.0.weight", 8 * d, d, rng, 0.5, false);
        w.put("cross_attend_blocks.1.fn.net.0.bias", 1, 8 * d, rng, 0.1, true);
        w.put("cross_attend_blocks.1.fn.net.2.weight", d, 4 * d, rng, 0.5, false);
        w.put("cross_attend_blocks.1.fn.net.2.bias", 1, d, rng, 0.1, true);
        w
    }

    fn save(dir: &Path, cfg: serde_json::Value, w: &Weights, prefix: &str) {
        std::fs::write(dir.join("pooler.json"), cfg.to_string()).unwrap();
        let named: HashMap<String, Tensor> =
            w.t.iter().map(|(k, v)| (format!("{prefix}{k}"), v.clone())).collect();
        candle_core::safetensors::save(&named, dir.join("pooler.safetensors")).unwrap();
    }

    /// Reference cross-attention + GEGLU block.
    fn ref_cross(w: &Weights, q_in: &M, kv_in: &M, h: usize, dh: usize) -> M {
        let q = mm(q_in, &w.m["cross_attend_blocks.0.fn.to_q.weight"]);
        let kv = mm(kv_in, &w.m["cross_attend_blocks.0.fn.to_kv.weight"]);
        let heads: Vec<M> = (0..h)
            .map(|i| {
                let (qh, kh, vh) =
                    (cols(&q, i * dh, dh), cols(&kv, i * dh, dh), cols(&kv, h * dh + i * dh, dh));
                let s: M =
                    mm(&qh, &kh).iter().map(|r| r.iter().map(|x| x / (dh as f32).sqrt()).collect()).collect();
                let a = softmax_rows(&s);
                let vt: M = (0..dh).map(|c| vh.iter().map(|r| r[c]).collect()).collect();
                mm(&a, &vt)
            })
            .collect();
        mm(&cat(&heads), &w.m["cross_attend_blocks.0.fn.to_out.weight"])
    }

    fn ref_ff(w: &Weights, x: &M, d: usize) -> M {
        let n = ln(x, &w.v("cross_attend_blocks.1.norm.weight"), &w.v("cross_attend_blocks.1.norm.bias"));
        let u = addv(
            &mm(&n, &w.m["cross_attend_blocks.1.fn.net.0.weight"]),
            &w.v("cross_attend_blocks.1.fn.net.0.bias"),
        );
        let g: M = u.iter().map(|r| (0..4 * d).map(|i| r[i] * gelu(r[4 * d + i])).collect()).collect();
        add(
            &addv(
                &mm(&g, &w.m["cross_attend_blocks.1.fn.net.2.weight"]),
                &w.v("cross_attend_blocks.1.fn.net.2.bias"),
            ),
            x,
        )
    }

    fn norm(v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        let err = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(err <= tol, "max error {err}: {a:?} vs {b:?}");
    }

    #[test]
    fn latent_attention_matches_hand_computation_and_ignores_padding() {
        let (d, h, dh, r, n) = (4, 2, 3, 5, 6);
        let mut rng = Rng::new(1);
        let w = cross_weights(d, h * dh, r, &mut rng);
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"kind": "latent_attention", "hidden": d, "heads": h, "dim_head": dh, "num_latents": r, "prefix": "latent_attention_model."});
        save(dir.path(), cfg, &w, "latent_attention_model.");
        let p = TrainedPooler::load(dir.path()).unwrap();
        let (hm, _) = t(n, d, &mut rng, 1.0);
        let mask = [false, true, true, true, true, false]; // instruction token, then padding
        let got = p.pool(&[hm.iter().flatten().copied().collect()], &mask).unwrap();
        let x = ln(&hm, &w.v("cross_attend_blocks.0.norm.weight"), &w.v("cross_attend_blocks.0.norm.bias"));
        let ctx = ln(
            &w.m["latents"],
            &w.v("cross_attend_blocks.0.norm_context.weight"),
            &w.v("cross_attend_blocks.0.norm_context.bias"),
        );
        let h1 = add(&ref_cross(&w, &x, &ctx, h, dh), &hm);
        let h2 = ref_ff(&w, &h1, d);
        let kept: Vec<&Vec<f32>> = h2.iter().zip(&mask).filter(|(_, m)| **m).map(|(r, _)| r).collect();
        let want = norm((0..d).map(|c| kept.iter().map(|r| r[c]).sum::<f32>() / kept.len() as f32).collect());
        close(&got, &want, 1e-5);
        // Padding rows do not matter; the instruction token does once it is unmasked.
        let mut junk = hm.iter().flatten().copied().collect::<Vec<f32>>();
        junk.extend([9.0; 8]);
        let mut mask2 = mask.to_vec();
        mask2.extend([false, false]);
        close(&p.pool(&[junk], &mask2).unwrap(), &got, 1e-6);
        let with_instr = p
            .pool(&[hm.iter().flatten().copied().collect()], &[true, true, true, true, true, false])
            .unwrap();
        assert!(with_instr.iter().zip(&got).any(|(a, b)| (a - b).abs() > 1e-4));
    }

    #[test]
    fn multi_layer_pooling_matches_hand_computation() {
        let (d, h, dh, r, l, n) = (4, 2, 3, 2, 3, 5);
        let mut rng = Rng::new(2);
        let mut w = cross_weights(d, h * dh, r, &mut rng);
        w.put("pos_emb.weight", l, d, &mut rng, 0.3, false);
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"kind": "multi_layer", "hidden": d, "heads": h, "dim_head": dh, "num_latents": r, "layers": l});
        save(dir.path(), cfg, &w, "");
        let p = TrainedPooler::load(dir.path()).unwrap();
        let layers: Vec<M> = (0..=l).map(|_| t(n, d, &mut rng, 1.0).0).collect();
        let flat: Vec<Vec<f32>> = layers.iter().map(|m| m.iter().flatten().copied().collect()).collect();
        let mask = [true, true, true, true, false];
        let got = p.pool(&flat, &mask).unwrap();
        let s: M = layers[1..]
            .iter()
            .zip(&w.m["pos_emb.weight"])
            .map(|(m, pe)| (0..d).map(|c| m[..4].iter().map(|r| r[c]).sum::<f32>() / 4.0 + pe[c]).collect())
            .collect();
        let x = ln(&s, &w.v("cross_attend_blocks.0.norm.weight"), &w.v("cross_attend_blocks.0.norm.bias"));
        let ctx = ln(
            &w.m["latents"],
            &w.v("cross_attend_blocks.0.norm_context.weight"),
            &w.v("cross_attend_blocks.0.norm_context.bias"),
        );
        let z1 = add(&ref_cross(&w, &ctx, &x, h, dh), &w.m["latents"]);
        let z2 = ref_ff(&w, &z1, d);
        let want = norm((0..d).map(|c| z2.iter().map(|r| r[c]).sum::<f32>() / r as f32).collect());
        close(&got, &want, 1e-5);
    }

    #[test]
    fn hopfield_pooling_matches_hand_computation_and_masks_padding() {
        let (d, h, hd, s, n) = (4, 2, 2, 2, 5);
        let e = h * hd;
        let mut rng = Rng::new(3);
        let mut w = Weights { m: HashMap::new(), t: HashMap::new() };
        let (pm, pt) = t(s, d, &mut rng, 0.5);
        w.m.insert("pooling_weights".into(), pm);
        w.t.insert("pooling_weights".into(), pt.reshape((1, s, d)).unwrap());
        w.put("hopfield.association_core.in_proj_weight", 3 * e, d, &mut rng, 0.5, false);
        w.put("hopfield.association_core.in_proj_bias", 1, 3 * e, &mut rng, 0.1, true);
        w.put("hopfield.association_core.out_proj.weight", d, e, &mut rng, 0.5, false);
        w.put("hopfield.association_core.out_proj.bias", 1, d, &mut rng, 0.1, true);
        for nm in ["norm_stored_pattern", "norm_state_pattern", "norm_pattern_projection"] {
            w.put(&format!("hopfield.{nm}.weight"), 1, d, &mut rng, 0.5, true);
            w.put(&format!("hopfield.{nm}.bias"), 1, d, &mut rng, 0.1, true);
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"kind": "hopfield_pooling", "hidden": d, "heads": h, "dim_head": hd, "num_latents": s});
        save(dir.path(), cfg, &w, "");
        let p = TrainedPooler::load(dir.path()).unwrap();
        let (y, _) = t(n, d, &mut rng, 1.0);
        let mask = [true, true, false, true, true];
        let got = p.pool(&[y.iter().flatten().copied().collect()], &mask).unwrap();
        let nw = |k: &str| (w.v(&format!("hopfield.{k}.weight")), w.v(&format!("hopfield.{k}.bias")));
        let (a, b) = nw("norm_state_pattern");
        let r = ln(&w.m["pooling_weights"], &a, &b);
        let (a, b) = nw("norm_stored_pattern");
        let ks = ln(&y, &a, &b);
        let (a, b) = nw("norm_pattern_projection");
        let vs = ln(&y, &a, &b);
        let inw = &w.m["hopfield.association_core.in_proj_weight"];
        let inb = w.v("hopfield.association_core.in_proj_bias");
        let proj =
            |x: &M, i: usize| addv(&mm(x, &inw[i * e..(i + 1) * e].to_vec()), &inb[i * e..(i + 1) * e]);
        let (q, k, v) = (proj(&r, 0), proj(&ks, 1), proj(&vs, 2));
        let beta = 1.0 / (hd as f32).sqrt();
        let heads: Vec<M> = (0..h)
            .map(|i| {
                let (qh, kh, vh) = (cols(&q, i * hd, hd), cols(&k, i * hd, hd), cols(&v, i * hd, hd));
                let logits: M = mm(&qh, &kh)
                    .iter()
                    .map(|row| {
                        row.iter()
                            .zip(&mask)
                            .map(|(x, m)| if *m { x * beta } else { f32::NEG_INFINITY })
                            .collect()
                    })
                    .collect();
                let att = softmax_rows(&logits);
                assert!(att.iter().all(|row| row[2] == 0.0), "padding gets weight 0");
                let vt: M = (0..hd).map(|c| vh.iter().map(|row| row[c]).collect()).collect();
                mm(&att, &vt)
            })
            .collect();
        let o = addv(
            &mm(&cat(&heads), &w.m["hopfield.association_core.out_proj.weight"]),
            &w.v("hopfield.association_core.out_proj.bias"),
        );
        let want: Vec<f32> = o.into_iter().flatten().collect();
        close(&got, &want, 1e-5);
        // Permuting the stored patterns changes nothing.
        let perm: Vec<f32> = [4usize, 3, 2, 1, 0].iter().flat_map(|&i| y[i].clone()).collect();
        close(&p.pool(&[perm], &[true, true, false, true, true]).unwrap(), &got, 1e-5);
    }

    #[test]
    fn missing_or_misshaped_keys_are_errors() {
        let (d, h, dh, r) = (4, 2, 3, 5);
        let mut rng = Rng::new(4);
        let mut w = cross_weights(d, h * dh, r, &mut rng);
        let dir = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({"kind": "latent_attention", "hidden": d, "heads": h, "dim_head": dh, "num_latents": r});
        w.t.remove("cross_attend_blocks.1.fn.net.2.bias");
        save(dir.path(), cfg.clone(), &w, "");
        let e = TrainedPooler::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("cross_attend_blocks.1.fn.net.2.bias"), "{e}");
        w.put("cross_attend_blocks.1.fn.net.2.bias", 1, d + 1, &mut rng, 0.1, true);
        save(dir.path(), cfg, &w, "");
        let e = TrainedPooler::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("shape"), "{e}");
    }
}
