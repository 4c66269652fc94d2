//! One record of a sink's queue on disk: a batch of observations, its sequence number and
//! when it was queued.
//!
//! ```text
//! record  = len:u32 crc:u32 body            (little endian; crc32 of body)
//! body    = seq:u64 queued:i64 count:u32 observation*count
//! obs     = source:str name:str timestamp:i64 value flags:u8 [kind:str] [attributes:json]
//!           [id:str] ingested:u64
//! value   = 0 f64 | 1 bool:u8 | 2 text:str | 3 json:str
//! str     = len:u32 utf8
//! ```
//!
//! The CRC finds a record torn by a power cut (a SIGKILL cannot tear one: it is written
//! with one `write`).

use std::sync::Arc;

use crate::observation::{Batch, Observation, Value};
use crate::symbol::Sym;
use crate::time::Timestamp;

/// Bytes before a record's body.
pub(super) const HEADER: usize = 8;

/// What a record holds besides its observations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Meta {
    /// Its sequence number in the queue.
    pub seq: u64,
    /// When it was queued (epoch microseconds).
    pub queued: i64,
    /// How many observations it holds.
    pub count: u32,
}

/// Why a record could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Corrupt(pub &'static str);

const KIND: u8 = 1;
const ATTRIBUTES: u8 = 2;
const ID: u8 = 4;

