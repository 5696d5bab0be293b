//! Named tensors: moving a module's parameters to and from safetensors files by name.
//!
//! A parameter's name is its path in the module tree (`blocks.0.attn.q.weight`), as Burn's
//! derive reports it. Arcane checkpoints store these names directly; Hugging Face import and
//! export translate them through the one key table in [`crate::pretrained`].

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{ArcaneError, Result};

/// A host-side f32 tensor: shape and row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

impl HostTensor {
    /// The transpose of a 2-D tensor (Hugging Face `nn.Linear` stores `[out, in]`, Burn `[in, out]`).
    pub fn transpose(&self) -> Self {
        assert_eq!(self.shape.len(), 2, "transpose needs a matrix");
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let mut values = vec![0.0; self.values.len()];
        for r in 0..rows {
            for c in 0..cols {
                values[c * rows + r] = self.values[r * cols + c];
            }
        }
        Self {
            shape: vec![cols, rows],
            values,
        }
    }

    /// Splits the last dimension into `n` equal parts (GPT-2's fused `c_attn` into q, k, v).
    pub fn split_last(&self, n: usize) -> Vec<Self> {
        let last = *self
            .shape
            .last()
            .expect("split needs at least one dimension");
        let rows = self.values.len() / last;
        let width = last / n;
        (0..n)
            .map(|part| {
                let mut values = Vec::with_capacity(rows * width);
                for r in 0..rows {
                    let begin = r * last + part * width;
                    values.extend_from_slice(&self.values[begin..begin + width]);
                }
                let mut shape = self.shape.clone();
                *shape.last_mut().unwrap() = width;
                Self { shape, values }
            })
            .collect()
    }

    /// Concatenates tensors along their last dimension (the inverse of [`Self::split_last`]).
    pub fn concat_last(parts: &[Self]) -> Self {
        let last: usize = parts.iter().map(|p| *p.shape.last().unwrap()).sum();
        let rows = parts[0].values.len() / parts[0].shape.last().unwrap();
        let mut values = Vec::with_capacity(rows * last);
        for r in 0..rows {
            for p in parts {
                let w = *p.shape.last().unwrap();
                values.extend_from_slice(&p.values[r * w..(r + 1) * w]);
            }
        }
        let mut shape = parts[0].shape.clone();
        *shape.last_mut().unwrap() = last;
        Self { shape, values }
    }
}

/// Tensors by name, in name order (so files are written deterministically).
pub type NamedTensors = BTreeMap<String, HostTensor>;

/// Reads every tensor of one or more safetensors files, converting f16, bf16 and f64 to f32.
/// Files are memory-mapped, so only the f32 copy is held in memory.
pub fn read_safetensors(files: &[PathBuf]) -> Result<NamedTensors> {
    let mut out = NamedTensors::new();
    for path in files {
        let file = File::open(path).map_err(|e| ArcaneError::io(path, e))?;
        // SAFETY: the map is read-only and dropped before this function returns; a concurrent
        // writer could only corrupt the values read, which the format checks below would not
        // catch, but Arcane never writes a file it is reading.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ArcaneError::io(path, e))?;
        let tensors = SafeTensors::deserialize(&mmap).map_err(|e| {
            ArcaneError::format(
                path,
                format!("not a valid safetensors file ({e}); is the download complete?"),
            )
        })?;
        for (name, view) in tensors.iter() {
            let values = to_f32(&view).ok_or_else(|| ArcaneError::Tensor {
                path: path.clone(),
                tensor: name.to_string(),
                message: format!(
                    "dtype {:?} is not a floating-point type; expected F32, F16, BF16 or F64",
                    view.dtype()
                ),
            })?;
            let tensor = HostTensor {
                shape: view.shape().to_vec(),
                values,
            };
            out.insert(name.to_string(), tensor);
        }
    }
    Ok(out)
}

/// The `__metadata__` strings of a safetensors file.
pub fn read_safetensors_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let file = File::open(path).map_err(|e| ArcaneError::io(path, e))?;
    // SAFETY: as in `read_safetensors`.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ArcaneError::io(path, e))?;
    let (_, metadata) = SafeTensors::read_metadata(&mmap)
        .map_err(|e| ArcaneError::format(path, format!("not a valid safetensors file ({e})")))?;
    Ok(metadata.metadata().clone().unwrap_or_default())
}

/// Converts a floating-point tensor view to f32 values (`None` for non-float dtypes).
fn to_f32(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let bytes = view.data();
    let words = |n: usize| bytes.chunks_exact(n);
    Some(match view.dtype() {
        Dtype::F32 => words(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => words(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => words(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => words(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        _ => return None,
    })
}

/// Writes tensors as one f32 safetensors file, atomically: a temporary file in the same
/// directory is renamed over `path` only once it is complete, so a crash never leaves a
/// half-written file under the real name.
pub fn write_safetensors(
    path: &Path,
    tensors: &NamedTensors,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw = t.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), raw, t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, raw, shape)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), raw)
                .expect("shape and byte length agree by construction");
            (name.clone(), view)
        })
        .collect::<Vec<_>>();
    let serialized = safetensors::serialize(views, Some(metadata))
        .map_err(|e| ArcaneError::format(path, format!("cannot serialize tensors: {e}")))?;
    crate::io::write_atomic(path, &serialized)
}

