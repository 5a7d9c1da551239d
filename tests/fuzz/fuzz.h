/* fuzz.h - the libFuzzer entry points every tests/fuzz/fuzz_*.c target defines. */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Called once before the first input (may be a no-op). */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* One input; returns 0. Any crash, sanitizer report or leak is a finding. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* FUZZ_H */
