//! The record format: `version byte ‖ bincode payload ‖ crc32 (big-endian)`.
//!
//! The crc covers the version byte and the payload. It is checked on every read; a
//! mismatch, a truncated value or a payload that does not decode is
//! [`Error::Corruption`] naming the key — never a panic and never wrong data.

use bincode::Options;
use serde::{Deserialize, Serialize};

use crate::model::error::{Error, Result};

use super::keys;

/// Version of the record encoding. Bump it when a stored type changes shape.
pub(crate) const RECORD_VERSION: u8 = 1;

const OVERHEAD: usize = 1 + 4;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

/// Encodes a record.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(RECORD_VERSION);
    // Serializing our own types into a Vec cannot fail: they have no maps with
    // non-string keys, no unsized sequences and the Vec grows as needed.
    if let Err(e) = options().serialize_into(&mut out, value) {
        unreachable!("bincode serialization into a Vec failed: {e}");
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// The bare bincode payload of a value (no version byte, no crc): deterministic bytes
/// for content digests.
pub(crate) fn canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // As in `encode`: serializing our own types into a Vec cannot fail.
    options().serialize(value).unwrap_or_default()
}

/// Appends the bare bincode payload of a value to `out` (as [`canonical`] would return it).
pub(crate) fn canonical_into<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // As in `encode`: serializing our own types into a Vec cannot fail.
    if let Err(e) = options().serialize_into(out, value) {
        unreachable!("bincode serialization into a Vec failed: {e}");
    }
}

/// Decodes a record stored under `key`, checking its crc and version. A type that
/// borrows (`&str`, `&[u8]` fields) borrows from `bytes` instead of copying.
pub(crate) fn decode<'a, T: Deserialize<'a>>(key: &[u8], bytes: &'a [u8]) -> Result<T> {
    decode_record(key, bytes, true)
}

/// Decodes a record stored under `key` like [`decode`], but without checking the crc of
/// the whole value: for a reader that checks a crc of its own over the part it uses (a
/// point read of one entry of a run). Damage elsewhere in the value either fails to
/// decode here or gives that part's bytes, whose own crc then fails.
pub(crate) fn decode_without_crc<'a, T: Deserialize<'a>>(key: &[u8], bytes: &'a [u8]) -> Result<T> {
    decode_record(key, bytes, false)
}

/// The corruption error naming the record under `key`.
pub(crate) fn corrupt(key: &[u8], reason: String) -> Error {
    Error::Corruption {
        key: keys::describe(key),
        reason,
    }
}

fn decode_record<'a, T: Deserialize<'a>>(key: &[u8], bytes: &'a [u8], check_crc: bool) -> Result<T> {
    if bytes.len() < OVERHEAD {
        return Err(corrupt(key, format!("value of {} bytes is truncated", bytes.len())));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if check_crc {
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let actual = crc32fast::hash(body);
        if stored != actual {
            return Err(corrupt(
                key,
                format!("crc32 mismatch (stored {stored:08x}, computed {actual:08x})"),
            ));
        }
    }
    if body[0] != RECORD_VERSION {
        return Err(corrupt(key, format!("unknown record version {}", body[0])));
    }
    deserialize(&body[1..]).map_err(|e| corrupt(key, format!("undecodable record: {e}")))
}

/// A bare payload, bounded by its own length (so a crafted length cannot allocate).
fn deserialize<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> bincode::Result<T> {
    options().with_limit(payload.len() as u64).deserialize(payload)
}

/// Bytes that (de)serialize as one byte string rather than a sequence of `u8`s: bincode
/// writes both the same way (a length, then the bytes), so a stored `Vec<u8>` reads back
/// as `Bytes`, but decoding a byte string is one copy instead of a visit per byte (the
/// index checkpoint is megabytes of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bytes(pub Vec<u8>);

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Bytes, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// Decodes a bare payload (as [`canonical`] writes it) found inside the record under
/// `key`, whose crc the caller has checked.
pub(crate) fn decode_payload<'a, T: Deserialize<'a>>(key: &[u8], payload: &'a [u8]) -> Result<T> {
    deserialize(payload).map_err(|e| corrupt(key, format!("undecodable entry: {e}")))
}

/// The length prefix of a sequence's bare payload (as [`canonical`] writes a `Vec`),
/// without decoding its elements; `None` if the bytes do not start with one.
pub(crate) fn sequence_len(payload: &[u8]) -> Option<u64> {
    options().allow_trailing_bytes().deserialize(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_encode_like_a_vec_of_u8_and_decode_from_one() {
        let v: Vec<u8> = (0..=255).collect();
        assert_eq!(encode(&Bytes(v.clone())), encode(&v));
        let back: Bytes = decode(b"\x0bk", &encode(&v)).unwrap();
        assert_eq!(back.0, v);
    }

    #[test]
    fn round_trips_and_detects_every_single_byte_flip() {
        let value = (42u32, "héllo".to_string(), vec![1.5f32, 2.5]);
        let bytes = encode(&value);
        let back: (u32, String, Vec<f32>) = decode(b"\x03k", &bytes).unwrap();
        assert_eq!(back, value);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                let r: Result<(u32, String, Vec<f32>)> = decode(b"\x03k", &damaged);
                assert!(
                    matches!(r, Err(Error::Corruption { .. })),
                    "flip at byte {i} bit {bit} not detected"
                );
            }
        }
    }

    #[test]
    fn truncation_is_a_corruption_error_naming_the_key() {
        let bytes = encode(&"some text".to_string());
        for len in 0..bytes.len() {
            let r: Result<String> = decode(&keys::asset(crate::model::asset::AssetId(7)), &bytes[..len]);
            match r {
                Err(Error::Corruption { key, .. }) => assert_eq!(key, "asset/7"),
                other => panic!("truncated to {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate_or_panic() {
        // A vector claiming u64::MAX elements, with a valid crc.
        let mut body = vec![RECORD_VERSION, 0xff];
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        let r: Result<Vec<u64>> = decode(b"\x05x", &body);
        assert!(matches!(r, Err(Error::Corruption { .. })));
    }
}