/// Initialises every lazily initialised parameter of `module` now, in the module's order, and
/// returns it. Copies of a lazy module made before this (for other devices) would each draw
/// their own random weights on first use.
pub fn materialize<B: Backend, M: Module<B>>(module: M) -> M {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
    module
}

/// The id of every float parameter of `module`, keyed by its path (optimizer state is keyed
/// by these ids).
pub fn param_ids<B: Backend, M: Module<B>>(module: &M) -> BTreeMap<String, ParamId> {
    struct Ids {
        path: Vec<String>,
        out: BTreeMap<String, ParamId>,
    }
    impl<B: Backend> ModuleVisitor<B> for Ids {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out.insert(self.path.join("."), param.id);
        }
    }
    let mut ids = Ids {
        path: Vec::new(),
        out: BTreeMap::new(),
    };
    module.visit(&mut ids);
    ids.out
}

/// Copies every float parameter of `module` to the host, keyed by its path.
pub fn collect<B: Backend, M: Module<B>>(module: &M) -> NamedTensors {
    let mut collector = Collector {
        path: Vec::new(),
        out: NamedTensors::new(),
    };
    module.visit(&mut collector);
    collector.out
}

struct Collector {
    path: Vec<String>,
    out: NamedTensors,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let values = tensor
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("a float tensor converts to f32");
        self.out
            .insert(self.path.join("."), HostTensor { shape, values });
    }
}

/// Replaces every float parameter of `module` by the tensor of the same path in `tensors`.
///
/// Fails, naming the tensor, if one is missing or has another shape, or if `tensors` holds a
/// name that the module does not have. `source` names the file in error messages. Parameter ids
/// and gradient settings are kept, and lazily initialised parameters are never materialised.
pub fn apply<B: Backend, M: Module<B>>(
    module: M,
    tensors: NamedTensors,
    source: &Path,
) -> Result<M> {
    load_into(module, tensors, source, false, None)
}

/// Like [`apply`], but only for the parameters named in `tensors` (an adapter file): the
/// others keep their values. Every tensor must match a parameter of the same shape.
pub fn apply_subset<B: Backend, M: Module<B>>(
    module: M,
    tensors: NamedTensors,
    source: &Path,
) -> Result<M> {
    load_into(module, tensors, source, true, None)
}

/// [`apply_subset`] that also gives the loaded parameters the ids in `ids` (those of the
/// model that was saved), so that optimizer state keyed by them applies again.
pub fn apply_subset_with_ids<B: Backend, M: Module<B>>(
    module: M,
    tensors: NamedTensors,
    ids: &BTreeMap<String, ParamId>,
    source: &Path,
) -> Result<M> {
    load_into(module, tensors, source, true, Some(ids))
}

fn load_into<B: Backend, M: Module<B>>(
    module: M,
    tensors: NamedTensors,
    source: &Path,
    subset: bool,
    ids: Option<&BTreeMap<String, ParamId>>,
) -> Result<M> {
    let mut loader = Loader {
        path: Vec::new(),
        tensors,
        source: source.to_path_buf(),
        error: None,
        subset,
        ids: ids.cloned().unwrap_or_default(),
    };
    let module = module.map(&mut loader);
    if let Some(error) = loader.error {
        return Err(error);
    }
    if let Some(name) = loader.tensors.keys().next() {
        return Err(ArcaneError::Tensor {
            path: source.to_path_buf(),
            tensor: name.clone(),
            message: format!(
                "the model has no such parameter ({} unexpected tensors); the file was made for another architecture",
                loader.tensors.len()
            ),
        });
    }
    Ok(module)
}

struct Loader {
    path: Vec<String>,
    tensors: NamedTensors,
    source: PathBuf,
    error: Option<ArcaneError>,
    /// Leave parameters missing from `tensors` as they are.
    subset: bool,
    /// Ids to give the loaded parameters (others keep theirs).
    ids: BTreeMap<String, ParamId>,
}

impl<B: Backend> ModuleMapper<B> for Loader {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if self.error.is_some() {
            return param;
        }
        let name = self.path.join(".");
        let expected = param.lazy_shape().to_vec();
        let source = self.source.clone();
        let fail = |message: String| ArcaneError::Tensor {
            path: source.clone(),
            tensor: name.clone(),
            message,
        };
        match self.tensors.remove(&name) {
            None if self.subset => param,
            None => {
                self.error = Some(fail(format!(
                    "missing from the checkpoint (expected shape {expected:?})"
                )));
                param
            }
            Some(t) if t.shape != expected => {
                self.error = Some(fail(format!(
                    "has shape {:?}, the model expects {expected:?}; the checkpoint was made for another config",
                    t.shape
                )));
                param
            }
            Some(t) => {
                let device = param.lazy_device();
                let data = TensorData::new(t.values, t.shape);
                let id = self.ids.get(&name).copied().unwrap_or(param.id);
                param.transform_for_load(Tensor::from_data(data, &device), id)
            }
        }
    }
}
