/* The little XML reading S3 needs: the text of the first <Tag>...</Tag>
 * from a position, with the five entities and numeric references decoded.
 * S3 responses are flat and machine-written; this is not a general parser. */
#ifndef OTF_XML_H
#define OTF_XML_H

#include <stddef.h>

/* Finds the first element named tag in xml[0..n) and writes its decoded
 * text to out (cap bytes). *next (may be NULL) receives the position just
 * after the closing tag. Returns 0, or -1 when absent, unterminated or too
 * long for out. */
int otf__xml_get(const char *xml, size_t n, const char *tag, char *out, size_t cap,
                 const char **next);

/* Bounds of the next <tag>...</tag> element's inner text: *b and *e, or -1. */
int otf__xml_span(const char *xml, size_t n, const char *tag, const char **b, const char **e);

/* Escapes s for XML text into out; -1 when cap is too small. */
long otf__xml_escape(const char *s, char *out, size_t cap);

#endif
