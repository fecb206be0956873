//! In-process embeddings with candle (feature `embed`): BERT-family and ModernBERT encoders, pooling
//! operators, ColBERT-style token embeddings and token pooling.

pub mod bert;
pub mod colbert;
mod fastmath;
mod fused;
pub mod model;
pub mod modernbert;
pub mod pooling;
pub mod token_pool;
pub mod trainable;

pub use model::{model_cache_dir, resolve_model, Encoded, Encoder};
pub use pooling::{GemTransform, HopfieldInit, Pooling};
