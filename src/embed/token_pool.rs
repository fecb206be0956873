//! Token pooling (Answer.AI / PyLate hierarchical clustering, ALGORITHMS.md §2.4): shrink a
//! document's token vectors by Ward clustering and keep one mean vector per cluster.
//!
//! PyLate semantics: the first `protected` rows are kept as they are; the remaining `n'`
//! rows are clustered on the distance `1 − x_i·x_j` with Ward linkage (scipy's
//! Lance–Williams update), cut into `k = max(n' / pool_factor, 1)` clusters, and each
//! cluster becomes its exact (not re-normalised) mean. The linkage is built with the
//! nearest-neighbour-chain algorithm (O(n'²), valid for Ward) and the merges are applied
//! in height order with a union–find over the original rows — the merged cluster is
//! linked to both parents, the rule PLRS's DSU misses.

/// Pool `e` (`n × dim`, row-major). Returns the pooled rows (`protected + k` of them when
/// no merge heights tie).
#[must_use]
pub fn pool_tokens(e: &[f32], dim: usize, pool_factor: usize, protected: usize) -> Vec<f32> {
    let n = e.len() / dim;
    let protected = protected.min(n);
    let x = &e[protected * dim..];
    let np = n - protected;
    let k = (np / pool_factor.max(1)).max(1);
    if pool_factor <= 1 || k >= np {
        return e.to_vec();
    }
    let merges = ward_merges(x, dim);
    let mut dsu: Vec<usize> = (0..np).collect();
    fn find(d: &mut [usize], mut i: usize) -> usize {
        while d[i] != i {
            d[i] = d[d[i]];
            i = d[i];
        }
        i
    }
    for &(a, b, _) in merges.iter().take(np - k) {
        let (ra, rb) = (find(&mut dsu, a), find(&mut dsu, b));
        dsu[ra.max(rb)] = ra.min(rb);
    }
    let mut out = e[..protected * dim].to_vec();
    let mut roots: Vec<usize> = Vec::new();
    let mut sums: Vec<(Vec<f64>, usize)> = Vec::new();
    for i in 0..np {
        let r = find(&mut dsu, i);
        let slot = roots.iter().position(|&x| x == r).unwrap_or_else(|| {
            roots.push(r);
            sums.push((vec![0.0; dim], 0));
            roots.len() - 1
        });
        let (s, c) = &mut sums[slot];
        s.iter_mut().zip(&x[i * dim..(i + 1) * dim]).for_each(|(a, v)| *a += f64::from(*v));
        *c += 1;
    }
    for (s, c) in sums {
        out.extend(s.into_iter().map(|v| (v / c as f64) as f32));
    }
    out
}

