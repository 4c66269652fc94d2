//! Interned strings: observation names and data source ids travel as 4-byte symbols.
//!
//! Names and ids repeat in every observation; interning them once at the edge makes an
//! observation small, `Copy` in its keys, and cheap to hash in window state.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock, RwLock};

/// An interned string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(u32);

/// Names to numbers and back. The map hashes with foldhash, seeded per process: fast on
/// short names (a checkpoint's restore interns a million), yet not open to collisions
/// crafted in advance, as names come from devices.
#[derive(Default)]
struct Interner {
    ids: HashMap<Arc<str>, u32, foldhash::fast::RandomState>,
    names: Vec<Arc<str>>,
}

impl Interner {
    /// The number of `text`, interning it when new.
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 4 billion distinct names");
        let text: Arc<str> = Arc::from(text);
        self.names.push(text.clone());
        self.ids.insert(text, id);
        id
    }
}

fn interner() -> &'static RwLock<Interner> {
    static INTERNER: OnceLock<RwLock<Interner>> = OnceLock::new();
    INTERNER.get_or_init(RwLock::default)
}

impl Sym {
    /// The symbol for `text`, interning it on first use.
    #[must_use]
    pub fn new(text: &str) -> Self {
        if let Some(&id) = interner()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ids
            .get(text)
        {
            return Self(id);
        }
        Self(
            interner()
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .intern(text),
        )
    }

    /// The symbols of `texts`, in order: [`Sym::new`] of each, taking the interner's locks
    /// once for all (restoring a checkpoint of a million keys interns a million names).
    #[must_use]
    pub fn new_all(texts: &[&str]) -> Vec<Self> {
        let mut out = Vec::with_capacity(texts.len());
        let mut missing = Vec::new();
        {
            let r = interner()
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (i, text) in texts.iter().enumerate() {
                out.push(Self(r.ids.get(*text).copied().unwrap_or_else(|| {
                    missing.push(i);
                    0
                })));
            }
        }
        if missing.is_empty() {
            return out;
        }
        let mut w = interner()
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.ids.reserve(missing.len());
        for i in missing {
            out[i] = Self(w.intern(texts[i]));
        }
        out
    }

    /// The texts of `syms`, in order, reading the interner once for all.
    #[must_use]
    pub fn texts(syms: &[Self]) -> Vec<Arc<str>> {
        let r = interner()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        syms.iter().map(|s| r.names[s.0 as usize].clone()).collect()
    }

    /// The interned text.
    #[must_use]
    pub fn text(self) -> Arc<str> {
        interner()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .names[self.0 as usize]
            .clone()
    }

    /// The raw symbol number (stable for the life of the process).
    #[must_use]
    pub const fn index(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.text())
    }
}

impl From<&str> for Sym {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_is_the_same_symbol() {
        let a = Sym::new("TotalRealPower");
        let b = Sym::new(&String::from("TotalRealPower"));
        assert_eq!(a, b);
        assert_ne!(a, Sym::new("TotalRealEnergy"));
        assert_eq!(&*a.text(), "TotalRealPower");
        assert_eq!(a.to_string(), "TotalRealPower");
    }
}
