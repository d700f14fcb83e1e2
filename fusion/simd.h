/* Compiler helpers for the few hot numeric kernels.
 *
 * OTF_HOT_CLONES compiles a function twice, for AVX2+FMA and for baseline
 * x86-64, and picks one at load time (GCC function multi-versioning), so the
 * binaries still run on any x86-64 while using the wide units where they
 * exist. Elsewhere it expands to nothing. */
#ifndef OTF_SIMD_H
#define OTF_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define OTF_HOT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define OTF_HOT_CLONES
#endif

#endif