/// Ward merges `(a, b, height)` over rows of `x`, sorted by height; `a` and `b` are
/// original row indices representing the two clusters joined.
fn ward_merges(x: &[f32], dim: usize) -> Vec<(usize, usize, f64)> {
    let n = x.len() / dim;
    let mut d = vec![0f64; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let dot: f32 =
                x[i * dim..(i + 1) * dim].iter().zip(&x[j * dim..(j + 1) * dim]).map(|(a, b)| a * b).sum();
            let v = (1.0 - f64::from(dot)).max(0.0);
            d[i * n + j] = v;
            d[j * n + i] = v;
        }
    }
    let mut size = vec![1usize; n];
    let mut active = vec![true; n];
    let mut chain: Vec<usize> = Vec::new();
    let mut merges = Vec::with_capacity(n.saturating_sub(1));
    let mut remaining = n;
    while remaining > 1 {
        if chain.is_empty() {
            chain.push(active.iter().position(|a| *a).unwrap_or(0));
        }
        let a = *chain.last().unwrap_or(&0);
        let prev = if chain.len() >= 2 { Some(chain[chain.len() - 2]) } else { None };
        // Nearest active neighbour of `a`, preferring the previous chain element on ties.
        let mut best = prev.unwrap_or(usize::MAX);
        let mut best_d = prev.map_or(f64::INFINITY, |p| d[a * n + p]);
        for j in 0..n {
            if j != a && active[j] && d[a * n + j] < best_d {
                best = j;
                best_d = d[a * n + j];
            }
        }
        if Some(best) == prev {
            chain.pop();
            chain.pop();
            let (s, t) = (a.min(best), a.max(best));
            merges.push((s, t, best_d));
            // Lance–Williams (Ward): the merged cluster lives in slot `s`.
            for v in 0..n {
                if !active[v] || v == s || v == t {
                    continue;
                }
                let (nv, ns, nt) = (size[v] as f64, size[s] as f64, size[t] as f64);
                let tot = nv + ns + nt;
                let (dvs, dvt, dst) = (d[v * n + s], d[v * n + t], d[s * n + t]);
                let nd =
                    (((nv + ns) * dvs * dvs + (nv + nt) * dvt * dvt - nv * dst * dst) / tot).max(0.0).sqrt();
                d[v * n + s] = nd;
                d[s * n + v] = nd;
            }
            size[s] += size[t];
            active[t] = false;
            remaining -= 1;
        } else {
            chain.push(best);
        }
    }
    merges.sort_by(|a, b| a.2.total_cmp(&b.2));
    merges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn factor_one_is_identity_and_protected_rows_are_bit_identical() {
        let mut rng = Rng::new(1);
        let e = rng.unit_vectors(20, 8);
        assert_eq!(pool_tokens(&e, 8, 1, 1), e);
        let p = pool_tokens(&e, 8, 3, 2);
        assert_eq!(p[..16], e[..16], "protected rows untouched");
        assert_eq!(p.len() / 8, 2 + 18 / 3, "protected + k outputs");
    }

    #[test]
    fn outputs_are_exact_means_of_a_partition() {
        let mut rng = Rng::new(2);
        let e = rng.unit_vectors(31, 6);
        let out = pool_tokens(&e, 6, 2, 1);
        let k = 30 / 2;
        assert_eq!(out.len() / 6, 1 + k);
        // Every input row belongs to exactly one output cluster: the means, weighted by
        // cluster sizes, sum to the sum of the inputs; and each output is a mean of some
        // subset (checked by reconstructing with the same union-find through the public
        // result: total mass is preserved).
        let merges = ward_merges(&e[6..], 6);
        assert_eq!(merges.len(), 29);
        assert!(merges.windows(2).all(|w| w[0].2 <= w[1].2), "heights sorted");
        let total: Vec<f64> = (0..6).map(|c| e[6..].chunks_exact(6).map(|r| f64::from(r[c])).sum()).collect();
        let mut dsu_sizes = vec![1usize; 30];
        let mut parent: Vec<usize> = (0..30).collect();
        fn find(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                i = p[i];
            }
            i
        }
        for &(a, b, _) in merges.iter().take(30 - k) {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            parent[hi] = lo;
            dsu_sizes[lo] += dsu_sizes[hi];
        }
        let roots: Vec<usize> = (0..30).filter(|&i| find(&mut parent, i) == i).collect();
        assert_eq!(roots.len(), k);
        let weighted: Vec<f64> = (0..6)
            .map(|c| {
                roots
                    .iter()
                    .enumerate()
                    .map(|(o, r)| f64::from(out[(1 + o) * 6 + c]) * dsu_sizes[*r] as f64)
                    .sum()
            })
            .collect();
        for c in 0..6 {
            assert!((weighted[c] - total[c]).abs() < 1e-4, "channel {c}: {} vs {}", weighted[c], total[c]);
        }
    }

    #[test]
    fn two_groups_of_identical_vectors_collapse_to_the_group_vectors() {
        let a = [1.0f32, 0.0, 0.0, 0.0];
        let b = [0.0f32, 1.0, 0.0, 0.0];
        let mut e = Vec::new();
        for i in 0..8 {
            e.extend_from_slice(if i % 2 == 0 { &a } else { &b });
        }
        let out = pool_tokens(&e, 4, 4, 0);
        assert_eq!(out.len(), 8);
        let rows: Vec<&[f32]> = out.chunks_exact(4).collect();
        assert!(rows.contains(&&a[..]) && rows.contains(&&b[..]), "{out:?}");
    }

    #[test]
    fn ward_matches_the_naive_greedy_algorithm() {
        let mut rng = Rng::new(3);
        let x = rng.unit_vectors(12, 5);
        let fast: Vec<f64> = ward_merges(&x, 5).iter().map(|m| m.2).collect();
        // Naive O(n³) greedy Ward with the same Lance–Williams update.
        let n = 12;
        let mut d: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        (1.0 - f64::from(
                            x[i * 5..i * 5 + 5]
                                .iter()
                                .zip(&x[j * 5..j * 5 + 5])
                                .map(|(a, b)| a * b)
                                .sum::<f32>(),
                        ))
                        .max(0.0)
                    })
                    .collect()
            })
            .collect();
        let mut size = vec![1.0f64; n];
        let mut alive = vec![true; n];
        let mut slow = Vec::new();
        for _ in 0..n - 1 {
            let mut best = (f64::INFINITY, 0, 0);
            for i in 0..n {
                for j in i + 1..n {
                    if alive[i] && alive[j] && d[i][j] < best.0 {
                        best = (d[i][j], i, j);
                    }
                }
            }
            let (h, s, t) = best;
            slow.push(h);
            for v in 0..n {
                if alive[v] && v != s && v != t {
                    let tot = size[v] + size[s] + size[t];
                    let nd = (((size[v] + size[s]) * d[v][s].powi(2)
                        + (size[v] + size[t]) * d[v][t].powi(2)
                        - size[v] * d[s][t].powi(2))
                        / tot)
                        .max(0.0)
                        .sqrt();
                    d[v][s] = nd;
                    d[s][v] = nd;
                }
            }
            size[s] += size[t];
            alive[t] = false;
        }
        slow.sort_by(f64::total_cmp);
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() < 1e-9, "{fast:?} vs {slow:?}");
        }
    }
}
