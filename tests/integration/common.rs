use maxsimdb::testing::Rng;
use maxsimdb::{CollectionSpec, ColumnType, Database, Document, Dtype, IdType, VectorSpec};

pub const DIM: usize = 16;

pub fn tempdb() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("t.msdb")).unwrap();
    (dir, db)
}

pub fn spec(name: &str, dtype: Dtype) -> CollectionSpec {
    CollectionSpec::new(name, VectorSpec::new(DIM).pooled("mean", DIM).dtype(dtype))
        .id_type(IdType::Text)
        .column("year", ColumnType::Integer)
        .column("title", ColumnType::Text)
        .column("rating", ColumnType::Real)
        .column("meta", ColumnType::Json)
}

/// A random document with `n` unit token vectors and a mean pooled vector.
pub fn doc(rng: &mut Rng, id: &str, n: usize, year: i64) -> Document {
    let tokens = rng.unit_vectors(n, DIM);
    let mut mean = vec![0f32; DIM];
    for r in tokens.chunks_exact(DIM) {
        mean.iter_mut().zip(r).for_each(|(m, x)| *m += x);
    }
    maxsimdb::testing::normalize(&mut mean);
    Document::new(id)
        .tokens(tokens)
        .pooled("mean", mean)
        .set("year", year)
        .set("title", format!("title {id}"))
}
