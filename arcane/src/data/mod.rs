//! Token data: the shard format on disk, corpus preparation, and the seeded window sampler that
//! feeds training and validation.

mod manifest;
#[cfg(feature = "train")]
mod prepare;
mod sampler;
mod shard;

pub use manifest::{DataManifest, SourceFile, DATA_MANIFEST};
#[cfg(feature = "train")]
pub use prepare::{prepare, PrepareConfig, PrepareProgress};
pub use sampler::{Batch, DataPosition, TokenData, WindowSampler};
pub use shard::{
    read_shard_header, write_shard, Shard, SHARD_HEADER_BYTES, SHARD_MAGIC, SHARD_VERSION,
};
