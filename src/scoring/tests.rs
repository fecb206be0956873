//! Every kernel against the scalar oracle, and the MaxSim invariants of ALGORITHMS.md §1.1.

use half::f16;

use super::{scalar, DocRef, Isa, PreparedQuery, Scored, TopK};
use crate::rng::Rng;

fn to_f16(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&x| f16::from_f32(x)).collect()
}

fn score(q: &[f32], d: &[f32], dim: usize, isa: Isa) -> f32 {
    PreparedQuery::with_isa(q, dim, None, isa).unwrap().maxsim(DocRef::F32(d))
}

#[test]
fn every_kernel_matches_the_oracle_f32_and_f16() {
    let mut rng = Rng::new(42);
    for isa in Isa::available() {
        for &dim in &[1usize, 3, 16, 100, 128] {
            for &lq in &[1usize, 5, 16, 17, 32, 33, 64] {
                let q = rng.unit_vectors(lq, dim);
                for _ in 0..4 {
                    let ld = 1 + rng.below(600) as usize;
                    let d = rng.unit_vectors(ld, dim);
                    let want = scalar::maxsim(&q, &d, dim);
                    let prepared = PreparedQuery::with_isa(&q, dim, None, isa).unwrap();
                    let got = prepared.maxsim(DocRef::F32(&d));
                    let tol = 1e-5 * lq as f32;
                    assert!(
                        (got - want).abs() <= tol,
                        "{isa:?} f32 dim={dim} lq={lq} ld={ld}: {got} vs {want}"
                    );
                    let h = to_f16(&d);
                    let want16 = scalar::maxsim(&q, &h.iter().map(|x| x.to_f32()).collect::<Vec<_>>(), dim);
                    let got16 = prepared.maxsim(DocRef::F16(&h));
                    assert!(
                        (got16 - want16).abs() <= tol,
                        "{isa:?} f16 dim={dim} lq={lq} ld={ld}: {got16} vs {want16}"
                    );
                }
            }
        }
    }
}

#[test]
fn pylate_doctest_vectors() {
    // PyLate `colbert_scores_pairwise` doctest: dimension 1.
    let queries = [[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]];
    let docs = [[10.0, 0.0, 1.0], [0.0, 100.0, 1.0], [1.0, 0.0, 1000.0]];
    for isa in Isa::available() {
        let got: Vec<f32> = queries.iter().zip(&docs).map(|(q, d)| score(q, d, 1, isa)).collect();
        assert_eq!(got, vec![10.0, 200.0, 3000.0], "{isa:?}");
    }
}

#[test]
fn masking_example_distinguishes_the_rules() {
    // Q=[[1]], D=[[-0.5],[pad]]: canonical −0.5; zero-fill or CB CPU would give 0.
    let s = scalar::maxsim_masked(&[1.0], None, &[-0.5, 7.0], Some(&[true, false]), 1);
    assert_eq!(s, -0.5);
    for isa in Isa::available() {
        assert_eq!(score(&[1.0], &[-0.5], 1, isa), -0.5);
    }
    // Masked query tokens leave the sum; no valid query token scores 0.
    let q = PreparedQuery::new(&[1.0, 5.0], 1, Some(&[true, false])).unwrap();
    assert_eq!(q.maxsim(DocRef::F32(&[-0.5])), -0.5);
    let none = PreparedQuery::new(&[1.0, 5.0], 1, Some(&[false, false])).unwrap();
    assert!(none.is_empty());
    assert_eq!(none.maxsim(DocRef::F32(&[-0.5])), 0.0);
}

#[test]
fn invariants_permutation_duplication_monotonicity_bounds() {
    let mut rng = Rng::new(7);
    let dim = 32;
    for isa in Isa::available() {
        for _ in 0..20 {
            let (lq, ld) = (1 + rng.below(40) as usize, 1 + rng.below(80) as usize);
            let q = rng.unit_vectors(lq, dim);
            let d = rng.unit_vectors(ld, dim);
            let base = score(&q, &d, dim, isa);
            let tol = 1e-5 * lq as f32;
            // Permuting document rows (reverse) and query rows (rotate) changes nothing.
            let rev: Vec<f32> = d.chunks_exact(dim).rev().flatten().copied().collect();
            assert!((score(&q, &rev, dim, isa) - base).abs() <= tol);
            let mut rot = q.clone();
            rot.rotate_left(dim);
            assert!((score(&rot, &d, dim, isa) - base).abs() <= tol);
            // Duplicating a document token changes nothing.
            let mut dup = d.clone();
            dup.extend_from_slice(&d[..dim]);
            assert!((score(&q, &dup, dim, isa) - base).abs() <= tol);
            // Adding a token never lowers the score.
            let mut more = d.clone();
            more.extend(rng.unit_vectors(1, dim));
            assert!(score(&q, &more, dim, isa) >= base - tol);
            // Bounds for unit vectors, and score(Q, Q) = Lq.
            assert!(base.abs() <= lq as f32 + tol);
            assert!((score(&q, &q, dim, isa) - lq as f32).abs() <= 1e-4 * lq as f32);
        }
    }
}

#[test]
fn prepared_query_rejects_bad_input() {
    assert!(PreparedQuery::new(&[1.0, 2.0, 3.0], 2, None).is_err());
    assert!(PreparedQuery::new(&[1.0, f32::NAN], 2, None).is_err());
    assert!(PreparedQuery::new(&[1.0, 2.0], 2, Some(&[true, true])).is_err());
    assert!(PreparedQuery::new(&[], 0, None).is_err());
}

#[test]
fn topk_keeps_the_best_with_stable_ties() {
    let mut a = TopK::new(3);
    let mut b = TopK::new(3);
    for (i, s) in [0.5f32, 0.9, 0.1, 0.9, 0.7].iter().enumerate() {
        let target = if i % 2 == 0 { &mut a } else { &mut b };
        target.push(Scored { score: *s, row: i as u64 });
    }
    let got: Vec<(f32, u64)> = a.merge(b).into_sorted().iter().map(|s| (s.score, s.row)).collect();
    assert_eq!(got, vec![(0.9, 1), (0.9, 3), (0.7, 4)]);
}

#[test]
fn dot_matches_scalar_for_both_storage_types() {
    let mut rng = Rng::new(9);
    let q = rng.unit_vectors(1, 384);
    let v = rng.unit_vectors(1, 384);
    let want = scalar::dot(&q, &v);
    assert!((super::dot(&q, DocRef::F32(&v)) - want).abs() < 1e-5);
    let h = to_f16(&v);
    let want16 = scalar::dot(&q, &h.iter().map(|x| x.to_f32()).collect::<Vec<_>>());
    assert!((super::dot(&q, DocRef::F16(&h)) - want16).abs() < 1e-5);
}
