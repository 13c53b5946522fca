//! Synthetic IMU data: gravity, a motion profile, sensor noise and an optional impact.
//!
//! Values are SI (m/s², rad/s) in the sensor frame, z up when the wearer stands still.
//! Every value stays well inside the ±16 g / ±2000 °/s range of the default scales, so a
//! batch always encodes. The generator is deterministic for a given seed.

use std::{f32::consts::TAU, fmt, str::FromStr};

use rand::{Rng, SeedableRng, rngs::StdRng};
use velt_proto::Sample;

use crate::SampleSource;

/// Standard gravity, m/s².
pub const G: f32 = 9.806_65;

/// What the wearer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// 1.8 steps per second: vertical bounce, stride sway, arm swing.
    #[default]
    Walk,
    /// 85 rpm pedalling with road vibration and slow turns.
    Cycle,
    /// At rest, slightly tilted.
    Still,
    /// A 90 s loop: still, walk, cycle, still, with smooth transitions.
    Mixed,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Walk,
        Profile::Cycle,
        Profile::Still,
        Profile::Mixed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Walk => "walk",
            Profile::Cycle => "cycle",
            Profile::Still => "still",
            Profile::Mixed => "mixed",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown profile {s:?}: expected walk, cycle, still or mixed"))
    }
}

/// Peak of the simulated impact, in g: well above velt's 4 g crash threshold (≥ 12 g for
/// about a third of its 80 ms, i.e. several samples at 100 Hz).
pub const IMPACT_PEAK_G: f32 = 15.0;
/// Length of the impact pulse, µs.
pub const IMPACT_US: i64 = 80_000;

/// A deterministic generator of samples on a fixed grid of `period_us`.
#[derive(Debug, Clone)]
pub struct ImuGenerator {
    profile: Profile,
    period_us: u32,
    next_index: u64,
    impact_at_us: Option<i64>,
    noise: bool,
    rng: StdRng,
    phase: f32,
}

impl ImuGenerator {
    /// Samples every `period_us` µs (e.g. 10 000 for 100 Hz), starting at time 0.
    pub fn new(profile: Profile, period_us: u32, seed: u64) -> ImuGenerator {
        let mut rng = StdRng::seed_from_u64(seed);
        let phase = rng.random::<f32>() * TAU;
        ImuGenerator {
            profile,
            period_us: period_us.max(1),
            next_index: 0,
            impact_at_us: None,
            noise: true,
            rng,
            phase,
        }
    }

    /// Adds an impact spike starting `at_us` µs after the start.
    pub fn with_impact(mut self, at_us: Option<i64>) -> ImuGenerator {
        self.impact_at_us = at_us;
        self
    }

    /// Turns the sensor noise off (exactly reproducible curves, e.g. for plots).
    pub fn without_noise(mut self) -> ImuGenerator {
        self.noise = false;
        self
    }

    /// The sample at `t_us` µs from the start (advances the noise source).
    pub fn sample_at(&mut self, t_us: i64) -> Sample {
        let t = t_us as f32 / 1e6;
        let (mut accel, mut gyro) = motion(self.profile, t, self.phase);
        if self.noise {
            let (sigma_a, sigma_g) = match self.profile {
                Profile::Cycle => (0.15, 0.02),
                _ => (0.02, 0.005),
            };
            for a in &mut accel {
                *a += sigma_a * gaussian(&mut self.rng);
            }
            for g in &mut gyro {
                *g += sigma_g * gaussian(&mut self.rng);
            }
        }
        if let Some(at) = self.impact_at_us
            && (at..at + IMPACT_US).contains(&t_us)
        {
            // Half-sine pulse along a fixed oblique direction, plus a tumble.
            let x = (t_us - at) as f32 / IMPACT_US as f32;
            let pulse = (x * std::f32::consts::PI).sin();
            let direction = [0.6_f32, 0.3, -0.742];
            for (a, d) in accel.iter_mut().zip(direction) {
                *a = d * IMPACT_PEAK_G * G * pulse + *a * (1.0 - pulse);
            }
            gyro = [12.0 * pulse, -8.0 * pulse, 15.0 * pulse];
        }
        Sample {
            ts_us: t_us,
            accel,
            gyro,
        }
    }
}

impl SampleSource for ImuGenerator {
    fn next_batch(&mut self, max: usize) -> Vec<Sample> {
        (0..max)
            .map(|_| {
                let t_us = self.next_index as i64 * i64::from(self.period_us);
                self.next_index += 1;
                self.sample_at(t_us)
            })
            .collect()
    }

    fn period_us(&self) -> Option<u32> {
        Some(self.period_us)
    }
}

