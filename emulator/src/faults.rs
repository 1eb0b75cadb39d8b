//! Deterministic fault injection for ARM calls: every Nth call throttled, and a fraction
//! of calls failing with 500/503 spread evenly (an accumulator, no randomness), so tests
//! know exactly which call fails.

use crate::config::{Restarts, RuntimeConfig};

/// A fault to answer instead of the real response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 TooManyRequests with Retry-After: 1.
    Throttle,
    /// 500 InternalServerError.
    InternalError,
    /// 503 ServiceUnavailable with Retry-After: 1.
    Unavailable,
}

/// Position in the fault sequences.
#[derive(Debug, Default)]
pub struct FaultState {
    calls: u64,
    error_acc: f64,
    errors: u64,
}

impl FaultState {
    /// Restarts sequences after a configuration change.
    pub fn restart(&mut self, r: Restarts) {
        if r.throttle {
            self.calls = 0;
        }
        if r.errors {
            self.error_acc = 0.0;
            self.errors = 0;
        }
    }

    /// Decides the fate of the next ARM call. Errors alternate 500, 503, 500, ...
    pub fn next(&mut self, cfg: &RuntimeConfig) -> Option<Fault> {
        self.calls += 1;
        if cfg.arm_throttle_every > 0 && self.calls.is_multiple_of(cfg.arm_throttle_every) {
            return Some(Fault::Throttle);
        }
        if cfg.arm_error_rate > 0.0 {
            self.error_acc += cfg.arm_error_rate;
            if self.error_acc >= 1.0 - 1e-9 {
                self.error_acc -= 1.0;
                self.errors += 1;
                return Some(if self.errors % 2 == 1 {
                    Fault::InternalError
                } else {
                    Fault::Unavailable
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: &RuntimeConfig, n: usize) -> Vec<Option<Fault>> {
        let mut s = FaultState::default();
        (0..n).map(|_| s.next(cfg)).collect()
    }

    #[test]
    fn throttles_every_nth_call() {
        let cfg = RuntimeConfig {
            arm_throttle_every: 3,
            ..Default::default()
        };
        let got = run(&cfg, 6);
        assert_eq!(
            got,
            vec![
                None,
                None,
                Some(Fault::Throttle),
                None,
                None,
                Some(Fault::Throttle)
            ]
        );
    }

    #[test]
    fn error_rate_is_spread_evenly() {
        let cfg = RuntimeConfig {
            arm_error_rate: 0.5,
            ..Default::default()
        };
        let got = run(&cfg, 4);
        assert_eq!(
            got,
            vec![
                None,
                Some(Fault::InternalError),
                None,
                Some(Fault::Unavailable)
            ]
        );
        let cfg = RuntimeConfig {
            arm_error_rate: 1.0 / 3.0,
            ..Default::default()
        };
        assert_eq!(run(&cfg, 30).iter().filter(|f| f.is_some()).count(), 10);
        let cfg = RuntimeConfig {
            arm_error_rate: 1.0,
            ..Default::default()
        };
        assert!(run(&cfg, 5).iter().all(|f| f.is_some()));
    }

    #[test]
    fn restart_resets_the_count() {
        let cfg = RuntimeConfig {
            arm_throttle_every: 2,
            ..Default::default()
        };
        let mut s = FaultState::default();
        assert_eq!(s.next(&cfg), None);
        s.restart(Restarts {
            throttle: true,
            errors: false,
        });
        assert_eq!(s.next(&cfg), None);
        assert_eq!(s.next(&cfg), Some(Fault::Throttle));
    }
}
