//! HNSW graphs over pooled vectors: built with `hnsw_rs`, stored as a segment section, and
//! searched straight from the memory map.
//!
//! `hnsw_rs` builds the graph (its insertion and neighbour selection are well tested); its
//! own dump format is not used: it needs `max_layer == 16`, writes two loose files that a
//! crash can leave half-written, and reloads the vectors into RAM (~4–5 KB per vector).
//! Instead the layers are extracted into one flat array of u32 that lives in the segment
//! file, checksummed and published with it, and searched here with the standard HNSW
//! procedure (greedy descent through the upper layers, a beam of `ef` at layer 0) reading
//! the vectors from the segment's pooled section. Nothing is loaded at open.
//!
//! Distance: `1 − dot` clamped at 0 (hnsw_rs' `DistDot` asserts on the tiny negative values
//! that rounding produces for unit vectors).
//!
//! Graph layout (little-endian u32 words):
//! ```text
//! 0 magic 0x4D534857 ("MSHW")   1 index id   2 n (nodes)   3 levels (L + 1)   4 entry node
//! per level l = 0..L:
//!   count_l, then (l > 0 only) count_l node ids ascending,
//!   count_l + 1 offsets (relative to this level's neighbour block), then the neighbour ids
//! ```

use std::collections::BinaryHeap;

use hnsw_rs::anndists::dist::distances::Distance;
use hnsw_rs::hnsw::Hnsw;

const MAGIC: u32 = 0x4D53_4857;

/// Graph construction and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HnswParams {
    /// Neighbours per node in the upper layers (layer 0 keeps twice as many). Default 16.
    pub m: usize,
    /// Beam width while building. Default 200.
    pub ef_construction: usize,
    /// Default beam width while searching (at least `k`). Default 128.
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self { m: 16, ef_construction: 200, ef_search: 128 }
    }
}

/// `1 − a·b`, clamped at 0.
struct ClampedDot;

impl Distance<f32> for ClampedDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        let d = crate::scoring::dot(a, crate::scoring::DocRef::F32(b));
        (1.0 - d).max(0.0)
    }
}

/// Build the graph over `n` vectors (`vector(i)`, unit length) and encode it as u32 words.
#[must_use]
#[expect(clippy::needless_range_loop, reason = "levels index every node's list of lists")]
pub fn build(n: usize, vector: impl Fn(usize) -> Vec<f32>, params: HnswParams, index_id: u32) -> Vec<u32> {
    if n == 0 {
        return vec![MAGIC, index_id, 0, 0, 0];
    }
    let data: Vec<Vec<f32>> = (0..n).map(vector).collect();
    let hnsw: Hnsw<'_, f32, ClampedDot> =
        Hnsw::new(params.m.clamp(2, 255), n, 16, params.ef_construction, ClampedDot);
    let refs: Vec<(&Vec<f32>, usize)> = data.iter().zip(0..n).collect();
    hnsw.parallel_insert(&refs);
    // Per node: its top level and its neighbour lists by level.
    let mut level = vec![0usize; n];
    let mut lists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    for p in hnsw.get_point_indexation() {
        let id = p.get_origin_id();
        let l = p.get_point_id().0 as usize;
        level[id] = l;
        lists[id] = p
            .get_neighborhood_id()
            .into_iter()
            .take(l + 1)
            .map(|nb| nb.into_iter().map(|x| x.d_id as u32).collect())
            .collect();
        lists[id].resize(l + 1, Vec::new());
    }
    let top = level.iter().copied().max().unwrap_or(0);
    let entry = (0..n).find(|&i| level[i] == top).unwrap_or(0);
    let mut out = vec![MAGIC, index_id, n as u32, (top + 1) as u32, entry as u32];
    for l in 0..=top {
        let nodes: Vec<usize> = (0..n).filter(|&i| level[i] >= l).collect();
        out.push(nodes.len() as u32);
        if l > 0 {
            out.extend(nodes.iter().map(|&i| i as u32));
        }
        let mut acc = 0u32;
        out.push(0);
        for &i in &nodes {
            acc += lists[i][l].len() as u32;
            out.push(acc);
        }
        for &i in &nodes {
            out.extend_from_slice(&lists[i][l]);
        }
    }
    out
}

/// One level of a stored graph.
#[derive(Debug, Clone, Copy)]
struct Level<'a> {
    /// Node ids (`None` at level 0, where every node is present in order).
    nodes: Option<&'a [u32]>,
    offsets: &'a [u32],
    neighbours: &'a [u32],
}

impl Level<'_> {
    fn of(&self, node: u32) -> &[u32] {
        let pos = match self.nodes {
            None => Some(node as usize),
            Some(ns) => ns.binary_search(&node).ok(),
        };
        pos.map_or(&[], |p| &self.neighbours[self.offsets[p] as usize..self.offsets[p + 1] as usize])
    }
}

