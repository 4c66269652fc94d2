//! A compact form of open windows for checkpoints of many keys: instead of one JSON object
//! per window, one string (base64) holding every window as a binary record, with each name
//! written once. The accumulator of a window stays JSON (its own serde form), so every
//! accumulator is packed the same way.
//!
//! Layout (little-endian): the number of names, then each as a length and UTF-8 bytes; the
//! number of windows, then each as its key's name, source and field and its data kind (each
//! a name number plus one, 0 for none), its start (i64), and its accumulator's JSON (a
//! length and the bytes).

use base64::Engine as _;
use engine::Sym;
use engine::processor::ProcessorError;
use rustc_hash::FxHashMap;

use super::{Accumulator, Key, Slot, bad};

/// Windows being packed.
#[derive(Default)]
pub(super) struct Packer {
    names: FxHashMap<Sym, u32>,
    order: Vec<Sym>,
    windows: u32,
    body: Vec<u8>,
}

impl Packer {
    fn name(&mut self, s: Option<Sym>) -> u32 {
        let Some(s) = s else { return 0 };
        let next = u32::try_from(self.order.len()).unwrap_or(u32::MAX);
        let n = *self.names.entry(s).or_insert_with(|| {
            self.order.push(s);
            next
        });
        n + 1
    }

    /// Adds the window of `key` starting at `start`.
    pub(super) fn add<A: Accumulator>(
        &mut self,
        key: &Key,
        start: i64,
        slot: &Slot<A>,
    ) -> Result<(), ProcessorError> {
        let ids = [
            self.name(key.name),
            self.name(key.source),
            self.name(key.field),
            self.name(slot.data_kind),
        ];
        for id in ids {
            self.body.extend_from_slice(&id.to_le_bytes());
        }
        self.body.extend_from_slice(&start.to_le_bytes());
        let at = self.body.len();
        self.body.extend_from_slice(&[0; 4]);
        serde_json::to_writer(&mut self.body, &slot.acc)
            .map_err(|e| ProcessorError::internal(e.to_string()).with_source(e))?;
        let len = u32::try_from(self.body.len() - at - 4).unwrap_or(u32::MAX);
        self.body[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.windows += 1;
        Ok(())
    }

    /// The packed windows, as a string for the snapshot; `None` when there are none.
    pub(super) fn finish(self) -> Option<String> {
        if self.windows == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(self.body.len() + 16 * self.order.len() + 8);
        out.extend_from_slice(
            &u32::try_from(self.order.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        for s in &self.order {
            let text = s.text();
            out.extend_from_slice(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&self.windows.to_le_bytes());
        out.extend_from_slice(&self.body);
        Some(base64::engine::general_purpose::STANDARD.encode(out))
    }
}

/// Reads packed windows back: calls `each(key, start, slot)` for every window.
pub(super) fn unpack<A: Accumulator>(
    text: &str,
    mut each: impl FnMut(Key, i64, Slot<A>),
) -> Result<(), ProcessorError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| bad(&format!("packed windows: {e}")))?;
    let mut r = Reader {
        bytes: &bytes,
        at: 0,
    };
    let count = r.u32()?;
    let mut names = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = r.u32()? as usize;
        let text = std::str::from_utf8(r.take(len)?).map_err(|e| bad(&e.to_string()))?;
        names.push(Sym::new(text));
    }
    let name = |id: u32| -> Result<Option<Sym>, ProcessorError> {
        match id {
            0 => Ok(None),
            n => names
                .get(n as usize - 1)
                .copied()
                .map(Some)
                .ok_or_else(|| bad("packed windows: a name out of range")),
        }
    };
    for _ in 0..r.u32()? {
        let (n, s, f, k) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let key = Key {
            name: name(n)?,
            source: name(s)?,
            field: name(f)?,
        };
        let start = r.i64()?;
        let len = r.u32()? as usize;
        let acc: A =
            serde_json::from_slice(r.take(len)?).map_err(|e| bad(&e.to_string()).with_source(e))?;
        each(
            key,
            start,
            Slot {
                acc,
                data_kind: name(k)?,
                ingested: 0,
            },
        );
    }
    if r.at != bytes.len() {
        return Err(bad("packed windows: bytes after the last window"));
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProcessorError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| bad("packed windows: cut short"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, ProcessorError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn i64(&mut self) -> Result<i64, ProcessorError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(b))
    }
}