/// Appends the record of `batch` to `out`.
pub(super) fn encode(seq: u64, queued: i64, batch: &[Observation], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&queued.to_le_bytes());
    out.extend_from_slice(&(batch.len() as u32).to_le_bytes());
    // Batches usually repeat a few names: look each up in the interner once.
    let mut names: Vec<(Sym, Arc<str>)> = Vec::new();
    let mut text = |s: Sym| -> Arc<str> {
        if let Some((_, t)) = names.iter().find(|(n, _)| *n == s) {
            return t.clone();
        }
        let t = s.text();
        if names.len() < 16 {
            names.push((s, t.clone()));
        }
        t
    };
    for o in batch {
        put_str(out, &text(o.source));
        put_str(out, &text(o.name));
        out.extend_from_slice(&o.timestamp.0.to_le_bytes());
        match &o.value {
            Value::Number(f) => {
                out.push(0);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Bool(b) => {
                out.push(1);
                out.push(u8::from(*b));
            }
            Value::Text(t) => {
                out.push(2);
                put_str(out, t);
            }
            Value::Json(j) => {
                out.push(3);
                put_str(out, &j.to_string());
            }
        }
        let flags = if o.data_kind.is_some() { KIND } else { 0 }
            | if o.attributes.is_some() {
                ATTRIBUTES
            } else {
                0
            }
            | if o.id.is_some() { ID } else { 0 };
        out.push(flags);
        if let Some(k) = o.data_kind {
            put_str(out, &text(k));
        }
        if let Some(a) = &o.attributes {
            put_str(
                out,
                &serde_json::to_string(&**a).unwrap_or_else(|_| "{}".into()),
            );
        }
        if let Some(id) = &o.id {
            put_str(out, id);
        }
        out.extend_from_slice(&o.ingested.to_le_bytes());
    }
    let body = &out[start + HEADER..];
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The body's length and CRC from a record's header.
pub(super) fn header(bytes: &[u8; HEADER]) -> (usize, u32) {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    (len, crc)
}

/// Checks a body against its CRC and reads what it holds besides observations.
///
/// # Errors
///
/// The body does not match its CRC or is too short.
pub(super) fn meta(body: &[u8], crc: u32) -> Result<Meta, Corrupt> {
    if crc32fast::hash(body) != crc {
        return Err(Corrupt("its checksum does not match"));
    }
    let mut r = Reader { bytes: body };
    Ok(Meta {
        seq: r.u64()?,
        queued: r.u64()? as i64,
        count: r.u32()?,
    })
}

/// The observations of a checked body. `ingested` replaces their ingest times when they
/// were queued by an earlier run of the engine (whose clock meant something else).
///
/// # Errors
///
/// The body is malformed.
pub(super) fn decode(body: &[u8], ingested: Option<u64>) -> Result<(Meta, Batch), Corrupt> {
    let mut r = Reader { bytes: body };
    let meta = Meta {
        seq: r.u64()?,
        queued: r.u64()? as i64,
        count: r.u32()?,
    };
    let mut batch = Vec::with_capacity(meta.count as usize);
    let mut names: Vec<Sym> = Vec::new();
    let mut sym = |text: &str| -> Sym {
        if let Some(s) = names.iter().find(|s| &*s.text() == text) {
            return *s;
        }
        let s = Sym::new(text);
        if names.len() < 8 {
            names.push(s);
        }
        s
    };
    for _ in 0..meta.count {
        let source = sym(r.str()?);
        let name = sym(r.str()?);
        let timestamp = Timestamp(r.u64()? as i64);
        let value = match r.u8()? {
            0 => Value::Number(f64::from_bits(r.u64()?)),
            1 => Value::Bool(r.u8()? != 0),
            2 => Value::Text(Arc::new(r.str()?.to_owned())),
            3 => Value::Json(Arc::new(
                serde_json::from_str(r.str()?).map_err(|_| Corrupt("a value is not JSON"))?,
            )),
            _ => return Err(Corrupt("a value has an unknown type")),
        };
        let flags = r.u8()?;
        let data_kind = if flags & KIND != 0 {
            Some(sym(r.str()?))
        } else {
            None
        };
        let attributes = if flags & ATTRIBUTES != 0 {
            Some(Arc::new(
                serde_json::from_str(r.str()?).map_err(|_| Corrupt("attributes are not JSON"))?,
            ))
        } else {
            None
        };
        let id = if flags & ID != 0 {
            Some(Arc::new(r.str()?.to_owned()))
        } else {
            None
        };
        let stamped = r.u64()?;
        batch.push(Observation {
            source,
            name,
            timestamp,
            value,
            data_kind,
            ingested: ingested.unwrap_or(stamped),
            attributes,
            id,
        });
    }
    Ok((meta, batch.into()))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.bytes.len() < n {
            return Err(Corrupt("it ends early"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Corrupt> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Corrupt> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Corrupt> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn str(&mut self) -> Result<&'a str, Corrupt> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| Corrupt("a name is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Vec<Observation> {
        let mut a = Observation::number(Sym::new("box-1"), Sym::new("weight"), Timestamp(7), 2.5);
        a.data_kind = Some(Sym::new("kg"));
        a.attributes = Some(Arc::new(
            json!({"windowStart": "x", "count": 3})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ));
        a.id = Some(Arc::new("r-1".into()));
        let mut b = a.clone();
        b.value = Value::Json(Arc::new(json!([1, 2, {"a": null}])));
        b.data_kind = None;
        b.attributes = None;
        let mut c = b.clone();
        c.value = Value::Text(Arc::new("on".into()));
        c.id = None;
        let mut d = c.clone();
        d.value = Value::Bool(true);
        vec![a, b, c, d]
    }

    #[test]
    fn a_record_gives_back_every_field_of_every_observation() {
        let batch = sample();
        let mut out = Vec::new();
        encode(42, 1_000, &batch, &mut out);
        let (len, crc) = header(out[..HEADER].try_into().unwrap());
        assert_eq!(len, out.len() - HEADER);
        let body = &out[HEADER..];
        assert_eq!(
            meta(body, crc),
            Ok(Meta {
                seq: 42,
                queued: 1_000,
                count: 4
            })
        );
        let (_, back) = decode(body, None).unwrap();
        assert_eq!(back.as_slice(), batch.as_slice());
        let (_, restamped) = decode(body, Some(9)).unwrap();
        assert!(restamped.iter().all(|o| o.ingested == 9));
    }

    #[test]
    fn a_damaged_record_is_found_out() {
        let mut out = Vec::new();
        encode(1, 0, &sample(), &mut out);
        let (_, crc) = header(out[..HEADER].try_into().unwrap());
        let mut body = out[HEADER..].to_vec();
        body[20] ^= 1;
        assert_eq!(
            meta(&body, crc),
            Err(Corrupt("its checksum does not match"))
        );
        assert!(decode(&body[..10], None).is_err());
    }
}
