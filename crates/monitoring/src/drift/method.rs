//! The drift methods, by Evidently's names, with Evidently's display names, default
//! thresholds, the column types each accepts and the direction of each comparison.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A column's type, as Evidently's data definition gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Numerical,
    Categorical,
}

impl ColumnType {
    /// The name used in definitions and reports.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Numerical => "numerical",
            ColumnType::Categorical => "categorical",
        }
    }
}

/// What a method's score is, and so how it is compared with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// A p-value: drift when it is below the threshold (`<` or `<=`, see [`Method::drifted`]).
    PValue,
    /// A distance or divergence: drift when it reaches the threshold (`>=`, or `>` for `ed`).
    Distance,
}

/// A column drift method (Evidently's `stattest` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Ks,
    ChiSquare,
    Z,
    Wasserstein,
    JensenShannon,
    Psi,
    KlDiv,
    Anderson,
    CramerVonMises,
    MannW,
    TTest,
    Ed,
    Es,
    Hellinger,
    Tvd,
    FisherExact,
    GTest,
    EmpiricalMmd,
}

impl Method {
    /// Every method, in the order the documentation lists them.
    pub const ALL: [Method; 18] = [
        Method::Ks,
        Method::ChiSquare,
        Method::Z,
        Method::Wasserstein,
        Method::JensenShannon,
        Method::Psi,
        Method::KlDiv,
        Method::Anderson,
        Method::CramerVonMises,
        Method::MannW,
        Method::TTest,
        Method::Ed,
        Method::Es,
        Method::Hellinger,
        Method::Tvd,
        Method::FisherExact,
        Method::GTest,
        Method::EmpiricalMmd,
    ];

    /// Evidently's name for it (what users pass as `stattest` / `method`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::ChiSquare => "chisquare",
            Method::Z => "z",
            Method::Wasserstein => "wasserstein",
            Method::JensenShannon => "jensenshannon",
            Method::Psi => "psi",
            Method::KlDiv => "kl_div",
            Method::Anderson => "anderson",
            Method::CramerVonMises => "cramer_von_mises",
            Method::MannW => "mannw",
            Method::TTest => "t_test",
            Method::Ed => "ed",
            Method::Es => "es",
            Method::Hellinger => "hellinger",
            Method::Tvd => "TVD",
            Method::FisherExact => "fisher_exact",
            Method::GTest => "g_test",
            Method::EmpiricalMmd => "empirical_mmd",
        }
    }

    /// Evidently's display name (what its reports print as the method).
    pub fn display_name(self) -> &'static str {
        match self {
            Method::Ks => "K-S p_value",
            Method::ChiSquare => "chi-square p_value",
            Method::Z => "Z-test p_value",
            Method::Wasserstein => "Wasserstein distance (normed)",
            Method::JensenShannon => "Jensen-Shannon distance",
            Method::Psi => "PSI",
            Method::KlDiv => "Kullback-Leibler divergence",
            Method::Anderson => "Anderson-Darling",
            Method::CramerVonMises => "Cramer-von Mises",
            Method::MannW => "Mann-Whitney U-rank test",
            Method::TTest => "t_test",
            Method::Ed => "Energy-distance",
            Method::Es => "Epps-Singleton",
            Method::Hellinger => "Hellinger distance",
            Method::Tvd => "Total-Variation-Distance",
            Method::FisherExact => "Fisher's Exact test",
            Method::GTest => "g_test",
            Method::EmpiricalMmd => "empirical_mmd",
        }
    }

    /// Evidently's default threshold.
    pub fn default_threshold(self) -> f64 {
        match self {
            Method::Ks
            | Method::ChiSquare
            | Method::Z
            | Method::MannW
            | Method::TTest
            | Method::Es => 0.05,
            _ => 0.1,
        }
    }

    /// What the score is.
    pub fn score(self) -> Score {
        match self {
            Method::Wasserstein
            | Method::JensenShannon
            | Method::Psi
            | Method::KlDiv
            | Method::Ed
            | Method::Hellinger => Score::Distance,
            _ => Score::PValue,
        }
    }

    /// Whether Evidently accepts the method for a column of type `ty` when a user asks
    /// for it (its default choice may still pick `chisquare` or `z` for a numerical
    /// column with few values).
    pub fn allows(self, ty: ColumnType) -> bool {
        match self {
            Method::JensenShannon | Method::Psi | Method::KlDiv | Method::Hellinger => true,
            Method::ChiSquare | Method::Z | Method::Tvd | Method::FisherExact | Method::GTest => {
                ty == ColumnType::Categorical
            }
            _ => ty == ColumnType::Numerical,
        }
    }

    /// Whether `score` means drift against `threshold`, with the comparison Evidently
    /// uses for this method: `ks` and `cramer_von_mises` drift at `p <= threshold`, the
    /// other p-values at `p < threshold`; `ed` at `distance > threshold`, the other
    /// distances at `>=`. A NaN score never drifts (as in Evidently).
    pub fn drifted(self, score: f64, threshold: f64) -> bool {
        match self {
            Method::Ks | Method::CramerVonMises => score <= threshold,
            Method::Ed => score > threshold,
            _ if self.score() == Score::PValue => score < threshold,
            _ => score >= threshold,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown method name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown drift method {0:?}: use one of {names}", names = Method::ALL.map(Method::name).join(", "))]
pub struct UnknownMethod(pub String);

impl FromStr for Method {
    type Err = UnknownMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMethod(s.to_owned()))
    }
}

impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Method {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
        }
        let e = "kolmogorov".parse::<Method>().unwrap_err().to_string();
        assert!(e.contains("kolmogorov") && e.contains("wasserstein, jensenshannon"));
    }

    #[test]
    fn comparisons_follow_evidently() {
        assert!(Method::Ks.drifted(0.05, 0.05));
        assert!(!Method::ChiSquare.drifted(0.05, 0.05));
        assert!(Method::Wasserstein.drifted(0.1, 0.1));
        assert!(!Method::Ed.drifted(0.1, 0.1));
        assert!(!Method::Psi.drifted(f64::NAN, 0.1));
        assert!(!Method::Z.drifted(f64::NAN, 0.05));
        assert!(!Method::Ks.allows(ColumnType::Categorical));
        assert!(Method::Psi.allows(ColumnType::Categorical));
    }
}