/// Standard normal deviate (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

fn still() -> ([f32; 3], [f32; 3]) {
    // Tilted by a few degrees: gravity leaks into x and y.
    let (ax, ay) = (0.35, -0.2);
    ([ax, ay, (G * G - ax * ax - ay * ay).sqrt()], [0.0; 3])
}

fn walk(t: f32, phase: f32) -> ([f32; 3], [f32; 3]) {
    let step = TAU * 1.8 * t + phase;
    let stride = step / 2.0;
    (
        [
            1.2 * step.sin() + 0.4 * (2.0 * step + 0.5).sin(),
            0.8 * stride.sin(),
            G + 2.5 * (step + 0.3).sin() + 0.6 * (2.0 * step).sin(),
        ],
        [
            0.6 * (stride + 0.2).sin(),
            1.8 * step.sin(),
            0.4 * (stride + 1.0).sin(),
        ],
    )
}

fn cycle(t: f32, phase: f32) -> ([f32; 3], [f32; 3]) {
    let crank = TAU * 1.42 * t + phase;
    let turn = TAU * 0.05 * t;
    let lean = 0.15 * turn.sin();
    (
        [
            0.6 * crank.sin() + 0.3,
            0.9 * (crank + 1.57).sin() + G * lean,
            G * (1.0 - lean * lean / 2.0) + 0.4 * (2.0 * crank).sin(),
        ],
        [
            0.3 * crank.sin(),
            0.2 * (crank + 0.7).sin(),
            0.25 * turn.cos(),
        ],
    )
}

fn blend(a: ([f32; 3], [f32; 3]), b: ([f32; 3], [f32; 3]), w: f32) -> ([f32; 3], [f32; 3]) {
    let mix = |x: [f32; 3], y: [f32; 3]| std::array::from_fn(|i| x[i] * (1.0 - w) + y[i] * w);
    (mix(a.0, b.0), mix(a.1, b.1))
}

fn motion(profile: Profile, t: f32, phase: f32) -> ([f32; 3], [f32; 3]) {
    match profile {
        Profile::Walk => walk(t, phase),
        Profile::Cycle => cycle(t, phase),
        Profile::Still => still(),
        Profile::Mixed => {
            // Segments of the 90 s loop, each faded in over 2 s from the previous one.
            let s = t % 90.0;
            let ramp = |start: f32| ((s - start) / 2.0).clamp(0.0, 1.0);
            if s < 20.0 {
                blend(still(), still(), 0.0)
            } else if s < 50.0 {
                blend(still(), walk(t, phase), ramp(20.0))
            } else if s < 80.0 {
                blend(walk(t, phase), cycle(t, phase), ramp(50.0))
            } else {
                blend(cycle(t, phase), still(), ramp(80.0))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn magnitude(a: [f32; 3]) -> f32 {
        a.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    #[test]
    fn every_profile_encodes_and_averages_to_gravity() {
        for profile in Profile::ALL {
            let mut imu = ImuGenerator::new(profile, 10_000, 7);
            let samples = imu.next_batch(4096);
            let mean_z = samples.iter().map(|s| s.accel[2]).sum::<f32>() / samples.len() as f32;
            assert!((mean_z - G).abs() < 0.5, "{profile}: mean z {mean_z}");
            for chunk in samples.chunks(50) {
                velt_proto::TelemetryBatch::from_samples(
                    1,
                    None,
                    Some(10_000),
                    velt_proto::ACCEL_SCALE_16G,
                    velt_proto::GYRO_SCALE_2000DPS,
                    chunk,
                )
                .unwrap();
            }
        }
    }

    #[test]
    fn impact_exceeds_12_g_for_several_samples_at_100_hz() {
        let mut imu = ImuGenerator::new(Profile::Walk, 10_000, 1).with_impact(Some(1_000_000));
        let samples = imu.next_batch(200);
        let hard = samples
            .iter()
            .filter(|s| magnitude(s.accel) >= 12.0 * G)
            .count();
        assert!(hard >= 3, "{hard} samples at 12 g or more");
        assert!(samples[..100].iter().all(|s| magnitude(s.accel) < 4.0 * G));
        velt_proto::TelemetryBatch::from_samples(
            1,
            None,
            Some(10_000),
            velt_proto::ACCEL_SCALE_16G,
            velt_proto::GYRO_SCALE_2000DPS,
            &samples,
        )
        .unwrap();
    }

    #[test]
    fn profiles_parse_from_their_names() {
        for profile in Profile::ALL {
            assert_eq!(profile.as_str().parse::<Profile>(), Ok(profile));
        }
        assert!("run".parse::<Profile>().is_err());
    }
}
