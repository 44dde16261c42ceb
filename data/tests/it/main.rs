//! Integration tests of segtune-data: the generator's determinism, layout
//! and frozen defaults.

mod common;
mod frozen;
mod generator;
mod schema_doc;
