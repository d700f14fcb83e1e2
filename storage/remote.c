/* Remote stores: not wired yet (S3 and HTTP come with the transfer code). */
#include "storage/remote.h"

otf_status otf__remote_open(otf_storage *s, const otf_storage_cfg *cfg, otf_error *err) {
  (void)s; (void)cfg; (void)err;
  return OTF_OK;
}
void otf__remote_close(otf_storage *s) { (void)s; }
int otf__remote_is_endpoint(const otf_storage *s, const otf_uri *u) { (void)s; (void)u; return 0; }
otf_status otf__remote_check_s3(otf_storage *s, const char *uri, otf_error *err) {
  (void)s; (void)uri; (void)err;
  return OTF_OK;
}
otf_status otf__remote_fetch_model(otf_storage *s, const otf_uri *u, const char *uri, char *out,
                                   size_t cap, otf__xprog *prog, otf_error *err) {
  (void)s; (void)u; (void)out; (void)cap; (void)prog;
  return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: remote stores are not available in this build yet", uri);
}
otf_status otf__remote_fetch_file(otf_storage *s, const otf_uri *u, const char *uri, char *out,
                                  size_t cap, otf__xprog *prog, otf_error *err) {
  (void)s; (void)u; (void)out; (void)cap; (void)prog;
  return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: remote stores are not available in this build yet", uri);
}
otf_status otf__remote_put_dir(otf_storage *s, const otf_uri *u, const char *uri, const char *src,
                               otf__xprog *prog, otf_error *err) {
  (void)s; (void)u; (void)src; (void)prog;
  return OTF_FAIL(err, OTF_E_UNSUPPORTED, NULL, "%s: remote stores are not available in this build yet", uri);
}
void otf__remote_release(otf_storage *s, const char *local_path) { (void)s; (void)local_path; }
