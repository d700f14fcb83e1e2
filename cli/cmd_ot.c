#include <stdio.h>

#include "cli/commands.h"

int otf_cli_ot(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "otfuse ot: not built yet\n");
  return 1;
}
