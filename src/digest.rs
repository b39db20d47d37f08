//! SHA-256 digests in hex: the names of state files, cache entries and store keys, which say
//! nothing of what they were made from (never the token, nor a part of it). A leaf: it
//! imports nothing of the crate.

use sha2::{Digest, Sha256};

/// The SHA-256 of `parts` one after the other, in hex.
pub fn hex(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_are_hashed_in_order_as_one_input() {
        assert_eq!(
            hex(&[b"a", b"bc"]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&[b"abc"]), hex(&[b"ab", b"c"]));
    }
}
