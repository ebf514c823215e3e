//! The order in which the failover URLs of a connection are tried.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;

use crate::options::FailoverStrategy;

/// The order failover URLs are tried in: round robin from `start`, or a new random order for
/// each pass.
pub(super) struct Order {
    n: usize,
    start: usize,
    shuffled: Mutex<Option<(u32, Vec<usize>)>>,
    strategy: FailoverStrategy,
}

impl Order {
    pub(super) fn new(strategy: FailoverStrategy, n: usize, current: usize) -> Self {
        Order {
            n: n.max(1),
            start: current,
            shuffled: Mutex::new(None),
            strategy,
        }
    }

    /// The endpoint of attempt `attempt` (from 0): round robin from `start`, or a shuffled
    /// pass.
    pub(super) fn pick(&self, attempt: u32) -> usize {
        let k = attempt as usize;
        match self.strategy {
            FailoverStrategy::RoundRobin => (self.start + k) % self.n,
            FailoverStrategy::Shuffle => {
                let pass = (k / self.n) as u32;
                let mut shuffled = self.shuffled.lock().unwrap_or_else(|p| p.into_inner());
                if shuffled.as_ref().is_none_or(|(p, _)| *p != pass) {
                    let mut order: Vec<usize> = (0..self.n).collect();
                    for i in (1..order.len()).rev() {
                        let j = (random() % (i as u64 + 1)) as usize;
                        order.swap(i, j);
                    }
                    *shuffled = Some((pass, order));
                }
                shuffled.as_ref().map_or(0, |(_, order)| order[k % self.n])
            }
        }
    }
}

/// A random number from the standard library's randomly keyed hasher.
fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_goes_through_every_url_from_the_start() {
        let order = Order::new(FailoverStrategy::RoundRobin, 3, 1);
        let picked: Vec<usize> = (0..7).map(|a| order.pick(a)).collect();
        assert_eq!(picked, vec![1, 2, 0, 1, 2, 0, 1]);
    }

    #[test]
    fn shuffle_tries_every_url_once_per_pass() {
        let order = Order::new(FailoverStrategy::Shuffle, 4, 0);
        for pass in 0..5u32 {
            let mut picked: Vec<usize> = (0..4).map(|k| order.pick(pass * 4 + k)).collect();
            picked.sort_unstable();
            assert_eq!(picked, vec![0, 1, 2, 3], "pass {pass}");
        }
    }
}
