//! Deterministic names and ids for what the demo creates (ReplicaSet hashes, pod suffixes,
//! uids, container ids, trace ids, small pseudo-random numbers): each is a hash of the inputs
//! that identify it, so the same writes at the same times give the same cluster.

use sha2::{Digest, Sha256};

/// The alphabet Kubernetes uses for generated suffixes and pod-template hashes (no vowels, no
/// look-alike characters), so the demo's names look like the fixtures'.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        hasher.update([0u8]);
    }
    hasher.finalize().into()
}

/// `len` characters (at most 32) of the Kubernetes name alphabet.
pub fn suffix(parts: &[&str], len: usize) -> String {
    digest(parts)
        .iter()
        .take(len)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// `len` lowercase hex digits (at most 64).
pub fn hex(parts: &[&str], len: usize) -> String {
    let mut out = String::with_capacity(64);
    for b in digest(parts) {
        out.push_str(&format!("{b:02x}"));
    }
    out.truncate(len);
    out
}

/// A version-4-shaped UUID.
pub fn uid(parts: &[&str]) -> String {
    let h = hex(parts, 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A number in `[0, 1)`.
pub fn unit(parts: &[&str]) -> f64 {
    let d = digest(parts);
    let n = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// An integer in `low..=high`.
pub fn between(parts: &[&str], low: u32, high: u32) -> u32 {
    let span = f64::from(high.saturating_sub(low) + 1);
    low + ((unit(parts) * span) as u32).min(high - low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_look_like_kubernetes_ones() {
        let a = suffix(&["payment-gateway", "template"], 10);
        assert_eq!(a, suffix(&["payment-gateway", "template"], 10));
        assert_ne!(a, suffix(&["payment-gateway", "templatf"], 10));
        assert_eq!(a.len(), 10);
        assert!(a.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(suffix(&["ab", "c"], 8), suffix(&["a", "bc"], 8));
        let id = uid(&["x"]);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        for i in 0..200 {
            let n = between(&["n", &i.to_string()], 3, 7);
            assert!((3..=7).contains(&n));
            let u = unit(&["u", &i.to_string()]);
            assert!((0.0..1.0).contains(&u));
        }
    }
}
