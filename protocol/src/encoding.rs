//! The canonical binary encoding of everything that is hashed or signed.
//!
//! Integers are little-endian and fixed width (`u8`, `u32`, `u64`); fixed-size values (hashes,
//! keys, signatures) are their raw bytes; variable-size values (byte strings, UTF-8 strings,
//! lists) are a `u32` length or count followed by their content. Every top-level object starts
//! with a version byte. There is exactly one encoding per value, so hashes are well defined;
//! decoding enforces that by rejecting unknown versions, lengths above each field's documented
//! bound, non-canonical values (checked by each type) and trailing bytes. Decoding never panics
//! and never allocates more than the input can justify.

use crate::{Error, Result};

/// The only encoding version this crate writes and reads.
pub const VERSION: u8 = 1;

/// Appends the canonical encoding of values to a buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one byte.
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.buf.push(value);
        self
    }

    /// Writes a little-endian `u32`.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.buf.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Writes a little-endian `u64`.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.buf.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Writes fixed-size bytes with no length prefix.
    pub fn fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Writes a `u32` length followed by the bytes.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.count(bytes.len());
        self.fixed(bytes)
    }

    /// Writes a UTF-8 string as bytes.
    pub fn str(&mut self, text: &str) -> &mut Self {
        self.bytes(text.as_bytes())
    }

    /// Writes a list count. Lists longer than `u32::MAX` cannot be built by this crate's
    /// validated constructors, so saturation never changes a valid encoding.
    pub fn count(&mut self, count: usize) -> &mut Self {
        self.u32(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// Writes a list: its count, then each item.
    pub fn list<T: Encode>(&mut self, items: &[T]) -> &mut Self {
        self.count(items.len());
        for item in items {
            item.encode_to(self);
        }
        self
    }

    /// Writes a value.
    pub fn value<T: Encode + ?Sized>(&mut self, value: &T) -> &mut Self {
        value.encode_to(self);
        self
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical encodings from a byte slice, with bounds on every length.
#[derive(Debug)]
pub struct Reader<'a> {
    input: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { input, position: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.input.len() - self.position
    }

    /// Takes `len` bytes.
    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8]> {
        if len > self.remaining() {
            return Err(Error::Truncated {
                what,
                needed: len,
                available: self.remaining(),
            });
        }
        let slice = &self.input[self.position..self.position + len];
        self.position += len;
        Ok(slice)
    }

    /// Reads fixed-size bytes.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a version byte and rejects any version but [`VERSION`].
    pub fn version(&mut self, what: &'static str) -> Result<()> {
        match self.u8(what)? {
            VERSION => Ok(()),
            found => Err(Error::UnknownVersion { what, found }),
        }
    }

    /// Reads a count and checks it against `max`. Each item needs at least one byte, so a count
    /// above the remaining input is rejected before anything is allocated.
    pub fn count(&mut self, max: usize, what: &'static str) -> Result<usize> {
        let count = self.u32(what)? as usize;
        if count > max {
            return Err(Error::TooLong {
                what,
                len: count,
                max,
            });
        }
        if count > self.remaining() {
            return Err(Error::Truncated {
                what,
                needed: count,
                available: self.remaining(),
            });
        }
        Ok(count)
    }

    /// Reads length-prefixed bytes of at most `max` bytes.
    pub fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8]> {
        let len = self.u32(what)? as usize;
        if len > max {
            return Err(Error::TooLong { what, len, max });
        }
        self.take(len, what)
    }

    /// Reads a length-prefixed UTF-8 string of at most `max` bytes.
    pub fn string(&mut self, max: usize, what: &'static str) -> Result<String> {
        let bytes = self.bytes(max, what)?;
        let text = core::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8 { what })?;
        Ok(text.to_owned())
    }

    /// Reads a list of at most `max` items.
    pub fn list<T: Decode>(&mut self, max: usize, what: &'static str) -> Result<Vec<T>> {
        let count = self.count(max, what)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(T::decode_from(self)?);
        }
        Ok(items)
    }

    /// Reads a boolean encoded as 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(Error::InvalidTag { what, tag }),
        }
    }

    /// Checks that the whole input was consumed.
    pub fn finish(self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(Error::TrailingBytes { extra }),
        }
    }
}

/// A value with a canonical encoding.
pub trait Encode {
    /// Appends the encoding to `writer`.
    fn encode_to(&self, writer: &mut Writer);

    /// The encoding as a new buffer.
    fn to_bytes(&self) -> Vec<u8> {
        let mut writer = Writer::new();
        self.encode_to(&mut writer);
        writer.finish()
    }
}

/// A value that can be decoded from its canonical encoding.
pub trait Decode: Sized {
    /// Reads one value.
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self>;

    /// Decodes a value that must span all of `bytes`.
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut reader = Reader::new(bytes);
        let value = Self::decode_from(&mut reader)?;
        reader.finish()?;
        Ok(value)
    }
}

impl Encode for crate::Hash {
    fn encode_to(&self, writer: &mut Writer) {
        writer.fixed(&self.0);
    }
}

impl Decode for crate::Hash {
    fn decode_from(reader: &mut Reader<'_>) -> Result<Self> {
        Ok(Self(reader.array("hash")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integers_are_little_endian() {
        let mut w = Writer::new();
        w.u8(1).u32(0x0403_0201).u64(0x0807_0605_0403_0201);
        assert_eq!(w.finish(), [1, 1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let bytes = [0u8; 33];
        assert!(matches!(
            crate::Hash::from_bytes(&bytes),
            Err(Error::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn lengths_above_bound_are_rejected_before_reading() {
        let mut w = Writer::new();
        w.bytes(&[7u8; 10]);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert!(matches!(
            r.bytes(9, "field"),
            Err(Error::TooLong {
                len: 10,
                max: 9,
                ..
            })
        ));
        // A huge declared count on a short input is refused without allocating.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0x7f]);
        assert!(matches!(
            r.count(usize::MAX, "list"),
            Err(Error::Truncated { .. })
        ));
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut r = Reader::new(&[2]);
        assert!(matches!(
            r.version("block"),
            Err(Error::UnknownVersion { found: 2, .. })
        ));
    }

    #[test]
    fn invalid_utf8_and_bool_are_rejected() {
        let mut w = Writer::new();
        w.bytes(&[0xff, 0xfe]);
        let bytes = w.finish();
        assert!(matches!(
            Reader::new(&bytes).string(10, "name"),
            Err(Error::InvalidUtf8 { .. })
        ));
        assert!(matches!(
            Reader::new(&[2]).bool("flag"),
            Err(Error::InvalidTag { tag: 2, .. })
        ));
    }

    proptest! {
        #[test]
        fn strings_round_trip(text in ".{0,64}") {
            let mut w = Writer::new();
            w.str(&text);
            let bytes = w.finish();
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.string(1024, "s")?, text);
            r.finish()?;
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.u32("a").and_then(|_| r.string(16, "b")).and_then(|_| r.u64("c"));
        }
    }
}
