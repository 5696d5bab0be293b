//! Run-time instruction-set dispatch: one binary that uses AVX-512 where the CPU has it, AVX2 +
//! FMA where it does not, and portable code elsewhere.
//!
//! Kernels are plain loops over slices written with [`multiversion!`], which compiles the loop
//! body three times (with `#[target_feature]` for x86-64-v4 and x86-64-v3, and without) and
//! picks one at run time from `is_x86_feature_detected!`, cached after the first call. LLVM
//! vectorises the bodies for each target; the math helpers in [`super::math`] avoid libm calls
//! so that they vectorise too. This is the approach of gemm's and pulp's run-time dispatch,
//! without a dependency.

use std::sync::OnceLock;

/// The instruction sets a kernel can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// x86-64-v4: AVX-512 F/BW/DQ/VL with FMA.
    Avx512,
    /// x86-64-v3: AVX2 with FMA.
    Avx2,
    /// Whatever the compile target guarantees (SSE2 on x86-64, NEON on aarch64).
    Portable,
}

/// The best instruction set of this CPU, detected once.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    use std::arch::is_x86_feature_detected as has;
    let v3 = has!("avx2") && has!("fma") && has!("bmi2") && has!("f16c");
    let v4 = v3 && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl");
    if v4 {
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
                    $crate::kernels::cpu::simd::Isa::Avx512 => return unsafe { v4($($arg),*) },
                    $crate::kernels::cpu::simd::Isa::Avx2 => return unsafe { v3($($arg),*) },
                    $crate::kernels::cpu::simd::Isa::Portable => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;
