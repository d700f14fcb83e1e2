/* libFuzzer target for the Hugging Face config.json parser: the input is
 * the file's bytes, untrusted. Any outcome but a crash, a hang, undefined
 * behaviour or a leak is fine; a config that parses is freed again. */
#include <stdint.h>
#include <string.h>

#include "fusion/hfconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  otf_model_config cfg;
  otf_error err;
  memset(&cfg, 0, sizeof(cfg));
  if(otf_model_config_parse(&cfg, (const char *)data, size, &err) == OTF_OK) {
    /* Touch what a caller would use, so a half-built table shows up. */
    for(int k = 0; cfg.id2label && k < cfg.num_labels; k++)
      if(!cfg.id2label[k] || strlen(cfg.id2label[k]) > size)
        __builtin_trap();
    (void)otf_act_name(cfg.act);
    otf_model_config_free(&cfg);
  }
  return 0;
}
