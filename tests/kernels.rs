//! wmx's own CUDA kernels (src/ops/, src/train/adamw.rs) compile with NVRTC exactly as wmx
//! compiles them on a GPU machine, checked here without a GPU by
//! `scripts/check_kernels.py` (NVRTC from PyPI: `pip install nvidia-cuda-nvrtc`).

use std::process::Command;

#[test]
fn every_cuda_kernel_compiles_with_nvrtc() {
    let out = Command::new("python3")
        .arg("scripts/check_kernels.py")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    // "N of M kernels compile": all of them, and every fused operation's kernels
    // (AdamW, RMSNorm's four, rotary, softmax's two, silu·up's two) were found.
    let last = text.lines().rfind(|l| l.ends_with("kernels compile")).expect("a summary line");
    let counts: Vec<usize> = last.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(counts.len(), 2, "{last}");
    assert_eq!(counts[0], counts[1], "{text}");
    assert!(counts[1] >= 10, "{text}");
}

/// `scripts/kernel_profile.py` (bench/profile.sh's tables) reads Nsight Compute's
/// CSV rows, converts their units and sums each kernel family: cuBLAS's `nvjet`
/// products count as matrix products, and the step's wall time gives the GPU's
/// busy share.
#[test]
fn kernel_profile_tables_gpu_time_by_family() {
    let dir = std::env::temp_dir().join(format!("wmx-kernel-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ncu = dir.join("ncu.log");
    let row = |id: usize, name: &str, unit: &str, value: &str| {
        format!("\"{id}\",\"1\",\"wmx\",\"127.0.0.1\",\"{name}\",\"1\",\"7\",\"(1, 1, 1)\",\"(256, 1, 1)\",\"Command line profiler metrics\",\"gpu__time_duration.sum\",\"{unit}\",\"{value}\"\n")
    };
    let mut text = String::from("==PROF== Connected to process\n\"ID\",\"Process ID\",\"Process Name\",\"Host Name\",\"Kernel Name\",\"Context\",\"Stream\",\"Grid Size\",\"Block Size\",\"Section Name\",\"Metric Name\",\"Metric Unit\",\"Metric Value\"\n");
    text += &row(0, "nvjet_tst_192x192_64x4_2x1_v_bz_coopA_TNT", "usecond", "1,500");
    text += &row(1, "nvjet_tst_192x192_64x4_2x1_v_bz_coopA_TNT", "nsecond", "500000");
    text += &row(2, "rms_norm_forward", "usecond", "250");
    text += &row(3, "fused_elemwise_3", "usecond", "250");
    std::fs::write(&ncu, text).unwrap();
    let step = dir.join("step.json");
    std::fs::write(&step, "{\"median_s\": 0.005}\n").unwrap();
    let out = Command::new("python3")
        .arg("scripts/kernel_profile.py")
        .args([&ncu, &step])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("4 kernels, 2.5 ms of GPU time; one repetition takes 5.0 ms"), "{text}");
    assert!(text.contains("the GPU is busy 50% of it"), "{text}");
    for line in ["| matmul | 2 | 2.00 | 80.0% |", "| reduce | 1 | 0.25 | 10.0% |", "| fused element-wise | 1 | 0.25 | 10.0% |"] {
        assert!(text.contains(line), "{line} in {text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
