//! A compact form of open windows for checkpoints of many keys: instead of one JSON object
//! per window, one string (base64) holding every window as a binary record, with each name
//! written once and each accumulator in postcard's binary serde form.
//!
//! Layout (postcard: integers as varints): the names, each once; the number of windows;
//! then each window: its key's name, source and field and its data kind (each a name number
//! plus one, 0 for none), its times (`T` of them: a pane's start; a session's start and last
//! observation), and its accumulator. The snapshot says `"packedFormat": 2`; a `packed`
//! string without it is of an earlier development form (accumulators as JSON) and is not
//! read.

use std::marker::PhantomData;

use base64::Engine as _;
use engine::Sym;
use engine::processor::ProcessorError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;

use super::{Accumulator, Key, Saved, Slot, bad};

/// The form [`Packer`] writes, as `packedFormat`.
const FORMAT: u64 = 2;

/// Windows being packed, each with `T` times.
pub(super) struct Packer<const T: usize> {
    /// By symbol number: its name number plus one, 0 while not written yet.
    names: Vec<u32>,
    order: Vec<Sym>,
    windows: u64,
    body: Vec<u8>,
}

impl<const T: usize> Default for Packer<T> {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            order: Vec::new(),
            windows: 0,
            body: Vec::new(),
        }
    }
}

fn put<V: Serialize + ?Sized>(body: &mut Vec<u8>, v: &V) -> Result<(), ProcessorError> {
    *body = postcard::to_extend(v, std::mem::take(body)).map_err(|e| {
        ProcessorError::internal(format!("cannot pack a window: {e}")).with_source(e)
    })?;
    Ok(())
}

impl<const T: usize> Packer<T> {
    fn name(&mut self, s: Option<Sym>) -> u32 {
        let Some(s) = s else { return 0 };
        let i = s.index() as usize;
        if i >= self.names.len() {
            self.names.resize(i + 1, 0);
        }
        if self.names[i] == 0 {
            self.order.push(s);
            self.names[i] = u32::try_from(self.order.len()).unwrap_or(u32::MAX);
        }
        self.names[i]
    }

    /// Adds the window of `key` at `times` holding `slot`.
    pub(super) fn add<A: Accumulator>(
        &mut self,
        key: &Key,
        times: [i64; T],
        slot: &Slot<A>,
    ) -> Result<(), ProcessorError> {
        let ids = [
            self.name(key.name),
            self.name(key.source),
            self.name(key.field),
            self.name(slot.data_kind),
        ];
        put(&mut self.body, &ids)?;
        for t in times {
            put(&mut self.body, &t)?;
        }
        put(&mut self.body, &slot.acc)?;
        self.windows += 1;
        Ok(())
    }

    /// Writes the packed windows into the snapshot (nothing when there are none).
    pub(super) fn finish(self, saved: &mut Saved) -> Result<(), ProcessorError> {
        if self.windows == 0 {
            return Ok(());
        }
        let names = Sym::texts(&self.order);
        let names: Vec<&str> = names.iter().map(|s| &**s).collect();
        let mut out = Vec::with_capacity(self.body.len() + 16 * names.len() + 16);
        put(&mut out, &names)?;
        put(&mut out, &self.windows)?;
        out.extend_from_slice(&self.body);
        saved.packed = Some(base64::engine::general_purpose::STANDARD.encode(out));
        Ok(())
    }
}

/// Whether `state` holds packed windows: their string, or an error for a form not read.
pub(super) fn packed(state: &Json) -> Result<Option<&str>, ProcessorError> {
    let Some(text) = state.get("packed").and_then(Json::as_str) else {
        return Ok(None);
    };
    match state.get("packedFormat").and_then(Json::as_u64) {
        Some(FORMAT) => Ok(Some(text)),
        other => Err(bad(&format!(
            "packed windows of form {}, this version reads form {FORMAT}",
            other.map_or_else(|| "1 (a development form)".to_owned(), |f| f.to_string())
        ))),
    }
}

/// The `packedFormat` to write beside packed windows.
pub(super) const fn format() -> u64 {
    FORMAT
}

/// Packed windows being read back: each window's key, times and slot, in turn.
pub(super) struct Unpacked<A, const T: usize> {
    bytes: Vec<u8>,
    at: usize,
    names: Vec<Sym>,
    left: u64,
    accumulator: PhantomData<A>,
}

/// Reads packed windows back.
///
/// # Errors
///
/// Not the base64 of a packed form, or names that cannot be read.
pub(super) fn unpack<A: Accumulator, const T: usize>(
    text: &str,
) -> Result<Unpacked<A, T>, ProcessorError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| bad(&format!("packed windows: {e}")))?;
    let (names, at) = {
        let (texts, rest) = postcard::take_from_bytes::<Vec<&str>>(&bytes)
            .map_err(|e| bad(&format!("packed windows: {e}")).with_source(e))?;
        (Sym::new_all(&texts), bytes.len() - rest.len())
    };
    let mut u = Unpacked {
        bytes,
        at,
        names,
        left: 0,
        accumulator: PhantomData,
    };
    u.left = u.read()?;
    Ok(u)
}

impl<A: Accumulator, const T: usize> Unpacked<A, T> {
    /// How many windows are left to read (at most one per byte left, whatever the count
    /// says).
    pub(super) fn remaining(&self) -> usize {
        usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len() - self.at)
    }

    fn read<V: DeserializeOwned>(&mut self) -> Result<V, ProcessorError> {
        let rest = &self.bytes[self.at..];
        let (v, after) = postcard::take_from_bytes(rest)
            .map_err(|e| bad(&format!("packed windows: {e}")).with_source(e))?;
        self.at += rest.len() - after.len();
        Ok(v)
    }

    fn name(&self, id: u32) -> Result<Option<Sym>, ProcessorError> {
        match id {
            0 => Ok(None),
            n => self
                .names
                .get(n as usize - 1)
                .copied()
                .map(Some)
                .ok_or_else(|| bad("packed windows: a name out of range")),
        }
    }

    fn window(&mut self) -> Result<(Key, [i64; T], Slot<A>), ProcessorError> {
        let [n, s, f, k]: [u32; 4] = self.read()?;
        let key = Key {
            name: self.name(n)?,
            source: self.name(s)?,
            field: self.name(f)?,
        };
        let mut times = [0; T];
        for t in &mut times {
            *t = self.read()?;
        }
        let slot = Slot {
            acc: self.read()?,
            data_kind: self.name(k)?,
            ingested: 0,
        };
        Ok((key, times, slot))
    }
}

impl<A: Accumulator, const T: usize> Iterator for Unpacked<A, T> {
    type Item = Result<(Key, [i64; T], Slot<A>), ProcessorError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return (self.at != self.bytes.len())
                .then(|| Err(bad("packed windows: bytes after the last window")))
                .inspect(|_| self.at = self.bytes.len());
        }
        self.left -= 1;
        let w = self.window();
        if w.is_err() {
            self.left = 0;
            self.at = self.bytes.len();
        }
        Some(w)
    }
}
