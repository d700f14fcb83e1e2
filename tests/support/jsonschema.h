/* A small JSON Schema (2020-12) validator for the subset api/openapi.json
 * uses, so tests can check hand-made examples and real server responses
 * against the published document.
 *
 * Supported keywords: type (a name or an array of names, "null" included;
 * "integer" also accepts a real with an integral value), enum, const,
 * required, properties, additionalProperties (false or a schema), items (a
 * schema), minItems, maxItems, minLength, maxLength (in code points),
 * minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers), oneOf,
 * anyOf, allOf, and $ref to a JSON pointer inside the same document
 * ("#/components/schemas/Job"; siblings of $ref apply too). Annotations
 * (description, title, format, examples, default, ...) are ignored. Any
 * other keyword (pattern, not, if, uniqueItems, ...) makes validation fail
 * with "unsupported keyword", so a schema never passes by being misread. */
#ifndef TU_JSONSCHEMA_H
#define TU_JSONSCHEMA_H

#include <jansson.h>

/* Validates instance against schema, resolving $ref against root (the
 * whole document; may be the schema itself). All borrowed. Returns the
 * number of problems (0 = valid). errors (may be NULL) receives a new JSON
 * array of {"pointer": instance pointer, "schema": schema path, "detail"}
 * (caller json_decref's), also when valid (then empty). At most 64
 * problems are listed; the count is exact up to that cap. */
int tu_schema_validate(const json_t *root, const json_t *schema, const json_t *instance,
                       json_t **errors);

/* The same against the schema at a pointer of root, e.g.
 * "#/components/schemas/Job"; an unresolvable ref counts as one problem.
 * On failure writes the first problems as text into msg[cap] (may be NULL). */
int tu_schema_check(const json_t *root, const char *ref, const json_t *instance, char *msg,
                    size_t cap);

/* Resolves a "#/a/b~1c" reference inside root (RFC 6901 unescaping);
 * NULL when it does not exist. Borrowed. */
const json_t *tu_schema_resolve(const json_t *root, const char *ref);

#endif
