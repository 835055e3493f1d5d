//! The text forms of a snapshot view, as a command line or a config file writes them:
//! split ratios (`train=0.8,val=0.1,test=0.1`) and shards (`RANK/WORLD`, e.g. `0/4`).

use std::str::FromStr;

use crate::model::error::{Error, Result};

/// Split ratios by name, in the order given, e.g. `train=0.8,val=0.1,test=0.1`. The
/// ratios need not sum to 1 ([`Snapshot::split`](crate::Snapshot::split) scales them).
#[derive(Clone, Debug, PartialEq)]
pub struct Ratios(pub Vec<(String, f64)>);

impl Ratios {
    /// The ratios as [`Snapshot::split`](crate::Snapshot::split) takes them.
    pub fn as_pairs(&self) -> Vec<(&str, f64)> {
        self.0.iter().map(|(n, r)| (n.as_str(), *r)).collect()
    }
}

impl FromStr for Ratios {
    type Err = Error;

    fn from_str(s: &str) -> Result<Ratios> {
        let bad = |reason: String| Error::invalid("split ratios", reason);
        let mut out: Vec<(String, f64)> = Vec::new();
        for part in s.split(',') {
            let (name, ratio) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} is not NAME=RATIO (e.g. train=0.8,val=0.1,test=0.1)")))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(bad(format!("{part:?} has no name")));
            }
            if out.iter().any(|(n, _)| n == name) {
                return Err(bad(format!("{name:?} is named twice")));
            }
            let ratio: f64 = ratio
                .trim()
                .parse()
                .map_err(|_| bad(format!("ratio {:?} of {name:?} is not a number", ratio.trim())))?;
            out.push((name.to_string(), ratio));
        }
        Ok(Ratios(out))
    }
}

/// One shard of `world` (`RANK/WORLD`, rank from 0), as
/// [`Snapshot::shard`](crate::Snapshot::shard) takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard's rank, from 0.
    pub rank: usize,
    /// How many shards.
    pub world: usize,
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Shard> {
        let bad = || Error::invalid("shard", format!("{s:?} is not RANK/WORLD with RANK < WORLD, e.g. 0/4"));
        let (rank, world) = s.split_once('/').ok_or_else(bad)?;
        let rank: usize = rank.trim().parse().map_err(|_| bad())?;
        let world: usize = world.trim().parse().map_err(|_| bad())?;
        if rank >= world {
            return Err(bad());
        }
        Ok(Shard { rank, world })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_parse_in_order_and_name_what_is_wrong() {
        let r: Ratios = "train=0.8, val = 0.1,test=0.1".parse().unwrap();
        assert_eq!(r.as_pairs(), [("train", 0.8), ("val", 0.1), ("test", 0.1)]);
        for (bad, names) in [
            ("train", "\"train\" is not NAME=RATIO"),
            ("=0.5", "has no name"),
            ("a=1,a=2", "\"a\" is named twice"),
            ("a=x", "ratio \"x\" of \"a\" is not a number"),
        ] {
            let e = bad.parse::<Ratios>().unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
            assert!(e.to_string().contains(names), "{bad}: {e}");
        }
    }

    #[test]
    fn shards_parse_rank_and_world_and_refuse_a_rank_outside() {
        assert_eq!("0/4".parse::<Shard>().unwrap(), Shard { rank: 0, world: 4 });
        assert_eq!("3/4".parse::<Shard>().unwrap(), Shard { rank: 3, world: 4 });
        for bad in ["4/4", "0/0", "1", "a/2", "-1/2", "1/2/3"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.to_string().contains("RANK/WORLD"), "{bad}: {e}");
        }
    }
}
