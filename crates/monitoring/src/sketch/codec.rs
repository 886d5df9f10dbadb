//! The bytes of an encoded sketch: little-endian fixed-width numbers and LEB128 varints,
//! read back with every length and bound checked, so corrupt input is an error, never a
//! panic or an allocation sized by the input.

use super::SketchError;

/// Appends the encoding of a sketch.
#[derive(Debug, Default)]
pub(super) struct Writer(Vec<u8>);

impl Writer {
    pub(super) fn new(magic: &[u8; 4], version: u8) -> Self {
        let mut w = Writer(Vec::new());
        w.0.extend_from_slice(magic);
        w.u8(version);
        w
    }

    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(super) fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    /// An unsigned LEB128 varint: 1 byte below 128, at most 10.
    pub(super) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Reads an encoded sketch; every read says what it expected when the input ends early.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks the magic bytes and the version, and reads past them.
    pub(super) fn open(
        buf: &'a [u8],
        magic: &[u8; 4],
        kind: &'static str,
        version: u8,
    ) -> Result<Self, SketchError> {
        if buf.len() < 5 || &buf[..4] != magic {
            return Err(SketchError::NotASketch {
                expected: kind,
                found: buf.iter().take(4).copied().collect(),
            });
        }
        if buf[4] != version {
            return Err(SketchError::Version {
                found: buf[4],
                supported: version,
            });
        }
        Ok(Reader { buf, pos: 5 })
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], SketchError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(corrupt(format!(
                "the input ends at byte {} inside {what} ({n} bytes expected)",
                self.buf.len()
            ))),
        }
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, SketchError> {
        Ok(self.take(1, what)?[0])
    }

    pub(super) fn f64(&mut self, what: &str) -> Result<f64, SketchError> {
        Ok(f64::from_bits(self.u64(what)?))
    }

    pub(super) fn u64(&mut self, what: &str) -> Result<u64, SketchError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(b))
    }

    pub(super) fn varint(&mut self, what: &str) -> Result<u64, SketchError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            let bits = u64::from(b & 0x7f);
            // the 10th byte may only hold the top bit of a u64
            if i == 9 && b > 1 {
                return Err(corrupt(format!("{what} overflows 64 bits")));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt(format!("{what} is longer than 10 bytes")))
    }

    /// A length, at most `max`: checked before anything is allocated for it.
    pub(super) fn len(&mut self, max: usize, what: &str) -> Result<usize, SketchError> {
        let n = self.varint(what)?;
        match usize::try_from(n) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(corrupt(format!("{what} is {n}, at most {max} expected"))),
        }
    }

    pub(super) fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], SketchError> {
        self.take(n, what)
    }

    /// Fails unless every byte was read.
    pub(super) fn finish(self) -> Result<(), SketchError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(corrupt(format!(
                "{} bytes follow the end of the sketch",
                self.buf.len() - self.pos
            )))
        }
    }
}

pub(super) fn corrupt(why: String) -> SketchError {
    SketchError::Corrupt(why)
}
