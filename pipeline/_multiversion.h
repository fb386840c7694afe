/* The C parts' two compiler hints (setup.py builds the parts with this folder on the include path).

   MULTIVERSION: on x86-64 Linux with GCC, the function is compiled twice, for the baseline's SSE2 and for AVX2, and
   the loader picks the one the CPU runs (function multi-versioning). The sums keep their order either way (no
   -ffast-math): both versions give the same results. INLINE: a helper inlined into each version (GCC does not
   inline a plain function into a clone of another target). */
#ifndef SRIS_MULTIVERSION_H
#define SRIS_MULTIVERSION_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define MULTIVERSION
#endif

#if defined(__GNUC__)
#define INLINE __attribute__((always_inline)) inline
#else
#define INLINE inline
#endif

#endif
