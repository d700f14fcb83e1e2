/* otfuse status codes: one X-macro table feeds the enum, the message text,
 * the symbolic name and the HTTP status, so that the four can never drift.
 * Codes are only ever added at the end of the table, never renumbered. */
#ifndef OTF_STATUS_H
#define OTF_STATUS_H

#define OTF_WUR __attribute__((warn_unused_result))

/* X(NAME, code, HTTP status, message) */
#define OTF_STATUS_MAP(X)                                                     \
  X(OK,            0,  200, "success")                                        \
  X(E_INVAL,      -1,  400, "invalid argument")                               \
  X(E_NOMEM,      -2,  503, "out of memory")                                  \
  X(E_TOO_LARGE,  -3,  413, "input exceeds a configured limit")               \
  X(E_IO,         -4,  500, "input/output error")                             \
  X(E_FORMAT,     -5,  422, "malformed input")                                \
  X(E_NUMERIC,    -6,  422, "non-finite or out-of-range number")              \
  X(E_NOT_CONVERGED, -7, 422, "solver did not converge")                      \
  X(E_ITER_LIMIT, -8,  422, "iteration limit reached before optimality")      \
  X(E_INFEASIBLE, -9,  422, "problem has no feasible solution")               \
  X(E_NOT_FOUND, -10,  404, "not found")                                      \
  X(E_UNSUPPORTED, -11, 422, "unsupported input")                             \
  X(E_CANCELLED, -12,  409, "cancelled")                                      \
  X(E_INTERNAL,  -13,  500, "internal error")                                \
  X(E_ACCESS,    -14,  403, "access denied")                                  \
  X(E_UNAUTHORIZED, -15, 401, "authentication required")                      \
  X(E_UNREACHABLE, -16, 502, "remote service unreachable")                    \
  X(E_TIMEOUT,   -17,  504, "timed out")                                      \
  X(E_CONFLICT,  -18,  409, "conflicts with the current state")               \
  X(E_BUSY,      -19,  429, "too many requests; retry later")                 \
  X(E_CORRUPT,   -20,  502, "data failed verification")

typedef enum otf_status {
#define OTF__STATUS_ENUM(name, code, http, msg) OTF_##name = (code),
  OTF_STATUS_MAP(OTF__STATUS_ENUM)
#undef OTF__STATUS_ENUM
} otf_status;

/* Human-readable text for a status; never NULL (unknown codes get a generic
 * text). The returned string is static. */
const char *otf_strerror(otf_status s);

/* Symbolic name without the OTF_ prefix, e.g. "E_INVAL"; static, never NULL. */
const char *otf_status_name(otf_status s);

/* HTTP status an API response carries for this status (500 when unknown). */
int otf_status_http(otf_status s);

#endif
