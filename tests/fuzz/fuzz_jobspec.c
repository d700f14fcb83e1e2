/* libFuzzer target for the job spec parser (api/jobspec.c): the input is
 * a POST /v1/jobs body, untrusted. Besides no crash, hang, undefined
 * behaviour or leak, two properties must hold: a spec that parses has a
 * normalised form that parses back to the same spec and options, and a
 * spec that does not parse names at least one problem with a pointer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobspec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  otf_jobspec a, b;
  otf_error err;
  json_t *errors = NULL;
  if(otf_jobspec_parse(&a, (const char *)data, size, 8, &errors, &err) != OTF_OK) {
    if(json_array_size(errors) == 0 ||
       !json_is_string(json_object_get(json_array_get(errors, 0), "pointer")) ||
       strcmp(json_string_value(json_object_get(json_array_get(errors, 0), "pointer")),
              err.pointer))
      __builtin_trap();
    json_decref(errors);
    return 0;
  }
  if(errors || a.n_models < 2 || a.n_models > 8 || !a.spec)
    __builtin_trap();
  char *text = json_dumps(a.spec, JSON_COMPACT);
  if(!text || otf_jobspec_parse(&b, text, strlen(text), 8, NULL, &err) != OTF_OK ||
     !json_equal(a.spec, b.spec) || b.n_models != a.n_models ||
     b.opts.method != a.opts.method || b.opts.anchor != a.opts.anchor ||
     b.opts.components != a.opts.components || b.opts.window != a.opts.window ||
     b.dtype != a.dtype || b.anchor_auto != a.anchor_auto || b.reg_auto != a.reg_auto)
    __builtin_trap();
  for(size_t i = 0; i < a.n_models; i++)
    if(strcmp(a.models[i], b.models[i]))
      __builtin_trap();
  free(text);
  otf_jobspec_free(&a);
  otf_jobspec_free(&b);
  return 0;
}
