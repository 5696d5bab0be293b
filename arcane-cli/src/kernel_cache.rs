//! Persistent kernel caches for the GPU backends.
//!
//! CubeCL (under Burn's CUDA and wgpu backends) compiles every kernel for each new shape and
//! autotunes the matmuls, reductions and attention among ~25 candidates each: the first
//! training step of gpt2-124m spent over a minute on it. CubeCL can keep both results on disk
//! (autotune results by default, compiled kernels only when asked), so this module points both
//! caches at one folder that outlives the run: the second run of the same shapes starts in
//! seconds.
//!
//! The folder is `--kernel-cache DIR`, else `$ARCANE_KERNEL_CACHE`, else the user's cache
//! folder (`~/.cache/arcane/kernels` on Linux). A `cubecl.toml` (or the `[cubecl]` section of
//! a `burn.toml`) in the working directory or above it takes precedence: CubeCL's own
//! configuration is left alone then. CubeCL's environment variables (`CUBECL_DEBUG_LOG`,
//! `CUBECL_AUTOTUNE_LEVEL`, ...) still apply.

// A CPU-only build configures nothing; the helpers stay compiled (and tested) all the same.
#![cfg_attr(
    not(any(feature = "cuda", feature = "wgpu")),
    allow(dead_code, unused_imports)
)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Environment variable naming the kernel cache folder.
pub const ENV: &str = "ARCANE_KERNEL_CACHE";

/// Where the caches go: the flag, the environment, or the user's cache folder.
pub fn folder(flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(ENV).map(PathBuf::from))
        .or_else(|| default_folder())
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn default_folder() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("arcane").join("kernels"))
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn default_folder() -> Option<PathBuf> {
    None
}

/// A CubeCL configuration file that applies to the working directory, if any.
pub fn cubecl_config_file() -> Option<PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    loop {
        for name in ["cubecl.toml", "CubeCL.toml"] {
            if dir.join(name).is_file() {
                return Some(dir.join(name));
            }
        }
        for name in ["burn.toml", "Burn.toml"] {
            let path = dir.join(name);
            let has_section = std::fs::read_to_string(&path)
                .map(|text| text.lines().any(|l| l.trim() == "[cubecl]"))
                .unwrap_or(false);
            if has_section {
                return Some(path);
            }
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// Configures CubeCL's compilation and autotune caches before the first GPU device is used,
/// and tells the user what to expect from the first run. Call it once, before any GPU work.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn configure(flag: Option<&Path>) -> Result<()> {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

    if let Some(file) = cubecl_config_file() {
        eprintln!(
            "note: using CubeCL's configuration in {} (kernel caches as it sets them)",
            file.display()
        );
        return Ok(());
    }
    let Some(dir) = folder(flag) else {
        eprintln!("note: no cache folder is known; kernels are compiled again in every run");
        return Ok(());
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the kernel cache folder {}", dir.display()))?;
    let warm = std::fs::read_dir(&dir)
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    let mut config = CubeClRuntimeConfig::default();
    config.compilation.cache = Some(CacheConfig::File(dir.join("compiled")));
    config.autotune.cache = CacheConfig::File(dir.join("autotune"));
    CubeClRuntimeConfig::set(config.override_from_env());
    if warm {
        eprintln!(
            "note: GPU kernels cached in {}; shapes not seen before are compiled on first use",
            dir.display()
        );
    } else {
        eprintln!(
            "note: the first steps compile and autotune GPU kernels for each new shape (a minute or \
             more, once); they are cached in {} (--kernel-cache or ${ENV} to move it)",
            dir.display()
        );
    }
    Ok(())
}

/// Without a GPU backend there is nothing to configure.
#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
pub fn configure(_flag: Option<&Path>) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_environment() {
        let flag = Path::new("/tmp/kernels-flag");
        assert_eq!(folder(Some(flag)), Some(flag.to_path_buf()));
    }
}
