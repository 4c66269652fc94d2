//! The comparison of `filter` and `threshold`: `value OPERATOR threshold`, spelled as the
//! original FAR-EDGE filter spells it (`EQ`, `NE`, `GT`, `GE`, `LT`, `LE`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A comparison of a value with a threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operator {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl Operator {
    /// Every operator, in the order the original filter lists them.
    pub const ALL: [Self; 6] = [Self::Eq, Self::Ne, Self::Gt, Self::Ge, Self::Lt, Self::Le];

    /// Whether `value OPERATOR threshold` holds.
    #[must_use]
    #[allow(
        clippy::float_cmp,
        reason = "EQ and NE are exact comparisons, as in the original"
    )]
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Self::Eq => value == threshold,
            Self::Ne => value != threshold,
            Self::Gt => value > threshold,
            Self::Ge => value >= threshold,
            Self::Lt => value < threshold,
            Self::Le => value <= threshold,
        }
    }

    /// The operator as written in manifests: `GT`.
    #[must_use]
    pub const fn text(self) -> &'static str {
        match self {
            Self::Eq => "EQ",
            Self::Ne => "NE",
            Self::Gt => "GT",
            Self::Ge => "GE",
            Self::Lt => "LT",
            Self::Le => "LE",
        }
    }

    /// The operator that holds exactly when this one does not.
    #[must_use]
    pub const fn negation(self) -> Self {
        match self {
            Self::Eq => Self::Ne,
            Self::Ne => Self::Eq,
            Self::Gt => Self::Le,
            Self::Ge => Self::Lt,
            Self::Lt => Self::Ge,
            Self::Le => Self::Gt,
        }
    }

    /// Whether it orders values (`GT`, `GE`, `LT`, `LE`), as opposed to `EQ` and `NE`.
    #[must_use]
    pub const fn orders(self) -> bool {
        !matches!(self, Self::Eq | Self::Ne)
    }

    /// Whether it holds for values above the threshold (`GT`, `GE`).
    #[must_use]
    pub const fn upward(self) -> bool {
        matches!(self, Self::Gt | Self::Ge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_written_as_in_the_original_filter_and_negate_each_other() {
        for op in Operator::ALL {
            assert_eq!(serde_json::to_value(op).unwrap(), op.text());
            assert_eq!(op.negation().negation(), op);
            for (v, t) in [(1.0, 2.0), (2.0, 2.0), (3.0, 2.0)] {
                assert_ne!(op.holds(v, t), op.negation().holds(v, t), "{op:?} {v} {t}");
            }
        }
    }
}
