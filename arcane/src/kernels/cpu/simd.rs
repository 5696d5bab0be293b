//! Run-time instruction-set dispatch: one binary that uses AVX-512 where the CPU has it, AVX2 +
//! FMA where it does not, and portable code elsewhere.
//!
//! Kernels are plain loops over slices written with [`multiversion!`], which compiles the loop
//! body three times (with `#[target_feature]` for x86-64-v4 and x86-64-v3, and without) and
//! picks one at run time from `is_x86_feature_detected!`, cached after the first call. LLVM
//! vectorises the bodies for each target; the math helpers in [`super::math`] avoid libm calls
//! so that they vectorise too. This is the approach of gemm's and pulp's run-time dispatch,
//! without a dependency.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The instruction sets a kernel can be compiled for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// x86-64-v4 with AVX512_BF16: `vdpbf16ps`, pairwise bf16 products added into f32 (for
    /// bf16 weights; every other kernel runs its x86-64-v4 code).
    Avx512Bf16,
    /// x86-64-v4: AVX-512 F/BW/DQ/VL with FMA.
    Avx512,
    /// x86-64-v3: AVX2 with FMA.
    Avx2,
    /// Whatever the compile target guarantees (SSE2 on x86-64, NEON on aarch64).
    Portable,
}

impl Isa {
    fn rank(self) -> u8 {
        match self {
            Isa::Portable => 0,
            Isa::Avx2 => 1,
            Isa::Avx512 => 2,
            Isa::Avx512Bf16 => 3,
        }
    }

    fn from_rank(rank: u8) -> Self {
        match rank {
            0 => Isa::Portable,
            1 => Isa::Avx2,
            2 => Isa::Avx512,
            _ => Isa::Avx512Bf16,
        }
    }
}

/// The cap set by [`limit_isa`] (a rank); `u8::MAX` until the first call reads `ARCANE_ISA`.
static CAP: AtomicU8 = AtomicU8::new(u8::MAX);

/// The instruction set the kernels use: the best this CPU has (detected once), lowered by
/// `ARCANE_ISA=avx512|avx2|portable` or [`limit_isa`].
pub fn isa() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    let detected = *DETECTED.get_or_init(detect);
    let mut cap = CAP.load(Ordering::Relaxed);
    if cap == u8::MAX {
        cap = env_cap();
        CAP.store(cap, Ordering::Relaxed);
    }
    Isa::from_rank(detected.rank().min(cap))
}

/// Caps the instruction set of every kernel from now on (a cap above what the CPU has does
/// nothing): how the tests run the AVX2 and portable code on an AVX-512 machine, and how to
/// compare them. `ARCANE_ISA=avx512|avx2|portable` sets the same cap at start-up (`avx512`
/// leaves out the bf16 dot products).
pub fn limit_isa(max: Isa) {
    CAP.store(max.rank(), Ordering::Relaxed);
}

/// The cap `ARCANE_ISA` asks for (none when unset or not understood).
fn env_cap() -> u8 {
    match std::env::var("ARCANE_ISA").as_deref().map(str::trim) {
        Ok("portable") => Isa::Portable.rank(),
        Ok("avx2") => Isa::Avx2.rank(),
        Ok("avx512") => Isa::Avx512.rank(),
        _ => Isa::Avx512Bf16.rank(),
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    use std::arch::is_x86_feature_detected as has;
    let v3 = has!("avx2") && has!("fma") && has!("bmi2") && has!("f16c");
    let v4 = v3 && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl");
    if v4 && has!("avx512bf16") {
        Isa::Avx512Bf16
    } else if v4 {
        Isa::Avx512
    } else if v3 {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Portable
}

/// Defines a function whose body is compiled for each [`Isa`] and dispatched at run time.
/// The body and everything it calls must be `#[inline(always)]` to be compiled per target.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2,f16c")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2,f16c")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match $crate::kernels::cpu::simd::isa() {
                    // SAFETY: `isa()` reported these features on this CPU.
                    $crate::kernels::cpu::simd::Isa::Avx512Bf16
                    | $crate::kernels::cpu::simd::Isa::Avx512 => return unsafe { v4($($arg),*) },
                    $crate::kernels::cpu::simd::Isa::Avx2 => return unsafe { v3($($arg),*) },
                    $crate::kernels::cpu::simd::Isa::Portable => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;
