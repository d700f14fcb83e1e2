/* libFuzzer target for the safetensors reader: the input is a whole file.
 * It is opened through a memfd (the reader wants a path it can mmap), and
 * every floating tensor of a file that validates is decoded, so that a
 * header the validator accepts but whose offsets are wrong would read out
 * of bounds under ASan. Must never crash, hang or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fusion/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd_create("fuzz_safetensors", MFD_CLOEXEC);
  if(fd < 0)
    return 0;
  size_t done = 0;
  while(done < size) {
    ssize_t w = write(fd, data + done, size - done);
    if(w <= 0) {
      close(fd);
      return 0;
    }
    done += (size_t)w;
  }
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  otf_st_file *f = NULL;
  otf_error err;
  if(otf_st_open(&f, path, &err) == OTF_OK) {
    for(size_t k = 0; k < otf_st_count(f); k++) {
      const otf_st_tensor *t = otf_st_at(f, k);
      if(t->dtype != OTF_DT_F64 && t->dtype != OTF_DT_F32 && t->dtype != OTF_DT_F16 &&
         t->dtype != OTF_DT_BF16)
        continue;
      /* nbytes <= the file size, so numel is small enough to allocate. */
      double *out = malloc(t->numel ? t->numel * sizeof(double) : 1);
      if(out && otf_st_read_f64(out, t, &err) != OTF_OK)
        __builtin_trap(); /* a floating tensor must always decode */
      free(out);
    }
    (void)otf_st_metadata(f, "format");
    (void)otf_st_find(f, "weight");
    otf_st_close(f);
  }
  close(fd);
  return 0;
}
