//! Writes the BPE vocabularies of the token counter (`src/util/tokens.rs`) as compact files in
//! `OUT_DIR`, which the binary embeds: each token's bytes in rank order, behind a two-byte
//! length. Building the counter from them takes milliseconds; building it from tiktoken's
//! base64 vocabulary took ~350 ms of CPU in every new process, and a first reply waited for it.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let vocabularies = [
        ("o200k_base", tiktoken_rs::o200k_base()),
        ("cl100k_base", tiktoken_rs::cl100k_base()),
    ];
    for (name, vocabulary) in vocabularies {
        let vocabulary = vocabulary.unwrap_or_else(|e| panic!("loading {name}: {e}"));
        let mut bytes = Vec::with_capacity(2_500_000);
        // Ordinary tokens have ranks 0, 1, 2… up to the first gap, where special tokens start.
        let mut rank = 0u32;
        while let Ok(token) = vocabulary.decode_bytes(&[rank]) {
            let len = u16::try_from(token.len()).expect("a token shorter than 64 KiB");
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&token);
            rank += 1;
        }
        let path = out.join(format!("{name}.tokens"));
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}
