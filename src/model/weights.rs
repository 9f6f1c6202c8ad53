//! Reading and writing Hugging Face safetensors: one `model.safetensors` or a
//! sharded `model.safetensors.index.json`, in f32, bf16 or f16.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use safetensors::{Dtype, SafeTensors};

use super::ModelError;

/// All tensors of a checkpoint directory, read into memory, tracked as they are taken.
pub struct Weights {
    dir: PathBuf,
    /// File contents, one per shard.
    shards: Vec<Vec<u8>>,
    /// Tensor name → shard index.
    index: HashMap<String, usize>,
    taken: BTreeSet<String>,
}

impl Weights {
    /// Opens `model.safetensors`, or every shard named by `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Weights, ModelError> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index_path.is_file() {
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
            let index: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ModelError::format(&index_path, e.to_string()))?;
            let map = index
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| ModelError::format(&index_path, "no `weight_map` object".into()))?;
            let names: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else {
            return Err(ModelError::Missing {
                what: format!(
                    "model.safetensors or model.safetensors.index.json in {}",
                    dir.display()
                ),
            });
        };
        let mut shards = Vec::new();
        let mut index = HashMap::new();
        for file in &files {
            let bytes = std::fs::read(file).map_err(|e| ModelError::io(file, e))?;
            let names = SafeTensors::deserialize(&bytes)
                .map_err(|e| ModelError::format(file, e.to_string()))?
                .names()
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>();
            for name in names {
                index.insert(name, shards.len());
            }
            shards.push(bytes);
        }
        Ok(Weights {
            dir: dir.to_path_buf(),
            shards,
            index,
            taken: BTreeSet::new(),
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Reads `name` as f32 values, checking its shape.
    pub fn take_data(&mut self, name: &str, shape: &[usize]) -> Result<TensorData, ModelError> {
        let shard = *self.index.get(name).ok_or_else(|| ModelError::Missing {
            what: format!("tensor `{name}` in {}", self.dir.display()),
        })?;
        let tensors = SafeTensors::deserialize(&self.shards[shard])
            .map_err(|e| ModelError::format(&self.dir, e.to_string()))?;
        let view = tensors
            .tensor(name)
            .map_err(|e| ModelError::format(&self.dir, e.to_string()))?;
        if view.shape() != shape {
            return Err(ModelError::Shape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let bytes = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::format(
                    &self.dir,
                    format!("tensor `{name}` has dtype {other:?}; expected f32, bf16 or f16"),
                ));
            }
        };
        self.taken.insert(name.to_string());
        Ok(TensorData::new(values, shape.to_vec()))
    }

    pub fn take<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ModelError> {
        Ok(Tensor::from_data(self.take_data(name, &shape)?, device))
    }

    /// Names in the files that nothing took, except those `ignore` accepts.
    pub fn untaken(&self, ignore: impl Fn(&str) -> bool) -> Vec<String> {
        let mut left: Vec<String> = self
            .index
            .keys()
            .filter(|n| !self.taken.contains(*n) && !ignore(n))
            .cloned()
            .collect();
        left.sort();
        left
    }
}

/// Tensors to write: name → (shape, f32 values).
pub type Export = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads a backend tensor out as f32 values for export.
pub fn export_tensor<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
) -> Result<(Vec<usize>, Vec<f32>), ModelError> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| ModelError::Tensor(format!("{e:?}")))?;
    Ok((shape, values))
}

/// Writes `tensors` as one safetensors file, in f32 or bf16.
pub fn write_safetensors(path: &Path, tensors: &Export, bf16: bool) -> Result<(), ModelError> {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, (shape, values))| {
            let bytes = if bf16 {
                values
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect()
            } else {
                values.iter().flat_map(|v| v.to_le_bytes()).collect()
            };
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let dtype = if bf16 { Dtype::BF16 } else { Dtype::F32 };
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = buffers
        .iter()
        .map(|(name, shape, bytes)| {
            safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| ModelError::Tensor(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let bytes =
        safetensors::serialize(views, metadata).map_err(|e| ModelError::Tensor(e.to_string()))?;
    crate::fs::write_atomic(path, &bytes).map_err(|e| ModelError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_bf16_and_f32_tensors_read_as_f32_and_shapes_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let values = [1.5f32, -2.25, 0.0, 3.0];
        let f16: Vec<u8> = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        let f32: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let views = vec![
            (
                "a".to_string(),
                safetensors::tensor::TensorView::new(Dtype::F16, vec![2, 2], &f16).unwrap(),
            ),
            (
                "b".to_string(),
                safetensors::tensor::TensorView::new(Dtype::BF16, vec![2, 2], &bf16).unwrap(),
            ),
            (
                "c".to_string(),
                safetensors::tensor::TensorView::new(Dtype::F32, vec![4], &f32).unwrap(),
            ),
        ];
        std::fs::write(
            dir.path().join("model.safetensors"),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
        let mut weights = Weights::open(dir.path()).unwrap();
        for (name, shape) in [("a", vec![2, 2]), ("b", vec![2, 2]), ("c", vec![4])] {
            let data = weights.take_data(name, &shape).unwrap();
            assert_eq!(data.to_vec::<f32>().unwrap(), values, "{name}");
        }
        assert!(matches!(
            weights.take_data("a", &[4]),
            Err(ModelError::Shape { .. })
        ));
        assert!(
            weights
                .take_data("missing", &[1])
                .unwrap_err()
                .to_string()
                .contains("`missing`")
        );
        assert!(weights.untaken(|_| false).is_empty());
    }
}
