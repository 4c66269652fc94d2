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

#[derive(Default)]
struct Interner {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
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
        let mut w = interner()
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&id) = w.ids.get(text) {
            return Self(id);
        }
        let id = u32::try_from(w.names.len()).expect("fewer than 4 billion distinct names");
        let text: Arc<str> = Arc::from(text);
        w.names.push(text.clone());
        w.ids.insert(text, id);
        Self(id)
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
