//! Retry pacing after a failed call (Consul, Docker, a supervised task that
//! ended): doubling from a short first delay to a cap, so a blip costs
//! milliseconds and a long outage is not hammered. Each delay is drawn
//! from the top quarter below the current step, so many clients that
//! failed together (every router after a Consul restart) do not retry in
//! lock-step, and no delay ever exceeds the cap.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The current step: the longest the next delay can be.
    step: Duration,
}

impl Backoff {
    /// Steps start at `min` and double up to `max` (a cap below `min` is `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max: max.max(min), step: min }
    }

    /// The delay before the next retry, in `[3/4 step, step]` (the first
    /// step is `min`);
    /// each call doubles the following step, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let mut rng = rand::rng();
        self.next_delay_by(|low, high| {
            let nanos = rng.random_range(low.as_nanos()..=high.as_nanos());
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        })
    }

    /// [`Backoff::next_delay`] with the draw inside `[low, high]` made by `pick`.
    fn next_delay_by(&mut self, pick: impl FnOnce(Duration, Duration) -> Duration) -> Duration {
        let high = self.step;
        let low = high - high / 4;
        self.step = self.step.saturating_mul(2).min(self.max);
        pick(low, high).clamp(low, high)
    }

    /// The longest delay this backoff ever returns.
    pub fn cap(&self) -> Duration {
        self.max
    }

    /// After a success: the next failure retries quickly again.
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn steps_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(ms(100), ms(500));
        let top: Vec<_> = (0..5).map(|_| b.next_delay_by(|_, high| high).as_millis()).collect();
        assert_eq!(top, [100, 200, 400, 500, 500]);
        let mut b = Backoff::new(ms(100), ms(500));
        let bottom: Vec<_> = (0..5).map(|_| b.next_delay_by(|low, _| low).as_millis()).collect();
        assert_eq!(bottom, [75, 150, 300, 375, 375], "jitter stays within the top quarter of each step");
        b.reset();
        assert_eq!(b.next_delay_by(|_, high| high), ms(100));
    }

    #[test]
    fn random_delays_stay_inside_their_step_and_the_cap() {
        for _ in 0..200 {
            let mut b = Backoff::new(ms(10), ms(1000));
            let mut step = ms(10);
            for _ in 0..12 {
                let d = b.next_delay();
                assert!(d <= step && d >= step - step / 4, "{d:?} outside step {step:?}");
                assert!(d <= ms(1000));
                step = (step * 2).min(ms(1000));
            }
        }
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(ms(400), ms(400));
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 10, "50 draws over 100 ms of room gave {} values", seen.len());
    }

    #[test]
    fn a_cap_below_the_minimum_is_the_minimum() {
        let mut b = Backoff::new(ms(100), ms(10));
        assert_eq!(b.next_delay_by(|_, high| high), ms(100));
        assert_eq!(b.next_delay_by(|_, high| high), ms(100));
        assert_eq!(b.cap(), ms(100));
    }

    #[test]
    fn a_huge_cap_does_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::MAX);
        for _ in 0..100 {
            b.next_delay_by(|_, high| high);
        }
        assert_eq!(b.next_delay_by(|_, high| high), Duration::MAX);
    }
}
