"use strict";
/* otfused dashboard (first cut). */
const x = null ?? "a\\b\"c";
