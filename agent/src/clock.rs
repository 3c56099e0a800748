//! The agent's clocks: cheap readings on the hot path, converted to seconds only when read.
//!
//! Two clocks, because a precise clock read on every poll cost more than all the rest of
//! the hooks together (`Instant::now` is a vDSO `clock_gettime`, ~26 ns here; RDTSC ~10 ns):
//!
//! - **coarse**: spawn times and poll times, i.e. task ages, idle ages and long polls, where
//!   milliseconds suffice. Read from the [`ticker`]'s published time (one relaxed load) while
//!   the ticker runs, else from `CLOCK_MONOTONIC_COARSE` (~5 ns, resolution one kernel tick,
//!   1–4 ms). Both count from the same origin as `CLOCK_MONOTONIC`.
//! - **precise** (the TSC on x86_64 when it is the kernel's clocksource, i.e. invariant and
//!   synchronised across cores; `Instant` otherwise): the duration of sampled polls, for
//!   busy time. TSC ticks are calibrated against `Instant` over the agent's lifetime, at
//!   read time.

use std::time::Instant;

pub(crate) mod ticker;

pub(crate) struct Clock {
    start: Instant,
    start_coarse: u64,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    start_tsc: u64,
    use_tsc: bool,
}

impl Clock {
    pub(crate) fn new() -> Self {
        ticker::start();
        let use_tsc = tsc_is_clocksource();
        Clock {
            start: Instant::now(),
            start_coarse: coarse_ns(),
            start_tsc: if use_tsc { rdtsc() } else { 0 },
            use_tsc,
        }
    }

    /// Coarse nanoseconds since the clock started, never 0, so 0 can mean "never".
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        ticker::now().saturating_sub(self.start_coarse).max(1)
    }

    /// Precise ticks since the clock started, for durations.
    #[inline]
    pub(crate) fn precise(&self) -> u64 {
        if self.use_tsc {
            rdtsc().wrapping_sub(self.start_tsc)
        } else {
            self.start.elapsed().as_nanos() as u64
        }
    }

    /// A converter to seconds, calibrated now.
    pub(crate) fn calibrate(&self) -> Seconds {
        let ns = self.start.elapsed().as_nanos() as f64;
        let per_tick = if self.use_tsc {
            let ticks = self.precise();
            // Noisy over the first microseconds; settles as the agent ages.
            if ticks > 0 && ns > 0.0 {
                ns / ticks as f64 * 1e-9
            } else {
                1e-9
            }
        } else {
            1e-9
        };
        Seconds {
            per_tick,
            now: self.now(),
        }
    }
}

/// Converts one [`Clock`]'s readings to seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seconds {
    per_tick: f64,
    /// The coarse clock's reading when calibrated: "now" for ages.
    now: u64,
}

impl Seconds {
    /// Seconds in a number of precise ticks.
    pub(crate) fn of_ticks(&self, ticks: u64) -> f64 {
        ticks as f64 * self.per_tick
    }

    /// Seconds from a coarse reading until now (0 if it is later).
    pub(crate) fn since(&self, coarse: u64) -> f64 {
        self.now.saturating_sub(coarse) as f64 * 1e-9
    }
}

#[inline]
pub(crate) fn coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE exists on every
    // Linux since 2.6.32. On failure `ts` stays zero and ages read as 0.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: RDTSC exists on every x86_64 CPU and has no memory effects.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn rdtsc() -> u64 {
    0
}

fn tsc_is_clocksource() -> bool {
    cfg!(target_arch = "x86_64")
        && std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .is_ok_and(|s| s.trim() == "tsc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_clocks_convert_to_wall_time() {
        let clock = Clock::new();
        let (c0, p0, t0) = (clock.now(), clock.precise(), Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(60));
        let secs = clock.calibrate();
        let coarse = secs.since(c0);
        let precise = secs.of_ticks(clock.precise() - p0);
        let wall = t0.elapsed().as_secs_f64();
        // Both track the wall clock: the coarse one within its tick (at most 10 ms here),
        // the precise one within a few per cent (calibration over the clock's life).
        assert!((coarse - wall).abs() < 0.011, "coarse {coarse} wall {wall}");
        assert!(
            (precise - wall).abs() < wall * 0.05,
            "precise {precise} wall {wall}"
        );
    }
}