/// A stored graph, borrowed from a segment.
#[derive(Debug, Clone)]
pub struct GraphView<'a> {
    index_id: u32,
    n: usize,
    entry: u32,
    levels: Vec<Level<'a>>,
}

/// A node and its distance, ordered by distance (ties by id) for the heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cand(f32, u32);
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

impl<'a> GraphView<'a> {
    /// Parse `words`; with `validate`, also check every offset and id (O(edges): done once
    /// per segment, cached by the reader; a search on unvalidated damaged words may panic
    /// on an out-of-range index but never reads out of bounds).
    ///
    /// # Errors
    /// A description of the first inconsistency.
    pub fn parse(words: &'a [u32], validate: bool) -> Result<Self, String> {
        let bad = |w: &str| Err(format!("HNSW graph: {w}"));
        if words.len() < 5 || words[0] != MAGIC {
            return bad("bad magic or length");
        }
        let (index_id, n, nlev, entry) = (words[1], words[2] as usize, words[3] as usize, words[4]);
        let mut at = 5;
        let mut levels = Vec::with_capacity(nlev);
        let take = |at: &mut usize, len: usize| -> Option<&'a [u32]> {
            let s = words.get(*at..*at + len)?;
            *at += len;
            Some(s)
        };
        for l in 0..nlev {
            let Some(&count) = words.get(at) else { return bad("truncated") };
            at += 1;
            let count = count as usize;
            if count > n || (l == 0 && count != n) {
                return bad("level size out of range");
            }
            let nodes = if l > 0 {
                let Some(ns) = take(&mut at, count) else { return bad("truncated") };
                if validate && (ns.windows(2).any(|w| w[0] >= w[1]) || ns.iter().any(|&x| x as usize >= n)) {
                    return bad("level nodes not ascending or out of range");
                }
                Some(ns)
            } else {
                None
            };
            let Some(offsets) = take(&mut at, count + 1) else { return bad("truncated") };
            if offsets[0] != 0 || (validate && offsets.windows(2).any(|w| w[0] > w[1])) {
                return bad("offsets not increasing");
            }
            let Some(neighbours) = take(&mut at, offsets[count] as usize) else { return bad("truncated") };
            if validate && neighbours.iter().any(|&x| x as usize >= n) {
                return bad("neighbour out of range");
            }
            levels.push(Level { nodes, offsets, neighbours });
        }
        if at != words.len() || (n > 0 && (entry as usize >= n || nlev == 0)) {
            return bad("trailing words or bad entry point");
        }
        Ok(Self { index_id, n, entry, levels })
    }

    /// The index id the graph was built for.
    #[must_use]
    pub fn index_id(&self) -> u32 {
        self.index_id
    }

    /// Nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when the graph has no nodes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The (up to) `k` nearest allowed nodes to `q` by `1 − dot`, as `(dot, node)` best
    /// first, with a beam of `max(ef, k)`; `dot(q, i)` reads vector `i`. Disallowed nodes
    /// (deleted, filtered out) are walked through but never returned. Also returns the
    /// number of distance evaluations.
    pub fn search(
        &self,
        k: usize,
        ef: usize,
        allowed: Option<&[bool]>,
        dot: impl Fn(u32) -> f32,
    ) -> (Vec<(f32, u32)>, usize) {
        if self.n == 0 || k == 0 {
            return (Vec::new(), 0);
        }
        let dist = |i: u32| (1.0 - dot(i)).max(0.0);
        let mut evals = 1;
        let mut cur = Cand(dist(self.entry), self.entry);
        for level in self.levels.iter().skip(1).rev() {
            loop {
                let mut moved = false;
                for &nb in level.of(cur.1) {
                    evals += 1;
                    let c = Cand(dist(nb), nb);
                    if c < cur {
                        cur = c;
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        let ef = ef.max(k);
        let ok = |i: u32| allowed.is_none_or(|a| a[i as usize]);
        let mut visited = vec![false; self.n];
        visited[cur.1 as usize] = true;
        // `frontier`: min-heap of nodes to expand; `best`: max-heap of the ef closest allowed.
        let mut frontier = BinaryHeap::new();
        frontier.push(std::cmp::Reverse(cur));
        let mut best: BinaryHeap<Cand> = BinaryHeap::new();
        if ok(cur.1) {
            best.push(cur);
        }
        let base = &self.levels[0];
        while let Some(std::cmp::Reverse(c)) = frontier.pop() {
            if best.len() >= ef && best.peek().is_some_and(|w| c.0 > w.0) {
                break;
            }
            for &nb in base.of(c.1) {
                if std::mem::replace(&mut visited[nb as usize], true) {
                    continue;
                }
                evals += 1;
                let d = Cand(dist(nb), nb);
                if best.len() < ef || best.peek().is_some_and(|w| d < *w) {
                    frontier.push(std::cmp::Reverse(d));
                    if ok(nb) {
                        best.push(d);
                        if best.len() > ef {
                            best.pop();
                        }
                    }
                }
            }
        }
        let mut out: Vec<(f32, u32)> = best.into_sorted_vec().into_iter().map(|c| (1.0 - c.0, c.1)).collect();
        out.truncate(k);
        (out, evals)
    }
}

/// Section tag of the graph (a side file's only section; in v2 segments the `index` field
/// held the pooled vector number and word 1 the index id).
pub const GRAPH_TAG: u32 = 9;

/// Build the graph over `n` vectors and write it as section [`GRAPH_TAG`].
///
/// # Errors
/// The sink's errors.
pub fn write_sections(
    n: usize,
    vector: impl Fn(usize) -> Vec<f32>,
    params: HnswParams,
    index_id: u32,
    sink: &mut dyn super::SectionSink,
) -> crate::Result<()> {
    let words = build(n, vector, params, index_id);
    sink.begin(GRAPH_TAG)?;
    super::put_le(sink, &words, u32::to_le_bytes)
}

/// The graph in `s` built for index `index_id` over `n` nodes: `Ok(None)` when the sections
/// hold a graph of another index (a v2 segment written under an earlier index). With
/// `validate`, checksum and structure are checked (cache that it was done).
///
/// # Errors
/// A description of the damage.
pub fn open_graph<'a>(
    s: &'a dyn super::Sections,
    index_id: u32,
    n: usize,
    validate: bool,
) -> Result<Option<GraphView<'a>>, String> {
    let words = super::required(GRAPH_TAG, s.u32s(GRAPH_TAG, validate)?)?;
    if words.get(1) != Some(&index_id) {
        return Ok(None);
    }
    let g = GraphView::parse(words, validate)?;
    if g.len() != n {
        return Err(format!("HNSW graph has {} nodes for {n} documents", g.len()));
    }
    Ok(Some(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn stored_graph_finds_the_true_neighbours() {
        let (n, d) = (3000, 24);
        let mut rng = Rng::new(4);
        let v = rng.unit_vectors(n, d);
        let row = |i: usize| v[i * d..(i + 1) * d].to_vec();
        let words = build(n, row, HnswParams::default(), 7);
        let g = GraphView::parse(&words, true).unwrap();
        assert_eq!((g.len(), g.index_id()), (n, 7));
        let (mut hit, mut evals) = (0, 0);
        for _ in 0..50 {
            let q = rng.unit_vectors(1, d);
            let (got, e) = g.search(10, 64, None, |i| dot(&q, &row(i as usize)));
            evals += e;
            let mut all: Vec<(f32, usize)> = (0..n).map(|i| (dot(&q, &row(i)), i)).collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            let want: Vec<u32> = all[..10].iter().map(|x| x.1 as u32).collect();
            hit += got.iter().filter(|x| want.contains(&x.1)).count();
            assert!(got.windows(2).all(|w| w[0].0 >= w[1].0), "best first");
        }
        assert!(hit >= 50 * 10 * 95 / 100, "recall@10 {hit}/500");
        assert!(evals < 50 * n / 2, "a graph search, not a scan: {evals} evaluations");
        // A filter: only allowed nodes come back, and they are the best allowed ones.
        let allowed: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let q = rng.unit_vectors(1, d);
        let (got, _) = g.search(5, 200, Some(&allowed), |i| dot(&q, &row(i as usize)));
        assert!(got.iter().all(|x| x.1 % 3 == 0));
        let best =
            (0..n).filter(|i| i % 3 == 0).map(|i| (dot(&q, &row(i)), i)).max_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(got[0].1 as usize, best.unwrap().1);
    }

    #[test]
    fn damaged_graphs_are_rejected() {
        let mut rng = Rng::new(5);
        let v = rng.unit_vectors(200, 8);
        let words = build(200, |i| v[i * 8..(i + 1) * 8].to_vec(), HnswParams::default(), 1);
        assert!(GraphView::parse(&words, true).is_ok());
        assert!(GraphView::parse(&words[..words.len() - 1], true).is_err(), "truncated");
        let mut bad = words.clone();
        let last = bad.len() - 1;
        bad[last] = 10_000;
        assert!(GraphView::parse(&bad, true).is_err(), "neighbour out of range");
        let empty = build(0, |_| Vec::new(), HnswParams::default(), 1);
        let g = GraphView::parse(&empty, true).unwrap();
        assert!(g.is_empty() && g.search(3, 10, None, |_| 0.0).0.is_empty());
    }
}
