#include "common/status.h"

const char *otf_strerror(otf_status s) {
  switch(s) {
#define OTF__STATUS_TEXT(name, code, http, msg) case OTF_##name: return msg;
    OTF_STATUS_MAP(OTF__STATUS_TEXT)
#undef OTF__STATUS_TEXT
  }
  return "unknown status";
}

const char *otf_status_name(otf_status s) {
  switch(s) {
#define OTF__STATUS_NAME(name, code, http, msg) case OTF_##name: return #name;
    OTF_STATUS_MAP(OTF__STATUS_NAME)
#undef OTF__STATUS_NAME
  }
  return "E_UNKNOWN";
}

int otf_status_http(otf_status s) {
  switch(s) {
#define OTF__STATUS_HTTP(name, code, http, msg) case OTF_##name: return http;
    OTF_STATUS_MAP(OTF__STATUS_HTTP)
#undef OTF__STATUS_HTTP
  }
  return 500;
}
